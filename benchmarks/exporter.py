"""One Prometheus scrape of a 1,000- and a 5,000-domain node, against one call per domain.

A simulated node runs in a child process (``python -m aiovirt.sim``, its statistics files
written once, so their rewriting does not compete for the CPUs). Measured in the same run,
medians of ``--rounds`` (after a warm-up scrape, which also learns the devices' sources):

- baseline, ``per-domain calls``: what libvirt_exporter does, one ``info()`` plus one
  ``block_stats()`` and one ``interface_stats()`` call per domain (all gathered at once);
- ``scrape``: what ``GET /metrics`` costs the exporter: one bulk refresh of the node
  (``domain_infos()``, ``device_stats()``, ``node_info()``) and prometheus_client's exposition
  of every series;
- its two halves, ``refresh`` and ``exposition``, to say where the time goes.

Wall time and client CPU (this process, worker threads included) per scrape. Target: a
5,000-domain scrape under 100 ms of exporter CPU. Usage: ``python benchmarks/exporter.py
[--domains 1000 5000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from _harness import Row, measure, print_rows, sim_node

import aiovirt
from aiovirt.exporter import Exporter, NodeSource, render

CPU_TARGET_MS = 100.0


async def per_domain(conn: aiovirt.Connection) -> None:
    """One info() and one call per device for every domain, as libvirt_exporter makes them."""
    async def one(dom: aiovirt.Domain) -> None:
        await dom.info()
        if dom.id:
            await asyncio.gather(dom.block_stats("sda1"), dom.interface_stats(f"vif{dom.id}.0"))

    await asyncio.gather(*(one(d) for d in await conn.list_domains()))


async def bench(domains: int, uri: str, rounds: int) -> list[Row]:
    """Measure one node; return the rows, baseline first."""
    exporter = Exporter([NodeSource("n1", uri)])
    try:
        async with aiovirt.open(uri) as conn:
            baseline = await measure("per-domain calls", domains, lambda: per_domain(conn),
                                     max(1, rounds // 2))
        scrape = await measure("scrape", domains, exporter.render, rounds)
        refresh = await measure("  refresh", domains, exporter.scrape, rounds)
        samples = await exporter.scrape()
        series = len([line for line in render(samples).splitlines()
                      if not line.startswith(b"#")])

        async def exposition() -> bytes:
            return render(samples)

        expo = await measure("  exposition", domains, exposition, rounds,
                             note=lambda: f"{series} series")
        return [baseline, scrape, refresh, expo]
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
        with sim_node(n, extra=("--device-stats", "--stats-interval", "0")) as ends:
            rows = asyncio.run(bench(n, ends["uri"], args.rounds))
        print(f"{n} domains:")
        print_rows(rows, rows[0], heading="how", width=18)
        if n >= 5000:
            cpu = rows[1].cpu * 1e3
            verdict = "met" if cpu < CPU_TARGET_MS else "MISSED"
            print(f"  target exporter CPU per 5,000-domain scrape < {CPU_TARGET_MS:.0f} ms: "
                  f"{cpu:.1f} ms median, {rows[1].cpu_worst * 1e3:.1f} ms worst ({verdict}; "
                  f"refresh {rows[2].cpu * 1e3:.1f} ms + exposition {rows[3].cpu * 1e3:.1f} ms)")
            status = 0 if verdict == "met" else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
