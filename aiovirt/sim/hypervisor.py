"""The simulated hypervisor: Xen's table of domains by id, the host's memory and CPUs.

What the hypercalls see (:class:`~aiovirt.sim.privcmd.HypervisorModel` is served from it by the
node): the domains in id order, their info records, the checks a domain operation makes (``ESRCH``
for a missing domain, ``EINVAL`` for Domain-0), physical memory and how the host's CPUs are shared
among the running vCPUs. Names, configuration and the store are the toolstack's, in the node.
"""

from __future__ import annotations

import errno
import time
from bisect import bisect_left, insort

from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord, PhysInfo
from aiovirt.sim.domain import SimDomain

__all__ = ["XEN_VERSION", "Hypervisor", "host_cpus"]

XEN_VERSION = (3, 0, ".3-0")


def host_cpus(guests: int) -> int:
    """Return the CPUs of a host sized for ``guests`` (4 for a handful, up to 128)."""
    return min(128, max(4, 1 << max(0, (guests // 8).bit_length())))


class Hypervisor:
    """The domains by id, ``nr_cpus`` host CPUs and ``total_kib`` of memory."""

    def __init__(self, nr_cpus: int) -> None:
        self.nr_cpus = nr_cpus
        self.total_kib = 0
        self.domains: dict[int, SimDomain] = {}
        self.ids: list[int] = []  # ascending, for GETDOMAININFOLIST's "from this id on"
        self._share = 1.0

    def add(self, dom: SimDomain) -> None:
        """Make ``dom`` the domain with its id."""
        self.domains[dom.domid] = dom
        insort(self.ids, dom.domid)

    def remove(self, dom: SimDomain) -> None:
        """Forget ``dom`` (if it still holds its id)."""
        if self.domains.get(dom.domid) is dom:
            del self.domains[dom.domid]
            i = bisect_left(self.ids, dom.domid)
            if i < len(self.ids) and self.ids[i] == dom.domid:
                del self.ids[i]

    def holds(self, dom: SimDomain) -> bool:
        """Return True if ``dom`` is still the domain with its id (not destroyed, not replaced)."""
        return self.domains.get(dom.domid) is dom

    def target(self, domid: int, verb: str | None = None) -> SimDomain:
        """Return the domain a hypercall on ``domid`` acts on, or raise OSError as Xen does.

        ``ESRCH`` if there is none; ``EINVAL`` for Domain-0 when ``verb`` (the operation's name
        in the message) is one Domain-0 refuses: Xen's answer to a domain pausing or
        destroying itself (``d == current->domain``).
        """
        dom = self.domains.get(domid)
        if dom is None:
            raise OSError(errno.ESRCH, f"no domain {domid}")
        if verb is not None and domid == 0:
            raise OSError(errno.EINVAL, f"cannot {verb} Domain-0")
        return dom

    def records(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of domains with id >= ``first_domid``, ascending."""
        now = time.monotonic()
        i = bisect_left(self.ids, first_domid)
        domains = self.domains
        return [domains[d].record(now) for d in self.ids[i:i + max(0, max_count)]]

    def free_kib(self) -> int:
        """Return the host's memory not held by any domain."""
        return self.total_kib - sum(d.current_kib for d in self.domains.values())

    def rebalance(self) -> None:
        """Share the host's CPUs among the running vCPUs, as Xen's scheduler does when the
        guests want more than there is; call after every change of state."""
        demand = sum(d.load * d.online_vcpus for d in self.domains.values() if d.consuming)
        share = min(1.0, self.nr_cpus / demand) if demand else 1.0
        if abs(share - self._share) < 1e-9:
            return
        now = time.monotonic()
        for dom in self.domains.values():
            dom.settle(now)
            dom.share = share
        self._share = share

    def physinfo(self) -> PhysInfo:
        """Return the host's physical description (memory in pages)."""
        cores = min(self.nr_cpus, 8)
        return PhysInfo(self.nr_cpus, 1, cores, 1, 2394000, self.total_kib // PAGE_KIB,
                        max(0, self.free_kib()) // PAGE_KIB)
