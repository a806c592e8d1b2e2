"""Poll info() of every domain of a simulated node: all at once (hypervisor) vs one by one (xend).

For each node size (default 1,000 and 5,000 guests) a simulated node runs in its own process
(a SimNode), so the CPU figures are the client's alone. Measured in the same run:

- ``hv backend``: ``Hypervisor.domain_info()`` of every domain, all at once from one event loop
  (coalesced into a handful of GETDOMAININFOLIST calls), as one task each and as gathered
  ``request_info()`` futures (no task each); and 200 ``physinfo()`` calls one after another,
  each one driver call offloaded to a worker thread (the "domains" column counts calls);
- ``api + hv``: the public API, ``dom.info()`` of every domain at once, on a connection whose
  hypervisor backend is on;
- ``xend seq`` (the baseline): the way a synchronous library polls, one ``dom.info()`` after
  another through xend with the hypervisor off (``hypervisor=none``);
- for reference, plain sequential HTTP requests to xend, a new connection each, as libvirt
  0.0.6 made them (the baseline when the public API is missing);
- ``hv xenctrl``: the same backend on the ``xenctrl`` driver, Debian's real libxenctrl against
  the node through the Xen ABI library (the script re-executes itself under ``LD_PRELOAD`` when
  it can build it): listings sized from the node's last count, and for comparison the fixed
  8,192-record request each listing made before (a 917,504-byte bounce buffer per call).

Printed per row: wall time of one full refresh (median of ``--rounds``), client process CPU per
refresh, domains per second, and the speed-up over the baseline.

Usage: ``python benchmarks/hypervisor_poll.py [--sizes 1000 5000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import sys
import time
import urllib.parse
from collections.abc import Callable

from _harness import Row, measure, print_poll_verdict, print_rows, sim_node

import aiovirt
from aiovirt.backends.hypervisor import Hypervisor
from aiovirt.protocol.privcmd import MAX_BATCH

XENABI_LOADED = "_AIOVIRT_BENCH_PRELOADED"


def preload_xenabi() -> str | None:
    """Re-execute under the Xen ABI library unless already done; return why not, or None."""
    if os.environ.get(XENABI_LOADED):
        return None
    from aiovirt.sim.xenabi import XenToolsUnavailable, build_library

    try:
        library = build_library()
    except XenToolsUnavailable as exc:
        return str(exc)
    env = {**os.environ, "LD_PRELOAD": str(library), XENABI_LOADED: "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return None  # not reached


async def xenctrl_rows(endpoints: dict[str, str], rounds: int) -> list[Row]:
    """Measure the backend on the real libxenctrl: sized listings, then 8,192 each time."""
    os.environ["AIOVIRT_SIM_PRIVCMD"] = endpoints["privcmd"]
    rows = []
    async with await Hypervisor.open("xenctrl") as hv:
        driver = hv.driver
        ids = [rec.domid for rec in await hv.list_domains()]

        async def refresh() -> None:
            await asyncio.gather(*(hv.domain_info(i) for i in ids))

        async def refresh_fixed() -> None:
            driver._expected = MAX_BATCH - 1  # type: ignore[attr-defined]  # the old request
            await asyncio.gather(*(hv.domain_info(i) for i in ids))

        rows.append(await measure("hv xenctrl: listing sized from the last count", len(ids),
                                  refresh, rounds))
        rows.append(await measure("hv xenctrl: 8,192 records per listing (before)", len(ids),
                                  refresh_fixed, rounds))
    return rows

CALLS = 200  # driver calls made one after another, to show the offload's own cost
# The rows issue 6's targets are checked on.
VERDICT_ROWS = ("hv backend: domain_info()", "api dom.info(), all at once",
                "api conn.domain_infos()")


def uri(endpoints: dict[str, str], hypervisor: str | None) -> str:
    """Return the node's URI with the hypervisor parameter replaced (None: off)."""
    parts = urllib.parse.urlsplit(endpoints["uri"])
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "hypervisor"]
    query.append(("hypervisor", hypervisor or "none"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query,
                                                                            safe=":/")))


async def hv_backend_rows(endpoints: dict[str, str], rounds: int) -> list[Row]:
    """Measure the backend alone: ``await domain_info()`` tasks, then gathered futures."""
    rows = []
    async with await Hypervisor.open(f"sim:{endpoints['privcmd']}") as hv:
        ids = [rec.domid for rec in await hv.list_domains()]

        def counter() -> Callable[[], str]:
            before = hv.stats["getinfolist"]
            return lambda: (f"{(hv.stats['getinfolist'] - before) / (rounds + 1):.1f} "
                            "GETDOMAININFOLIST per refresh")

        async def refresh_coroutines() -> None:
            await asyncio.gather(*(hv.domain_info(i) for i in ids))

        async def refresh_futures() -> None:
            await asyncio.gather(*(hv.request_info(i) for i in ids))

        rows.append(await measure("hv backend: domain_info() each, all at once", len(ids),
                                  refresh_coroutines, rounds, counter()))
        rows.append(await measure("hv backend: request_info() futures gathered", len(ids),
                                  refresh_futures, rounds, counter()))

        async def one_call_each() -> None:  # what one offloaded driver call costs
            for _ in range(CALLS):
                await hv.physinfo()

        rows.append(await measure(f"hv backend: {CALLS} physinfo() one by one", CALLS,
                                  one_call_each, rounds))
    return rows


