"""Time to build one ``aiovirsh top`` frame for 1,000 domains, against one full info() refresh.

A simulated node with ``--domains`` guests runs in a child process (``python -m aiovirt.sim``).
Measured in the same run, medians of ``--rounds``:

- baseline, ``refresh``: one full info() refresh: ``conn.list_domains()`` plus every domain's
  ``info()`` gathered at once;
- ``bulk``: the refresh ``top`` really makes, ``conn.domain_infos()``
  (:func:`aiovirt.cli.top.collect`);
- ``frame``: everything ``top`` does with those samples: CPU % from the cpu_time deltas
  (:class:`~aiovirt.cli.top.TopModel`), sort, build the rich renderable and render it to a
  120x50 terminal (:func:`~aiovirt.cli.top.build_frame`), ANSI escapes included;
- ``--once``: the plain-text snapshot of every domain (:func:`~aiovirt.cli.top.text_snapshot`).

Target: a frame under 50 ms. Usage: ``python benchmarks/top_frame.py [--domains 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from _harness import sim_node
from rich.console import Console

import aiovirt
from aiovirt.cli.top import TopModel, build_frame, collect, text_snapshot

WIDTH, HEIGHT = 120, 50


async def timed(fn: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    """Return the wall times of ``rounds`` calls of ``fn``."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def bench(uri: str, rounds: int) -> int:
    """Measure and print; return 0 if the frame target is met."""
    async with aiovirt.open(uri) as conn:
        samples = await collect(conn)

        async def gathered() -> None:
            await asyncio.gather(*(d.info() for d in await conn.list_domains()))

        refresh = await timed(gathered, rounds)
        bulk = await timed(lambda: collect(conn), rounds)

        model = TopModel()
        model.update(samples, time.monotonic() - 1.0)
        console = Console(file=io.StringIO(), width=WIDTH, height=HEIGHT, force_terminal=True,
                          color_system="truecolor")

        async def frame() -> None:
            rows = model.update(samples, time.monotonic())
            console.file = io.StringIO()
            console.print(build_frame(rows, uri=uri, sort="cpu", reverse=False, interval=1.0,
                                      height=HEIGHT, clock="00:00:00"))

        async def once() -> None:
            text_snapshot(model.update(samples, time.monotonic()), "cpu", False)

        frames = await timed(frame, rounds * 5)
        snapshots = await timed(once, rounds)
        drawn = console.file.getvalue() if isinstance(console.file, io.StringIO) else ""

    base = statistics.median(refresh)
    b = statistics.median(bulk)
    f = statistics.median(frames)
    o = statistics.median(snapshots)
    print(f"aiovirt {aiovirt.__version__}: top for {len(samples)} domains, "
          f"{WIDTH}x{HEIGHT} terminal ({len(drawn)} bytes drawn per frame)")
    print(f"  baseline  refresh: list_domains + {len(samples)} info()   "
          f"{base * 1e3:7.2f} ms")
    print(f"  bulk      refresh: conn.domain_infos() (what top does) {b * 1e3:7.2f} ms   "
          f"x{b / base:5.2f} refresh")
    print(f"  frame     CPU%, sort, build, render                {f * 1e3:7.2f} ms   "
          f"x{f / base:5.2f} refresh   target < 50 ms: {'ok' if f < 0.05 else 'MISSED'}")
    print(f"  --once    plain table of all {len(samples)} domains        {o * 1e3:7.2f} ms   "
          f"x{o / base:5.2f} refresh")
    print(f"  top's refresh + frame: {(b + f) * 1e3:.1f} ms, "
          f"{1 / (b + f):.1f} refreshes/s possible")
    return 0 if f < 0.05 else 1


def main() -> int:
    """Parse the arguments, start a node, run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with sim_node(args.domains, prefix="avbtop") as endpoints:
        return asyncio.run(bench(endpoints["uri"], args.rounds))


if __name__ == "__main__":
    sys.exit(main())
