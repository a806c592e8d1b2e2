"""Poll ``info()`` of every domain of a 1,000-domain simulated node: all at once vs one by one.

A simulated node runs in a child process (so the client's figures are its own). For each
connection route, measured in the same run over the same ``Domain`` handles:

- ``concurrent``: ``asyncio.gather(*(dom.info() for dom in domains))`` from one event loop;
- ``sequential`` (the baseline): ``for dom in domains: await dom.info()``.

Routes: ``hypervisor`` (the default URI: info() through the hypervisor backend, whose requests
coalesce into a few batched calls) and ``xend`` (``hypervisor=none``: one HTTP request per
info(), concurrently over the keep-alive pool). The simulated xend answers from memory in a
fraction of a millisecond, so it is CPU-bound and concurrency cannot beat it; a real xend spent
milliseconds per request (it refreshed its domain list from the hypervisor each time), so a
third row, ``xend+Nms``, adds ``--xend-delay`` seconds to each simulated reply (a second node).
Printed: wall time per full refresh (median of ``--rounds``), client CPU per refresh, and the
ratio sequential / concurrent.

Usage: ``python benchmarks/api_poll.py [--domains 1000] [--rounds 3] [--xend-delay 0.002]``.
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
        node.faults.xend.delay = float(sys.argv[3])
        print(json.dumps(node.endpoints), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def start_node(directory: str, domains: int,
               xend_delay: float = 0.0) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start a SimNode in a child process; return it and its endpoints."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _NODE_MAIN, directory, str(domains),
                             str(xend_delay)],
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


async def bench_route(label: str, uri: str, rounds: int) -> tuple[float, float]:
    """Measure one route; print its row and return (concurrent, sequential) wall seconds."""
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
    return conc_wall, seq_wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--xend-delay", type=float, default=0.002)
    args = parser.parse_args()
    nodes = [(0.0, "xend")]
    if args.xend_delay > 0:
        nodes.append((args.xend_delay, f"xend+{args.xend_delay * 1e3:g}ms"))
    results: dict[str, tuple[float, float]] = {}
    for delay, label in nodes:
        directory = tempfile.mkdtemp(prefix="avbench")
        proc, endpoints = start_node(directory, args.domains, delay)
        try:
            if delay == 0.0:
                results["hypervisor"] = await bench_route("hypervisor", endpoints["uri"],
                                                          args.rounds)
            xend_uri = (f"xen:///?xend=unix:{endpoints['xend_unix']}"
                        f"&xenstore={endpoints['xenstore']}&hypervisor=none")
            results[label] = await bench_route(label, xend_uri, args.rounds)
        finally:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(directory, ignore_errors=True)
    best = results["hypervisor"][0]
    for label, (_conc, seq) in results.items():
        if label != "hypervisor":
            print(f"hypervisor concurrent vs {label} sequential: {seq / best:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
