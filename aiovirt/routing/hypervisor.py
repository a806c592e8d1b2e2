"""What the face needs from the hypervisor: its domain records made libvirt's values, and its
answer to each call it routes (methods named after the calls, see :mod:`aiovirt.routing.table`).

The hypervisor knows ids, UUID handles, flags, pages and CPU time, but no names: the calls
that return domains read their names from xenstore (:class:`XenStoreRoutes`), and pass when
the connection has no xenstore.
"""

from __future__ import annotations

import asyncio
import platform
import uuid as uuidlib

from aiovirt.backends.hypervisor import Hypervisor
from aiovirt.info import DomainInfo, NodeInfo
from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord
from aiovirt.protocol.states import DomainState, state_from_flags
from aiovirt.routing.identity import Found, Identity, gone, gone_if_missing, is_same, no_domain
from aiovirt.routing.table import PASS, Pass
from aiovirt.routing.xenstore import XenStoreRoutes

__all__ = ["HypervisorRoutes", "info_from_record"]

_new_tuple = tuple.__new__
# Hypervisor flags -> state, memoised: a node's domains share a handful of flag words, and
# state_from_flags's enum lookups would otherwise cost a microsecond per info(). Bounded, as
# the flags also carry the CPU a domain last ran on.
_FLAG_STATES: dict[int, DomainState] = {}
_FLAG_STATES_MAX = 4096


def _state_of(flags: int) -> DomainState:
    state = _FLAG_STATES.get(flags)
    if state is None:
        state = state_from_flags(flags)
        if len(_FLAG_STATES) < _FLAG_STATES_MAX:
            _FLAG_STATES[flags] = state
    return state


def info_from_record(rec: DomainInfoRecord) -> DomainInfo:
    """Return libvirt's info (KiB, nanoseconds) from the hypervisor's record (pages).

    ``dom.info()``'s hot path (thousands at once): the record is unpacked in one step, and
    tuple.__new__ skips the NamedTuple's Python-level __new__ (same object, a frame less).
    """
    _, flags, tot_pages, max_pages, _, cpu_time, vcpus, _, _, _ = rec
    state = _FLAG_STATES.get(flags)
    if state is None:
        state = _state_of(flags)
    info: DomainInfo = _new_tuple(DomainInfo, (
        state, max_pages * PAGE_KIB, tot_pages * PAGE_KIB, vcpus, cpu_time))
    return info


class HypervisorRoutes:
    """The hypervisor backend's answers for the node of ``uri``; names from ``store``."""

    def __init__(self, hv: Hypervisor, uri: str, store: XenStoreRoutes | None) -> None:
        self.hv = hv
        self.uri = uri
        self.store = store

    # -- coalesced info() ------------------------------------------------------------------

    def request(self, ident: Identity) -> asyncio.Future[DomainInfoRecord | None]:
        """Return a future of ``ident``'s record from the forming GETDOMAININFOLIST batch."""
        return self.hv.request_info(ident.id)

    def answer(self, ident: Identity, rec: DomainInfoRecord | None) -> DomainInfo:
        """Return ``ident``'s info from the answer to :meth:`request`; NO_DOMAIN if gone."""
        if rec is None or not is_same(ident, rec.domid, rec.handle):
            raise gone(ident, self.uri)  # gone, or the id now belongs to another domain
        return info_from_record(rec)

    async def record(self, ident: Identity) -> DomainInfoRecord:
        """Return ``ident``'s record from a fresh batch; NO_DOMAIN if it has gone."""
        rec = await self.hv.domain_info(ident.id)
        if rec is None or not is_same(ident, rec.domid, rec.handle):
            raise gone(ident, self.uri)
        return rec

    async def records(self) -> list[DomainInfoRecord]:
        """Return every domain's record from a fresh batch."""
        return await self.hv.list_domains()

    async def _named(self, records: list[DomainInfoRecord]) -> list[Found]:
        assert self.store is not None
        names = await asyncio.gather(*(self.store.name(r.domid) for r in records))
        return [Found(name, r.domid, uuidlib.UUID(bytes=r.handle))
                for r, name in zip(records, names, strict=True) if name is not None]

    # -- the calls ---------------------------------------------------------------------------

    async def list_ids(self) -> list[int]:
        """Return the ids of one GETDOMAININFOLIST."""
        return sorted(r.domid for r in await self.records())

    async def list_domains(self) -> list[Found] | Pass:
        """Return every domain of one GETDOMAININFOLIST, named from xenstore."""
        if self.store is None:
            return PASS
        return await self._named(await self.records())

    async def lookup_by_uuid(self, wanted: uuidlib.UUID) -> Found | Pass:
        """Find the handle ``wanted``; its name comes from xenstore, else pass."""
        match = next((r for r in await self.records() if r.handle == wanted.bytes), None)
        if match is None:
            raise no_domain(f"uuid {wanted}", self.uri)
        if self.store is not None:
            ident = await self.store.identity(match.domid)
            if ident is not None:
                return Found(ident[0], match.domid, wanted)
        return PASS

    async def info(self, ident: Identity) -> DomainInfo:
        """Return ``ident``'s info from a fresh record."""
        return info_from_record(await self.record(ident))

    async def max_memory(self, ident: Identity) -> int:
        """Return ``ident``'s memory limit (KiB)."""
        return (await self.record(ident)).max_pages * PAGE_KIB

    async def suspend(self, ident: Identity) -> None:
        """PAUSEDOMAIN, after checking the id is still ``ident``'s."""
        await self.record(ident)
        with gone_if_missing(ident, self.uri):
            await self.hv.pause(ident.id)

    async def resume(self, ident: Identity) -> None:
        """UNPAUSEDOMAIN, after checking the id is still ``ident``'s."""
        await self.record(ident)
        with gone_if_missing(ident, self.uri):
            await self.hv.unpause(ident.id)

    async def destroy(self, ident: Identity) -> None:
        """DESTROYDOMAIN, after checking the id is still ``ident``'s."""
        await self.record(ident)
        with gone_if_missing(ident, self.uri):
            await self.hv.destroy(ident.id)

    async def set_max_memory(self, ident: Identity, kib: int) -> None:
        """SETDOMAINMAXMEM, after checking the id is still ``ident``'s."""
        await self.record(ident)
        with gone_if_missing(ident, self.uri):
            await self.hv.set_max_memory(ident.id, kib)

    async def node_info(self) -> NodeInfo:
        """Return the node's description from PHYSINFO."""
        phys = await self.hv.physinfo()
        nodes = max(phys.nr_nodes, 1)
        cores = max(phys.cores_per_socket, 1)
        threads = max(phys.threads_per_core, 1)
        sockets = max(phys.nr_cpus // (nodes * cores * threads), 1)
        return NodeInfo(platform.machine() or "unknown", phys.total_pages * PAGE_KIB,
                        phys.nr_cpus, phys.cpu_khz // 1000, nodes, sockets, cores, threads)

    async def version(self) -> int:
        """Return the hypervisor's version (XEN_VERSION)."""
        return await self.hv.version()
