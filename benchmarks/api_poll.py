"""Poll ``info()`` of every domain through the public API: all at once vs one by one, per route.

A simulated node runs in a child process (so the CPU figures are the client's alone). For each
node size, measured in the same run over the same ``Domain`` handles:

- ``hypervisor``: the default URI; ``asyncio.gather(*(dom.info() for dom in domains))`` joins
  the hypervisor backend's coalesced GETDOMAININFOLIST batches;
- ``xend, coalesced``: ``hypervisor=none``; the same gather, which the connection answers with
  one ``GET /xend/domain?detail=1`` per batch;
- ``xend, per domain``: the same gather with the coalescing turned off (one HTTP request per
  ``info()``), as the API did before it coalesced;
- ``xend, one by one`` (the baseline): ``for dom in domains: await dom.info()``, the way a
  synchronous library polls.

The xend rows are measured twice: against the node's default xend, which serves one
connection at a time as xend 3.0.3 did (``serial``: the client queues its requests on one
connection, kept alive only while others wait), and against a second node of the same size
started with ``--error-style 3.0.4``, which serves each connection on its own and says so
(``threaded``: the client uses up to ``xend_connections`` connections). The difference between
the two is what the serial server costs the client.

The simulated xend answers from memory in a fraction of a millisecond; a real xend spent
milliseconds per request, so with ``--xend-delay`` a second node adds that many seconds to each
xend reply and the xend rows are measured again there.

Printed per row: wall time of one full refresh (median of ``--rounds``, after one warm-up),
client CPU per refresh (median and worst), and the speed-up per domain over the baseline; then
whether issue 6's targets are met by the public API on the hypervisor route: at least 50x the
sequential xend poll at 1,000 domains, under 50 ms client CPU per refresh of 5,000 domains.

Usage: ``python benchmarks/api_poll.py [--sizes 1000 5000] [--rounds 5] [--seq-limit N]
[--xend-delay 0.002]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable

from _harness import Row, measure, print_poll_verdict, print_rows, sim_node

import aiovirt
from aiovirt.domain import Domain


def all_at_once(doms: list[Domain]) -> Callable[[], Awaitable[object]]:
    """Return a refresh that asks every domain's info() at once."""
    async def refresh() -> None:
        await asyncio.gather(*(d.info() for d in doms))
    return refresh


def one_by_one(doms: list[Domain]) -> Callable[[], Awaitable[object]]:
    """Return a refresh that asks each domain's info() after the previous one answered."""
    async def refresh() -> None:
        for d in doms:
            await d.info()
    return refresh


async def hypervisor_rows(endpoints: dict[str, str], rounds: int) -> list[Row]:
    """Measure info() of every domain at once with the hypervisor backend on."""
    async with aiovirt.open(endpoints["uri"]) as conn:
        doms = await conn.list_domains()
        hv = conn.hypervisor
        assert hv is not None, conn.unavailable
        before = hv.stats["getinfolist"]
        row = await measure("hypervisor, all at once", len(doms), all_at_once(doms), rounds,
                            lambda: f"{(hv.stats['getinfolist'] - before) / (rounds + 1):.1f} "
                                    "GETDOMAININFOLIST per refresh")
    return [row]


async def xend_rows(endpoints: dict[str, str], rounds: int, seq_limit: int | None,
                    suffix: str = "") -> list[Row]:
    """Measure the xend route: coalesced, per domain (coalescing off), and one by one."""
    uri = (f"xen:///?xend=unix:{endpoints['xend_unix']}&xenstore={endpoints['xenstore']}"
           "&hypervisor=none")
    rows = []
    async with aiovirt.open(uri) as conn:
        doms = await conn.list_domains()
        xend = conn.xend
        assert xend is not None, conn.unavailable
        suffix += " (threaded)" if xend.threaded else " (serial)"
        before = xend.requests

        def requests() -> str:
            return (f"{(xend.requests - before) / (rounds + 1):.1f} HTTP requests per refresh, "
                    f"{xend.connections} connections so far")

        rows.append(await measure(f"xend{suffix}, all at once, coalesced", len(doms),
                                  all_at_once(doms), rounds, requests))
        routes = conn._router.xend  # its coalescing turned off to show what it saves
        assert routes is not None
        routes.coalescing = False
        try:
            before = xend.requests
            rows.append(await measure(f"xend{suffix}, all at once, per domain", len(doms),
                                      all_at_once(doms), rounds, requests))
            some = doms[:seq_limit]
            rows.append(await measure(f"xend{suffix}, one by one (baseline)", len(some),
                                      one_by_one(some), 1))
        finally:
            routes.coalescing = True
    return rows


async def main() -> None:
    """Run every size (and the slow-xend node) and print the tables and verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seq-limit", type=int, default=None,
                        help="poll only this many domains one by one (the ratio is per domain)")
    parser.add_argument("--xend-delay", type=float, default=0.0,
                        help="also measure the xend rows on a node whose xend takes this many "
                             "seconds per reply (first size only; e.g. 0.002)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; median of {args.rounds} "
          "refreshes after one warm-up (one for 'one by one'); the node runs in its own "
          "process; 'vs baseline' is per domain.")
    for n, size in enumerate(args.sizes):
        with sim_node(size, prefix="avbench") as endpoints:
            rows = await hypervisor_rows(endpoints, args.rounds)
            rows += await xend_rows(endpoints, args.rounds, args.seq_limit)
        with sim_node(size, prefix="avbench", extra=("--error-style", "3.0.4")) as endpoints:
            threaded = await xend_rows(endpoints, args.rounds, args.seq_limit)
        rows = rows[:1] + threaded + rows[1:]  # the serial one by one stays the baseline
        baseline = rows[-1]
        print(f"\n{size} guests (+ Domain-0); baseline: '{baseline.label}'")
        print_rows(rows, baseline, heading="route, how", width=38)
        print_poll_verdict(size, rows[0], baseline)
        if n == 0 and args.xend_delay > 0:
            tag = f"+{args.xend_delay * 1e3:g}ms"
            with sim_node(size, xend_delay=args.xend_delay, prefix="avbench") as endpoints:
                slow = await xend_rows(endpoints, args.rounds, args.seq_limit, tag)
            print(f"\n{size} guests, xend taking {args.xend_delay * 1e3:g} ms per reply; "
                  f"baseline: '{slow[-1].label}'")
            print_rows(slow, slow[-1], heading="route, how", width=38)

if __name__ == "__main__":
    asyncio.run(main())
