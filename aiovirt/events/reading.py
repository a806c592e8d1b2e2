"""How the event source reads a node: which backend lists the domains for a scan.

ROUTER: this module is the one place where the events pick a backend. It moves into
``aiovirt/routing/`` (the one router) once that lands; nothing else in ``aiovirt.events``
knows a backend.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiovirt.events.diff import Seen
from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord
from aiovirt.protocol.states import (
    DOMINF_SHUTDOWN,
    DOMINF_SHUTDOWN_MASK,
    DOMINF_SHUTDOWN_SHIFT,
    DomainState,
    ShutdownReason,
    state_from_flags,
)

if TYPE_CHECKING:
    from aiovirt.connection import Connection
    from aiovirt.domain import Domain

__all__ = ["NodeReader", "node_reader"]


@dataclass(frozen=True)
class NodeReader:
    """What the source needs from a connection: a scan, lookups, and the socket to watch."""

    scan: Callable[[], Awaitable[list[Seen]]]
    lookup: Callable[[int], Awaitable[Domain]]
    xenstore_path: str | None
    exists: Callable[[str], Awaitable[bool]] | None = None


def seen_from_record(rec: DomainInfoRecord) -> Seen:
    """Return the scan record of one hypervisor domain-info record."""
    code = None
    if rec.flags & DOMINF_SHUTDOWN:
        code = (rec.flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
    return Seen(rec.domid, uuidlib.UUID(bytes=bytes(rec.handle)), state_from_flags(rec.flags),
                code, rec.tot_pages * PAGE_KIB, rec.max_pages * PAGE_KIB, rec.nr_online_vcpus,
                rec.cpu_time)


_REASON_CODES = {r.name.lower(): int(r) for r in ShutdownReason}


def node_reader(conn: Connection) -> NodeReader:
    """Return how to read ``conn``'s node: the hypervisor's list if it has one, else xend's,
    else one ``info()`` per domain of the store."""
    hv = conn.hypervisor
    xend = conn.xend

    async def lookup(domid: int) -> Domain:
        return await conn.lookup_by_id(domid)

    xs = conn.xenstore
    exists = xs.exists if xs is not None else None

    if hv is not None:
        async def scan_hypervisor() -> list[Seen]:
            return [seen_from_record(rec) for rec in await hv.list_domains()]

        return NodeReader(scan_hypervisor, lookup, conn.xenstore_path, exists)
    if xend is not None:
        from aiovirt.routing.xend import info_from_xend, read_domain_sxpr

        async def scan_xend() -> list[Seen]:
            seen = []
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
                                 info.max_mem, info.nr_virt_cpu, info.cpu_time))
            return seen

        return NodeReader(scan_xend, lookup, conn.xenstore_path, exists)

    async def scan_store() -> list[Seen]:
        domains = await conn.list_domains()
        infos = await asyncio.gather(*(d.info() for d in domains), return_exceptions=True)
        return [Seen(d.id, d.uuid, i.state, None, i.memory, i.max_mem, i.nr_virt_cpu, i.cpu_time)
                for d, i in zip(domains, infos, strict=True) if not isinstance(i, BaseException)]

    return NodeReader(scan_store, lookup, conn.xenstore_path, exists)
