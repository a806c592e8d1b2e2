"""The scan of the event source: which backend lists a node's domains, in the table's order.

Its route, :data:`SCAN`, is listed in the table of :mod:`aiovirt.routing.table` beside the
others: the hypervisor (one batch for every domain, with the shutdown codes), else xend (one
detailed list), else xenstore (each domain's ``info()``). It is not in ``ROUTES`` because no
domain call of the router answers it: the source asks it once per scan for the whole node.
The event source calls the :class:`~aiovirt.events.reading.NodeReader` this returns and knows
no backend itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiovirt.events.diff import Seen
from aiovirt.events.reading import NodeReader, RecordReader, Scan
from aiovirt.protocol.states import DomainState, ShutdownReason
from aiovirt.routing.table import HYPERVISOR, XEND, XENSTORE, Route
from aiovirt.routing.xend import info_from_xend, read_domain_sxpr

__all__ = ["SCAN", "node_reader"]

SCAN = Route((HYPERVISOR, XEND, XENSTORE), "watching the domains")

_REASON_CODES = {r.name.lower(): int(r) for r in ShutdownReason}


def node_reader(conn: Any) -> NodeReader[Any]:
    """Return how to read ``conn``'s node (a :class:`~aiovirt.Connection`): the first open
    backend of the ``scan`` route."""
    hv = conn.hypervisor
    xend = conn.xend
    first = next((b for b in SCAN.backends if b in conn.backends), None)

    async def lookup(domid: int) -> Any:
        return await conn.lookup_by_id(domid)

    xs = conn.xenstore
    exists = xs.exists if xs is not None else None

    if first == HYPERVISOR and hv is not None:
        records = RecordReader()

        async def scan_hypervisor() -> Scan:
            return records.read(await hv.list_domains())

        async def probe_hypervisor(domid: int) -> tuple[Seen, int] | None:
            rec = await hv.domain_info(domid)
            return None if rec is None else records.read_one(rec)

        return NodeReader(scan_hypervisor, lookup, conn.xenstore_path, exists, probe_hypervisor)
    if first == XEND and xend is not None:
        async def scan_xend() -> Scan:
            seen = []
            cpu = {}
            for sx in await xend.list_domains_detail():
                rec = read_domain_sxpr(sx)
                if rec.domid is None:
                    continue
                info = info_from_xend(rec)
                code = None
                if info.state in (DomainState.SHUTOFF, DomainState.CRASHED):
                    reason = rec.fields.get("shutdown_reason", "poweroff")
                    code = _REASON_CODES.get(reason, int(ShutdownReason.POWEROFF))
                    if info.state is DomainState.CRASHED:
                        code = int(ShutdownReason.CRASH)
                seen.append(Seen(rec.domid, rec.uuid, info.state, code, info.memory,
                                 info.max_mem, info.nr_virt_cpu))
                cpu[rec.domid] = info.cpu_time
            return Scan(seen, cpu)

        return NodeReader(scan_xend, lookup, conn.xenstore_path, exists)

    async def scan_store() -> Scan:
        domains = await conn.list_domains()
        infos = await asyncio.gather(*(d.info() for d in domains), return_exceptions=True)
        found = [(d, i) for d, i in zip(domains, infos, strict=True)
                 if not isinstance(i, BaseException)]
        return Scan([Seen(d.id, d.uuid, i.state, None, i.memory, i.max_mem, i.nr_virt_cpu)
                     for d, i in found], {d.id: i.cpu_time for d, i in found})

    return NodeReader(scan_store, lookup, conn.xenstore_path, exists)
