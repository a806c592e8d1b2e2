"""What the event source reads a node with, and hypervisor records made scan records.

The choice of backend is the router's (:func:`aiovirt.routing.scan.node_reader`); the source
only calls the :class:`NodeReader` its connection gives it.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic

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

__all__ = ["NodeReader", "RecordReader", "seen_from_record"]


@dataclass(frozen=True)
class NodeReader(Generic[H]):
    """What the source needs from a connection: a scan, lookups, and the socket to watch."""

    scan: Callable[[], Awaitable[list[Seen]]]
    lookup: Callable[[int], Awaitable[H]]
    xenstore_path: str | None
    exists: Callable[[str], Awaitable[bool]] | None = None
    probe: Callable[[int], Awaitable[Seen | None]] | None = None
    """One domain's record now (None: no such domain), for the watch-driven quick step; None
    when the backend has no per-domain call (every watch firing then rescans the node)."""


def seen_from_record(rec: DomainInfoRecord) -> Seen:
    """Return the scan record of one hypervisor domain-info record."""
    code = None
    if rec.flags & DOMINF_SHUTDOWN:
        code = (rec.flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
    return Seen(rec.domid, uuidlib.UUID(bytes=bytes(rec.handle)), state_from_flags(rec.flags),
                code, rec.tot_pages * PAGE_KIB, rec.max_pages * PAGE_KIB, rec.nr_online_vcpus,
                rec.cpu_time)


_new_seen = tuple.__new__
# A node's domains share a handful of flag words: (state, shutdown code) per flags. Bounded,
# as the flags also carry the CPU a domain last ran on.
_FLAGS_MAX = 4096


class RecordReader:
    """Turns hypervisor records into :class:`Seen` records, scan after scan, cheaply.

    The same answers as :func:`seen_from_record`, with the UUID of each handle and the state
    of each flag word remembered, so that the unchanged domains of a 5,000-domain scan cost a
    tuple each. The UUIDs are the same objects from scan to scan, which makes comparing two
    scans an identity check.
    """

    def __init__(self) -> None:
        self._uuids: dict[bytes, uuidlib.UUID] = {}
        self._flags: dict[int, tuple[DomainState, int | None]] = {}

    def read_one(self, record: DomainInfoRecord) -> Seen:
        """Return the scan record of one domain (a probe), the UUID shared with the scans."""
        return self.read([record], forget=False)[0]

    def read(self, records: list[DomainInfoRecord], *, forget: bool = True) -> list[Seen]:
        """Return the scan records of ``records``."""
        uuids, flag_states = self._uuids, self._flags
        if forget and len(uuids) > 4 * len(records) + 1024:
            uuids.clear()  # forget the handles of domains long gone
        out = []
        for rec in records:
            handle = rec.handle
            uuid = uuids.get(handle)
            if uuid is None:
                uuid = uuids[handle] = uuidlib.UUID(bytes=bytes(handle))
            flags = rec.flags
            decoded = flag_states.get(flags)
            if decoded is None:
                code = None
                if flags & DOMINF_SHUTDOWN:
                    code = (flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
                decoded = (state_from_flags(flags), code)
                if len(flag_states) < _FLAGS_MAX:
                    flag_states[flags] = decoded
            out.append(_new_seen(Seen, (
                rec.domid, uuid, decoded[0], decoded[1], rec.tot_pages * PAGE_KIB,
                rec.max_pages * PAGE_KIB, rec.nr_online_vcpus, rec.cpu_time)))
        return out


