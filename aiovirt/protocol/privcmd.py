"""The simulated node's hypercall endpoint protocol (sans-IO).

A real dom0 reaches the hypervisor through ioctls on ``/proc/xen/privcmd``; the simulated node
offers the same few operations as fixed-size binary requests on a unix socket (``DIR/privcmd``),
so that the hypervisor backend's ``sim`` driver makes one blocking round trip per call, like a
hypercall. Native byte order, like the real structures.

Request (24 bytes): ``op u32, seq u32, domid u32, count u32, value u64``.
Reply: ``op u32, seq u32, result i32, length u32`` then ``length`` payload bytes.
``result`` is >= 0 on success (GETDOMAININFOLIST: the number of records) or ``-errno``.

GETDOMAININFOLIST (first domid ``domid``, at most ``count`` records) answers records laid out
like Xen 3.0's ``dom0_getdomaininfo_t`` (72 bytes, see :data:`DOMAIN_INFO`), for the domains with
id >= ``domid`` in increasing id order, as the real hypercall does.
PAUSEDOMAIN, UNPAUSEDOMAIN, DESTROYDOMAIN act on ``domid``; SETDOMAINMAXMEM sets ``domid``'s
maximum to ``value`` KiB. They answer ``result = 0`` and no payload, or ``-ESRCH`` for a domain
that does not exist and ``-EINVAL`` where Xen refuses (Domain-0 acting on itself).
XEN_VERSION answers ``result = major << 16 | minor`` and the extra version (``".7"``) as UTF-8.
PHYSINFO answers one :data:`PHYSINFO` struct.
"""

from __future__ import annotations

import struct
import uuid
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "DOMAIN_INFO",
    "MAX_BATCH",
    "PAGE_KIB",
    "PHYSINFO",
    "REPLY",
    "REQUEST",
    "DomainInfoRecord",
    "PhysInfo",
    "PrivcmdOp",
    "decode_domain_infos",
    "encode_domain_info",
]

REQUEST = struct.Struct("=IIIIQ")
REPLY = struct.Struct("=IIiI")
# domain u16, pad, flags u32, tot_pages, max_pages, shared_info_frame, cpu_time (ns) u64,
# nr_online_vcpus, max_vcpu_id, ssidref u32, handle (uuid) 16 bytes, pad to 72.
DOMAIN_INFO = struct.Struct("=HxxIQQQQIII16s4x")
# nr_cpus, nr_nodes, cores_per_socket, threads_per_core, cpu_khz u32, total_pages, free_pages u64
PHYSINFO = struct.Struct("=IIIIIQQ")
PAGE_KIB = 4
MAX_BATCH = 8192  # records per GETDOMAININFOLIST reply


class PrivcmdOp(IntEnum):
    """Operations of the simulated hypercall endpoint."""

    GETDOMAININFOLIST = 1
    PAUSEDOMAIN = 2
    UNPAUSEDOMAIN = 3
    DESTROYDOMAIN = 4
    SETDOMAINMAXMEM = 5
    XEN_VERSION = 6
    PHYSINFO = 7


class DomainInfoRecord(NamedTuple):
    """One domain's hypervisor view; memory in pages of :data:`PAGE_KIB` KiB, cpu_time in ns."""

    domid: int
    flags: int
    tot_pages: int
    max_pages: int
    shared_info_frame: int
    cpu_time: int
    nr_online_vcpus: int
    max_vcpu_id: int
    ssidref: int
    handle: bytes

    @property
    def uuid(self) -> uuid.UUID:
        """The domain's UUID (Xen's ``handle``)."""
        return uuid.UUID(bytes=self.handle)


class PhysInfo(NamedTuple):
    """The node's physical description (memory in pages)."""

    nr_cpus: int
    nr_nodes: int
    cores_per_socket: int
    threads_per_core: int
    cpu_khz: int
    total_pages: int
    free_pages: int


def encode_domain_info(rec: DomainInfoRecord) -> bytes:
    """Return the 72-byte record for ``rec``."""
    return DOMAIN_INFO.pack(*rec)


def decode_domain_infos(payload: bytes, count: int) -> list[DomainInfoRecord]:
    """Return ``count`` records from a GETDOMAININFOLIST payload."""
    size = DOMAIN_INFO.size
    if count < 0 or len(payload) < count * size:
        raise ValueError(
            f"domain info payload of {len(payload)} bytes is too short for {count} records"
        )
    new = tuple.__new__
    return [new(DomainInfoRecord, t) for t in DOMAIN_INFO.iter_unpack(payload[:count * size])]
