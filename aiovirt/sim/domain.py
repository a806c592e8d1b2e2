"""The simulated node's domain model: a domain's configuration and its hypervisor state.

Units: memory in KiB, CPU time in nanoseconds (computed lazily from a monotonic clock while a
domain runs, never ticked), wall times in epoch seconds. How xend shows a domain is
:mod:`aiovirt.sim.xend_views`; where it lives in xenstore is :mod:`aiovirt.sim.layout`.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from dataclasses import dataclass, field

from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord
from aiovirt.protocol.sexpr import SExpr
from aiovirt.protocol.states import ShutdownReason, flags_for
from aiovirt.protocol.xen import NULL_UUID

__all__ = ["DOM0_UUID", "SimDomain", "Vbd", "Vif", "mib"]

DOM0_UUID = NULL_UUID  # Domain-0's UUID is all zeros


def mib(kib: int) -> int:
    """Return ``kib`` in MiB, rounded up, as xend reports memory."""
    return (kib + 1023) // 1024


@dataclass
class Vbd:
    """A block device as configured: ``dev`` without the ``:disk``/``:cdrom`` suffix."""

    devid: int
    dev: str
    uname: str
    mode: str = "w"
    device_type: str = "disk"
    backend: int = 0


@dataclass
class Vif:
    """A network interface as configured."""

    devid: int
    mac: str
    bridge: str | None = "xenbr0"
    script: str = "vif-bridge"
    ip: str | None = None
    type: str | None = None
    vifname: str | None = None
    rate: str | None = None
    backend: int = 0


@dataclass(eq=False)
class SimDomain:
    """One domain: its configuration (as xend keeps it) and its hypervisor state."""

    domid: int
    name: str
    uuid: uuidlib.UUID
    vcpus: int
    memory_kib: int  # balloon target; the domain holds min(target, the hypervisor's max)
    maxmem_kib: int  # the configured maximum: xend's sxpr and /vm say this one
    vcpu_avail: int = 0
    cpu_weight: float = 1.0
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "restart"
    image: list[SExpr] | None = None
    bootloader: str | None = None
    bootloader_args: str | None = None
    vbds: list[Vbd] = field(default_factory=list)
    vifs: list[Vif] = field(default_factory=list)
    start_time: float | None = None
    store_mfn: int | None = None
    console_mfn: int | None = None
    restart_count: int = 0
    # hypervisor state
    hv_max_kib: int = 0  # the hypervisor's limit (max_pages); 0: the configured maximum
    paused: bool = False
    shutdown_code: int | None = None
    dying: bool = False
    busy: bool = False
    load: float = 0.01  # share of each online vCPU used while running
    cpu_ns_base: int = 0
    run_since: float = 0.0
    share: float = 1.0  # the fraction of its demand the host's CPUs can give it
    timers: set[asyncio.TimerHandle] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if not self.vcpu_avail:
            self.vcpu_avail = (1 << self.vcpus) - 1
        if not self.hv_max_kib:
            self.hv_max_kib = self.maxmem_kib

    @property
    def online_vcpus(self) -> int:
        """Return the number of vCPUs allowed online."""
        return bin(self.vcpu_avail & ((1 << self.vcpus) - 1)).count("1") or 1

    @property
    def consuming(self) -> bool:
        """Return True while the domain's vCPUs can run (not paused, shut down or dying)."""
        return not (self.paused or self.dying or self.shutdown_code is not None)

    @property
    def current_kib(self) -> int:
        """Return the memory the domain holds now (its balloon follows the target)."""
        return min(self.memory_kib, self.hv_max_kib)

    def cpu_time_ns(self, now: float) -> int:
        """Return the CPU time used up to monotonic time ``now``."""
        if not self.consuming:
            return self.cpu_ns_base
        rate = self.load * self.online_vcpus * self.share
        return self.cpu_ns_base + int((now - self.run_since) * rate * 1e9)

    def settle(self, now: float) -> None:
        """Fold the CPU time used so far; call before any change of state or vCPUs."""
        self.cpu_ns_base = self.cpu_time_ns(now)
        self.run_since = now

    @property
    def flags(self) -> int:
        """Return the hypervisor's ``XEN_DOMINF_*`` flags for the domain."""
        if self.dying:
            return flags_for(dying=True)
        if self.shutdown_code is not None:
            return flags_for(shutdown=ShutdownReason(self.shutdown_code), paused=self.paused)
        if self.paused:
            return flags_for(paused=True)
        return flags_for(running=self.busy or self.domid == 0, blocked=not (
            self.busy or self.domid == 0))

    def record(self, now: float) -> DomainInfoRecord:
        """Return the hypervisor's info record (GETDOMAININFOLIST) for the domain."""
        return DomainInfoRecord(
            self.domid, self.flags, self.current_kib // PAGE_KIB, self.hv_max_kib // PAGE_KIB,
            (self.store_mfn or 0x1000 + self.domid) - 2, self.cpu_time_ns(now),
            self.online_vcpus, self.vcpus - 1, 0, self.uuid.bytes,
        )

    @property
    def home(self) -> str:
        """Return the xenstore home path ``/local/domain/<id>``."""
        return f"/local/domain/{self.domid}"

    @property
    def vm_path(self) -> str:
        """Return the xenstore VM path ``/vm/<uuid>``."""
        return f"/vm/{self.uuid}"
