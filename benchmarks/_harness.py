"""What the benchmarks share: the checkout on ``sys.path``, servers in child processes, timing.

Imported first by each ``benchmarks/X.py`` script (a script's own folder is on ``sys.path``):

- importing it puts the repository root first on ``sys.path``, so the checkout's package wins
  over whatever an install put there;
- :func:`short_dir`: a short directory under /tmp for unix sockets, removed afterwards;
- :func:`sim_node`: ``python -m aiovirt.sim`` in a child process (so CPU figures are the
  client's alone), yielding the endpoints it prints;
- :func:`sim_xenstored` / :func:`real_xenstored`: the simulated xenstored in a child process,
  or Debian's C xenstored under the tests' stub (:func:`real_xenstored_unavailable` says why
  not), yielding the socket path;
- :class:`Row`, :func:`measure`, :func:`print_rows`: the median wall time and client CPU of
  repeated full refreshes, and a table of them with per-domain ratios against a baseline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiovirt.xenstore  # noqa: E402
from tests.support.sim_process import (  # noqa: E402
    SimStartError,
    start_sim_process,
    stop_process,
)


@contextlib.contextmanager
def short_dir(prefix: str = "avb") -> Iterator[str]:
    """Yield a fresh directory with a short path (unix socket paths stay under 108 bytes)."""
    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def sim_node(domains: int, *, seed: int = 1, xend_delay: float = 0.0,
             prefix: str = "avb", extra: tuple[str, ...] = ()) -> Iterator[dict[str, str]]:
    """Run ``python -m aiovirt.sim`` with ``domains`` guests; yield the endpoints it prints.

    ``xend_delay`` seconds are added to every xend reply; ``extra`` are more of its options.
    The node logs warnings only (to this process's stderr) and is stopped, its directory
    removed, when the block ends.
    """
    args = ["--domains", str(domains), "--seed", str(seed), "--log-level", "WARNING", *extra]
    if xend_delay:
        args += ["--xend-delay", str(xend_delay)]
    with short_dir(prefix) as directory:
        try:
            proc, endpoints = start_sim_process(directory, *args)
        except SimStartError as exc:
            raise SystemExit(f"the simulated node did not start (exit {exc.code})") from None
        try:
            yield endpoints
        finally:
            stop_process(proc)


async def raw_watch_latency(xs_path: str, samples: int) -> list[float]:
    """Return write -> watch event times of a bare xenstore client on the node at
    ``xs_path``: the floor of any watch-driven change there."""
    out = []
    async with aiovirt.xenstore.connect(xs_path) as xs:
        async with xs.watch("/bench/ping") as watch:
            await watch.get(5)  # the initial event
            for i in range(samples):
                t0 = time.perf_counter()
                await xs.write("/bench/ping", str(i))
                await watch.get(5)
                out.append(time.perf_counter() - t0)
    return out


# The simulated xenstored alone, in its own process as the C daemon is.
_XENSTORED_MAIN = """
import asyncio, sys
from aiovirt.sim.store import XenStoreDB
from aiovirt.sim.xenstored import XenStored

async def main():
    async with XenStored(XenStoreDB(), sys.argv[1], sys.argv[2]):
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.contextmanager
def sim_xenstored(directory: str) -> Iterator[str]:
    """Run the simulated xenstored in a child process; yield its read-write socket path."""
    path = os.path.join(directory, "socket")
    proc = subprocess.Popen([sys.executable, "-c", _XENSTORED_MAIN, path, path + "_ro"],
                            stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the simulated xenstored did not start")
        yield path
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def real_xenstored_unavailable() -> str | None:
    """Return why Debian's C xenstored cannot run here, or None if it can."""
    from tests.support.real_xenstored import real_xenstored_available

    return real_xenstored_available()


@contextlib.contextmanager
def real_xenstored(directory: str) -> Iterator[str]:
    """Run Debian's C xenstored under the tests' stub; yield its socket path.

    Raises :class:`RuntimeError` with the reason when it cannot run on this machine.
    """
    from tests.support.real_xenstored import real_xenstored as start

    reason = real_xenstored_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    with start(directory, trace=False) as path:
        yield path


@dataclass
class Row:
    """One measured way of refreshing every domain's info."""

    label: str
    domains: int
    wall: float  # seconds per full refresh (median)
    cpu: float  # client CPU seconds per full refresh (median)
    cpu_worst: float = 0.0  # the most client CPU one refresh took
    note: str = ""

    def per_domain(self) -> float:
        """Return the wall seconds per domain."""
        return self.wall / self.domains


async def measure(label: str, domains: int, refresh: Callable[[], Awaitable[object]],
                  rounds: int, note: Callable[[], str] | None = None) -> Row:
    """Return the median wall time and CPU of ``rounds`` full refreshes (after one warm-up)."""
    await refresh()
    walls, cpus = [], []
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        await refresh()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return Row(label, domains, statistics.median(walls), statistics.median(cpus), max(cpus),
               note() if note else "")


def print_rows(rows: list[Row], baseline: Row, *, heading: str, width: int,
               rate: bool = False) -> None:
    """Print ``rows`` as a table with each one's per-domain speed-up over ``baseline``.

    ``heading`` names the first column (``width`` characters); ``rate`` adds domains per second.
    """
    print(f"  {heading:<{width}} {'domains':>7} {'wall/refresh':>13} {'CPU/refresh':>12} "
          f"{'CPU worst':>10}" + (f" {'domains/s':>10}" if rate else "") + f" {'vs baseline':>11}")
    for row in rows:
        ratio = baseline.per_domain() / row.per_domain()
        print(f"  {row.label:<{width}} {row.domains:>7} {row.wall * 1e3:>10.1f} ms "
              f"{row.cpu * 1e3:>9.1f} ms {row.cpu_worst * 1e3:>7.1f} ms "
              + (f"{row.domains / row.wall:>10.0f} " if rate else "") + f"{ratio:>10.1f}x"
              + (f"  ({row.note})" if row.note else ""))


# Issue 6's targets for polling every domain's info(): a speed-up over the sequential xend poll
# (judged at 1,000 domains) and the client CPU of one full refresh (judged at 5,000).
SPEEDUP_TARGET = 50.0
CPU_TARGET_MS = 50.0


def print_poll_verdict(domains: int, row: Row, baseline: Row) -> None:
    """Print whether ``row`` meets issue 6's target for a node of ``domains`` guests."""
    if domains < 5000:
        speedup = baseline.per_domain() / row.per_domain()
        verdict = "met" if speedup >= SPEEDUP_TARGET else "MISSED"
        print(f"  target >= {SPEEDUP_TARGET:.0f}x faster than the sequential xend poll: "
              f"{speedup:.1f}x ({verdict}; '{row.label}')")
    else:
        verdict = "met" if row.cpu * 1e3 < CPU_TARGET_MS else "MISSED"
        print(f"  target client CPU per refresh < {CPU_TARGET_MS:.0f} ms: "
              f"{row.cpu * 1e3:.1f} ms median, {row.cpu_worst * 1e3:.1f} ms worst "
              f"({verdict}; '{row.label}')")
