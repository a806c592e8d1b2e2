"""One Prometheus scrape of a 1,000- and a 5,000-domain node, against one call per domain.

A simulated node runs in a child process (``python -m aiovirt.sim``) whose statistics files
are rewritten every second, as a live dom0's counters move (its writing is the child's CPU,
not ours). Measured in the same run, medians of ``--rounds`` (after a warm-up scrape, which
also learns the devices' sources); each round of the exporter's first waits past the node's
next rewriting, as the 15 s between two of Prometheus's scrapes would:

- baseline, ``per-domain calls``: what libvirt_exporter does, one ``info()`` plus one
  ``block_stats()`` and one ``interface_stats()`` call per domain (all gathered at once);
- ``scrape``: what ``GET /metrics`` costs the exporter: one bulk refresh of the node
  (``domain_infos()``, ``device_stats()``, ``node_info()``) and the text of every series,
  prometheus_client writing the families that changed since the previous scrape; its note
  says how much of it the garbage collector's passes took;
- its two halves: ``refresh``, and ``text`` (families built and written, as served: the
  previous scrape's families cached);
- what bounds the text: ``text, nothing kept`` (every family built and written afresh, as
  when every value moved) and ``generate_latest`` alone over those families, prometheus_client's
  own floor per series.

Wall time and client CPU (this process, worker threads included) per scrape. Target: a
5,000-domain scrape under 100 ms of exporter CPU. Usage: ``python benchmarks/exporter.py
[--domains 1000 5000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Row, measure, print_rows, sim_node
from prometheus_client import generate_latest
from prometheus_client.core import Metric

import aiovirt
from aiovirt.exporter import Exporter, FamilyBuilder, NodeSample, NodeSource, render

CPU_TARGET_MS = 100.0
STATS_INTERVAL = 1.0  # seconds between the simulated node's rewritings of its files
PACE = STATS_INTERVAL + 0.1


class _GcClock:
    """The thread CPU time the garbage collector's passes take while it is on."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> _GcClock:
        gc.callbacks.append(self._tick)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start


async def per_domain(conn: aiovirt.Connection) -> None:
    """One info() and one call per device for every domain, as libvirt_exporter makes them."""
    async def one(dom: aiovirt.Domain) -> None:
        await dom.info()
        if dom.id:
            await asyncio.gather(dom.block_stats("sda1"), dom.interface_stats(f"vif{dom.id}.0"))

    await asyncio.gather(*(one(d) for d in await conn.list_domains()))


async def paced(label: str, domains: int, rounds: int, work: Callable[[Any], object],
                prepare: Callable[[], Awaitable[Any]] | None = None) -> Row:
    """Time ``work(await prepare())`` (``work`` alone, awaited if it is a coroutine function).

    Each round waits past the node's rewriting of its files first, as the 15 s between two
    of Prometheus's scrapes would: every counter that moves has moved.
    """
    walls, cpus = [], []
    for _ in range(rounds):
        await asyncio.sleep(PACE)
        args = () if prepare is None else (await prepare(),)
        c0, t0 = time.process_time(), time.perf_counter()
        result = work(*args)
        if inspect.isawaitable(result):
            await result
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return Row(label, domains, statistics.median(walls), statistics.median(cpus), max(cpus))


class _Families:
    """A bare collector of one scrape's families, for generate_latest alone."""

    def __init__(self, samples: list[NodeSample]) -> None:
        self.metrics = FamilyBuilder().families(samples)

    def collect(self) -> list[Metric]:
        return self.metrics


async def bench(domains: int, uri: str, rounds: int) -> list[Row]:
    """Measure one node; return the rows, baseline first."""
    exporter = Exporter([NodeSource("n1", uri)])
    try:
        async with aiovirt.open(uri) as conn:
            baseline = await measure("per-domain calls", domains, lambda: per_domain(conn),
                                     max(1, rounds // 2))
        await exporter.render()  # the first scrape learns the devices' sources
        with _GcClock() as collector:
            scrape = await paced("scrape", domains, rounds, exporter.render)
        scrape.note = f"gc passes {collector.seconds / rounds * 1e3:.0f} ms a scrape"
        refresh = await paced("  refresh", domains, rounds, exporter.scrape)
        text = await paced("  text", domains, rounds, exporter.text.render, exporter.scrape)
        series = len([line for line in render(await exporter.scrape()).splitlines()
                      if not line.startswith(b"#")])
        afresh = await paced("text, nothing kept", domains, rounds, render, exporter.scrape)
        afresh.note = f"{series} series"

        async def families() -> _Families:
            return _Families(await exporter.scrape())

        bare = await paced("generate_latest", domains, rounds, generate_latest, families)
        bare.note = f"{bare.cpu / series * 1e6:.1f} µs a series, its floor"
        return [baseline, scrape, refresh, text, afresh, bare]
    finally:
        await exporter.close()


def main() -> int:
    """Run the benchmark; return 0 if the 5,000-domain target is met (or not measured)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    print(f"exporter scrape vs one call per domain (loadavg {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)")
    status = 0
    for n in args.domains:
        with sim_node(n, extra=("--device-stats", "--stats-interval", str(STATS_INTERVAL))) as ends:
            rows = asyncio.run(bench(n, ends["uri"], args.rounds))
        print(f"{n} domains:")
        print_rows(rows, rows[0], heading="how", width=18)
        if n >= 5000:
            cpu = rows[1].cpu * 1e3
            verdict = "met" if cpu < CPU_TARGET_MS else "MISSED"
            print(f"  target exporter CPU per 5,000-domain scrape < {CPU_TARGET_MS:.0f} ms: "
                  f"{cpu:.1f} ms median, {rows[1].cpu_worst * 1e3:.1f} ms worst ({verdict}; "
                  f"refresh {rows[2].cpu * 1e3:.1f} ms + text {rows[3].cpu * 1e3:.1f} ms; "
                  f"prometheus_client's generate_latest alone, every series written: "
                  f"{rows[5].cpu * 1e3:.1f} ms)")
            status = 0 if verdict == "met" else 1
    print(f"(loadavg {os.getloadavg()[0]:.1f} at the end)")
    return status


if __name__ == "__main__":
    sys.exit(main())
