"""What the event source reads a node with, and hypervisor records made scan records.

The choice of backend is the router's (:func:`aiovirt.routing.scan.node_reader`); the source
only calls the :class:`NodeReader` its connection gives it.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple

from aiovirt.events.diff import Seen
from aiovirt.events.kinds import H
from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord
from aiovirt.protocol.states import (
    DOMINF_SHUTDOWN,
    DOMINF_SHUTDOWN_MASK,
    DOMINF_SHUTDOWN_SHIFT,
    DomainState,
    state_from_flags,
)

__all__ = ["NodeReader", "RecordReader", "Scan"]


class Scan(NamedTuple):
    """One listing of a node: every domain's record, and beside them their CPU times."""

    seen: list[Seen]
    cpu: dict[int, int]
    """domid -> CPU time in ns."""


@dataclass(frozen=True)
class NodeReader(Generic[H]):
    """What the source needs from a connection: a scan, lookups, and the socket to watch."""

    scan: Callable[[], Awaitable[Scan]]
    lookup: Callable[[int], Awaitable[H]]
    xenstore_path: str | None
    exists: Callable[[str], Awaitable[bool]] | None = None
    probe: Callable[[int], Awaitable[tuple[Seen, int] | None]] | None = None
    """One domain's record and CPU time now (None: no such domain), for the watch-driven quick
    step; None when the backend has no per-domain call (every watch firing then rescans)."""


_new_seen = tuple.__new__
# A node's domains share a handful of flag words: (state, shutdown code) per flags. Bounded,
# as the flags also carry the CPU a domain last ran on.
_FLAGS_MAX = 4096


class RecordReader:
    """Turns hypervisor records into :class:`Seen` records, scan after scan, cheaply.

    Memory is the pages times :data:`~aiovirt.protocol.privcmd.PAGE_KIB`, the state and the
    shutdown code come from the flags. The UUID of each handle, the state of each flag word and
    the last record of each domain are remembered: a domain whose record did
    not change (its CPU time aside) is given the very ``Seen`` of the last scan, so a scan of
    5,000 unchanged domains allocates none, and comparing two scans is an identity check.
    """

    def __init__(self) -> None:
        self._uuids: dict[bytes, uuidlib.UUID] = {}
        self._flags: dict[int, tuple[DomainState, int | None]] = {}
        self._last: dict[int, Seen] = {}

    def read_one(self, record: DomainInfoRecord) -> tuple[Seen, int]:
        """Return the scan record and CPU time of one domain (a probe)."""
        scan = self.read([record], partial=True)
        return scan.seen[0], scan.cpu[record[0]]

    def read(self, records: list[DomainInfoRecord], *, partial: bool = False) -> Scan:
        """Return the scan of ``records`` (all the node's, unless ``partial``)."""
        uuids, flag_states, last = self._uuids, self._flags, self._last
        if not partial and len(uuids) > 4 * len(records) + 1024:
            uuids.clear()  # forget the handles of domains long gone
        out = []
        cpu = {}
        now: dict[int, Seen] = {}
        for domid, flags, tot_pages, max_pages, _, cpu_ns, vcpus, _, _, handle in records:
            cpu[domid] = cpu_ns
            uuid = uuids.get(handle)
            if uuid is None:
                uuid = uuids[handle] = uuidlib.UUID(bytes=bytes(handle))
            decoded = flag_states.get(flags)
            if decoded is None:
                code = None
                if flags & DOMINF_SHUTDOWN:
                    code = (flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
                decoded = (state_from_flags(flags), code)
                if len(flag_states) < _FLAGS_MAX:
                    flag_states[flags] = decoded
            memory, max_mem = tot_pages * PAGE_KIB, max_pages * PAGE_KIB
            seen = last.get(domid)
            if seen is None or not (seen[1] is uuid and seen[2] is decoded[0]
                                    and seen[4] == memory and seen[5] == max_mem
                                    and seen[6] == vcpus and seen[3] == decoded[1]):
                seen = _new_seen(Seen, (domid, uuid, decoded[0], decoded[1], memory, max_mem,
                                        vcpus))
            now[domid] = seen
            out.append(seen)
        if partial:
            last.update(now)
        else:
            self._last = now  # the domains gone are forgotten
        return Scan(out, cpu)