def coalescing_off(conn: aiovirt.Connection) -> None:
    """Turn the connection's xend info coalescing off (also on the code before the router)."""
    routes = getattr(getattr(conn, "_router", None), "xend", None)
    if routes is not None:
        routes.coalescing = False
    else:
        conn._xend_info = None  # type: ignore[attr-defined]  # commit c76012b and before


async def api_rows(endpoints: dict[str, str], rounds: int, seq_limit: int | None) -> list[Row]:
    """Measure the public API: all at once with the hypervisor (every ``info()`` gathered, and
    the bulk ``domain_infos()``), and one by one through xend."""
    rows = []
    async with aiovirt.open(uri(endpoints, f"sim:{endpoints['privcmd']}")) as conn:
        doms = await conn.list_domains()

        async def refresh_all() -> None:
            await asyncio.gather(*(d.info() for d in doms))

        rows.append(await measure("api dom.info(), all at once, hypervisor on", len(doms),
                                  refresh_all, rounds))

        async def refresh_bulk() -> None:
            await conn.domain_infos(doms)

        rows.append(await measure("api conn.domain_infos(), one call", len(doms),
                                  refresh_bulk, rounds))
    async with aiovirt.open(uri(endpoints, None)) as conn:
        doms = (await conn.list_domains())[:seq_limit]
        # The baseline is one HTTP request per info(), nothing else: the connection's xend
        # coalescing (which only helps concurrent calls) is off.
        coalescing_off(conn)

        async def refresh_seq() -> None:
            for d in doms:
                await d.info()

        rows.append(await measure("api dom.info(), one by one, xend only", len(doms),
                                  refresh_seq, 1))
    return rows


def xend_http_row(endpoints: dict[str, str], seq_limit: int | None) -> Row:
    """Measure sequential xend GETs of every domain's detail, a new connection each (0.0.6)."""
    url = urllib.parse.urlsplit(endpoints["xend"])
    host, port = url.hostname or "127.0.0.1", url.port or 8000

    def get(path: str) -> bytes:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", path, headers={"Accept-Encoding": "identity"})
            reply = conn.getresponse()
            body = reply.read()
            if reply.status != 200:
                raise SystemExit(f"xend answered {reply.status} to GET {path}")
            return body
        finally:
            conn.close()

    from aiovirt.protocol.sexpr import parse

    names = [n for n in parse(get("/xend/domain")) if isinstance(n, str)][:seq_limit]
    get(f"/xend/domain/{names[0]}?detail=1")
    c0, t0 = time.process_time(), time.perf_counter()
    for name in names:
        get(f"/xend/domain/{urllib.parse.quote(name)}?detail=1")
    cpu = time.process_time() - c0
    return Row("plain HTTP to xend, one by one, new socket each", len(names),
               time.perf_counter() - t0, cpu, cpu)


async def bench(sizes: list[int], rounds: int, seq_limit: int | None,
                xenctrl: str | None) -> None:
    """Run every size and print the figures and the targets' verdicts."""
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; median of {rounds} "
          "refreshes after one warm-up; the node runs in its own process.")
    if xenctrl:
        print(f"no xenctrl rows: {xenctrl}")
    has_api = hasattr(aiovirt, "open")
    for guests in sizes:
        with sim_node(guests) as endpoints:
            rows = await hv_backend_rows(endpoints, rounds)
            if has_api:
                rows += await api_rows(endpoints, rounds, seq_limit)
            rows.append(await asyncio.to_thread(xend_http_row, endpoints, seq_limit))
            baseline = rows[-2] if has_api else rows[-1]
            if xenctrl is None:
                rows += await xenctrl_rows(endpoints, rounds)
            print(f"\n{guests} guests (+ Domain-0); baseline: '{baseline.label}'")
            print_rows(rows, baseline, heading="method", width=48, rate=True)
            checked = [r for r in rows if r.label.startswith(VERDICT_ROWS)]
            for row in checked:
                print_poll_verdict(guests, row, baseline)


def main() -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seq-limit", type=int, default=None,
                        help="poll only this many domains in the sequential baseline "
                             "(the ratio is per domain)")
    parser.add_argument("--no-xenctrl", action="store_true",
                        help="skip the rows of the real libxenctrl (no re-execution)")
    args = parser.parse_args()
    why = "--no-xenctrl" if args.no_xenctrl else preload_xenabi()
    asyncio.run(bench(args.sizes, args.rounds, args.seq_limit, why))


if __name__ == "__main__":
    main()
