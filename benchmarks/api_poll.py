"""Poll ``info()`` of every domain of a 1,000-domain simulated node: all at once vs one by one.

A simulated node runs in a child process (so the client's figures are its own). For each
connection route, measured in the same run over the same ``Domain`` handles:

- ``concurrent``: ``asyncio.gather(*(dom.info() for dom in domains))`` from one event loop;
- ``sequential`` (the baseline): ``for dom in domains: await dom.info()``.

Routes: ``hypervisor`` (the default URI: info() through the hypervisor backend, whose requests
coalesce into a few batched calls) and ``xend`` (``hypervisor=none``: one HTTP request per
info(), concurrently over the keep-alive pool). Printed: wall time per full refresh (median of
``--rounds``), client CPU per refresh, and the ratio sequential / concurrent.

Usage: ``python benchmarks/api_poll.py [--domains 1000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiovirt  # noqa: E402

_NODE_MAIN = """
import asyncio, json, sys
from aiovirt.sim.node import SimNode

async def main():
    async with SimNode(sys.argv[1], domains=int(sys.argv[2]), seed=1) as node:
        print(json.dumps(node.endpoints), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def start_node(directory: str, domains: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start a SimNode in a child process; return it and its endpoints."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _NODE_MAIN, directory, str(domains)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit("the simulated node did not start")
    return proc, json.loads(line)


async def measure(fn: Callable[[], Awaitable[None]], rounds: int) -> tuple[float, float]:
    """Return the median (wall seconds, client CPU seconds) of ``rounds`` runs of ``fn``."""
    walls, cpus = [], []
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        await fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


async def bench_route(label: str, uri: str, rounds: int) -> None:
    async with aiovirt.open(uri) as conn:
        domains = await conn.list_domains()

        async def concurrent() -> None:
            await asyncio.gather(*(dom.info() for dom in domains))

        async def sequential() -> None:
            for dom in domains:
                await dom.info()

        await concurrent()  # warm the pools and caches
        conc_wall, conc_cpu = await measure(concurrent, rounds)
        seq_wall, seq_cpu = await measure(sequential, rounds)
    n = len(domains)
    print(f"{label:<11} {n:>6} domains  concurrent {conc_wall * 1e3:9.1f} ms "
          f"(cpu {conc_cpu * 1e3:7.1f} ms)  sequential {seq_wall * 1e3:9.1f} ms "
          f"(cpu {seq_cpu * 1e3:7.1f} ms)  ratio {seq_wall / conc_wall:6.1f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="avbench")
    proc, endpoints = start_node(directory, args.domains)
    try:
        uri = endpoints["uri"]
        await bench_route("hypervisor", uri, args.rounds)
        xend_uri = (f"xen:///?xend=unix:{endpoints['xend_unix']}"
                    f"&xenstore={endpoints['xenstore']}&hypervisor=none")
        await bench_route("xend", xend_uri, args.rounds)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
