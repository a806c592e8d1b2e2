"""The simulated Xen node: its domains, their lifecycle, and the servers that show them.

:class:`SimNode` holds a Domain-0 and N guests and is the one source of truth for them. Every
change goes through a method here, which updates the domain, rewrites the xenstore tree the way
xend 3.0.3 and the guest kernels did (``/local/domain/<id>``, ``/vm/<uuid>``, device dirs), fires
``@introduceDomain`` / ``@releaseDomain`` through the store, so that the three interfaces the node
serves (xenstored, xend, the hypercall endpoint) always agree.

Units: memory in KiB, CPU time in nanoseconds (computed lazily from a monotonic clock while a
domain runs, never ticked), wall times in epoch seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import random
import re
import socket
import stat
import struct
import time
import uuid as uuidlib
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord, PhysInfo
from aiovirt.protocol.sexpr import SExpr, SexprError, dumps, format_float, parse_all
from aiovirt.protocol.states import ShutdownReason, flags_for, xend_state_string
from aiovirt.protocol.xs_wire import Perm, PermAccess
from aiovirt.sim.faults import Faults

log = logging.getLogger(__name__)

__all__ = [
    "NoSuchDomain",
    "SimDirInUse",
    "SimDomain",
    "SimError",
    "SimNode",
    "Vbd",
    "Vif",
]

DOM0_UUID = uuidlib.UUID(int=0)
SAVE_MAGIC = b"LinuxGuestRecord"
XEN_VERSION = (3, 0, ".3-0")
MAX_SOCKET_PATH = 107

# xend's names of the hypervisor's shutdown codes (code 4 is Xen's "halt"/watchdog slot).
REASON_NAMES = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "halt"}
# What a Linux guest does with a control/shutdown request: the code it shuts down with.
GUEST_SHUTDOWN_CODES = {
    "poweroff": ShutdownReason.POWEROFF,
    "halt": ShutdownReason.POWEROFF,
    "reboot": ShutdownReason.REBOOT,
    "suspend": ShutdownReason.SUSPEND,
}
XEND_SHUTDOWN_REASONS = ("poweroff", "reboot", "halt", "suspend", "crash")
RESTART_MODES = ("destroy", "restart", "preserve", "rename-restart")
DEVICE_CLASSES = ("vbd", "vif", "vtpm", "pci", "ioports", "irq", "usb", "tap")
VM_NAME = re.compile(r"[A-Za-z0-9_.:/+-]+\Z")
SHUTDOWN_TIMEOUT = 30.0  # xend 3.0.x destroys a domain still alive this long after a request

_RNG_KERNEL = "/boot/vmlinuz-2.6.16.29-xen"
_RNG_RAMDISK = "/boot/initrd-2.6.16.29-xen.img"


class SimError(Exception):
    """A request the simulated toolstack refuses; ``str()`` is xend's error text."""


class NoSuchDomain(SimError):
    """No domain answers to ``ref`` (a name or an id)."""

    def __init__(self, ref: object) -> None:
        super().__init__(f"No such domain {ref}")
        self.ref = ref


class SimDirInUse(RuntimeError):
    """The node's directory holds a socket that a live server still answers on."""


def py_int(text: object) -> int:
    """Return ``int(text)`` or raise :class:`SimError` with Python's message, as xend did."""
    try:
        return int(str(text).strip())
    except ValueError:
        raise SimError(f"invalid literal for int() with base 10: {str(text)!r}") from None


def blkdev_number(dev: str) -> int:
    """Return the Linux device number xend uses as a vbd's devid (``sda1`` -> 2049)."""
    if dev.isdigit():
        return int(dev)
    m = re.fullmatch(r"(sd|hd|xvd)([a-z])(\d*)", dev)
    if m is None:
        raise SimError(f"Invalid vbd device name: {dev}")
    kind, letter, part = m.group(1), ord(m.group(2)) - ord("a"), int(m.group(3) or 0)
    if kind == "sd":
        major, minor = 8, letter * 16 + part
    elif kind == "xvd":
        major, minor = 202, letter * 16 + part
    else:
        majors = (3, 3, 22, 22, 33, 33, 34, 34, 56, 56, 57, 57, 88, 88, 89, 89)
        if letter >= len(majors):
            raise SimError(f"Invalid vbd device name: {dev}")
        major, minor = majors[letter], (letter % 2) * 64 + part
    return major * 256 + minor


@dataclass
class Vbd:
    """A block device as configured: ``dev`` without the ``:disk``/``:cdrom`` suffix."""

    devid: int
    dev: str
    uname: str
    mode: str = "w"
    device_type: str = "disk"
    backend: int = 0

    def sxpr(self) -> list[SExpr]:
        """Return xend 3.0.3's report of this device."""
        return ["vbd", ["backend", str(self.backend)], ["dev", f"{self.dev}:{self.device_type}"],
                ["uname", self.uname], ["mode", self.mode]]


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

    def sxpr(self) -> list[SExpr]:
        """Return xend 3.0.3's report of this device (script as a basename)."""
        out: list[SExpr] = ["vif", ["backend", str(self.backend)],
                            ["script", os.path.basename(self.script)]]
        if self.ip:
            out.append(["ip", self.ip])
        if self.bridge:
            out.append(["bridge", self.bridge])
        out.append(["mac", self.mac])
        for key in ("type", "vifname", "rate"):
            value = getattr(self, key)
            if value:
                out.append([key, value])
        return out


@dataclass(eq=False)
class SimDomain:
    """One domain: its configuration (as xend keeps it) and its hypervisor state."""

    domid: int
    name: str
    uuid: uuidlib.UUID
    vcpus: int
    memory_kib: int  # balloon target; the domain holds min(target, max)
    maxmem_kib: int
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
        return min(self.memory_kib, self.maxmem_kib)

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
            self.domid, self.flags, self.current_kib // PAGE_KIB, self.maxmem_kib // PAGE_KIB,
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

    def config_sxpr(self) -> list[SExpr]:
        """Return the domain's configuration as xend accepts it back (create, restore)."""
        return self.sxpr(now=0.0, wall=0.0, merged=False, state=False)

    def sxpr(self, now: float, wall: float, *, merged: bool = True,
             state: bool = True) -> list[SExpr]:
        """Return xend 3.0.3's ``(domain ...)`` S-expression, fields in its order (memory MiB).

        ``merged=False`` is the record before xend merged hypervisor info (``op=create``'s
        reply): state ``??????``, no shutdown reason or CPU time.
        """
        out: list[SExpr] = [
            "domain", ["domid", str(self.domid)], ["uuid", str(self.uuid)],
            ["vcpus", str(self.vcpus)], ["vcpu_avail", str(self.vcpu_avail)],
            ["cpu_weight", format_float(self.cpu_weight)],
            ["memory", str(_mib(self.memory_kib))], ["shadow_memory", "0"],
            ["maxmem", str(_mib(self.maxmem_kib))],
        ]
        if self.bootloader is not None:
            out.append(["bootloader", self.bootloader])
        if self.bootloader_args is not None:
            out.append(["bootloader_args", self.bootloader_args])
        out += [["features", ""], ["name", self.name], ["on_poweroff", self.on_poweroff],
                ["on_reboot", self.on_reboot], ["on_crash", self.on_crash]]
        if self.image is not None:
            out.append(["image", self.image])
        out += [["device", vif.sxpr()] for vif in self.vifs]
        out += [["device", vbd.sxpr()] for vbd in self.vbds]
        if not state:
            return out
        if merged:
            out.append(["state", xend_state_string(self.flags)])
            out.append(["shutdown_reason", REASON_NAMES.get(self.shutdown_code or 0, "poweroff")])
            out.append(["cpu_time", format_float(self.cpu_time_ns(now) / 1e9)])
        else:
            out.append(["state", "??????"])
        out.append(["online_vcpus", str(self.online_vcpus)])
        if self.start_time is not None:
            out.append(["up_time", format_float(max(0.0, wall - self.start_time))])
            out.append(["start_time", format_float(self.start_time)])
        if self.store_mfn:
            out.append(["store_mfn", str(self.store_mfn)])
        if self.console_mfn:
            out.append(["console_mfn", str(self.console_mfn)])
        return out


def _mib(kib: int) -> int:
    return (kib + 1023) // 1024


def _child(expr: list[SExpr], key: str) -> list[SExpr] | None:
    for item in expr[1:]:
        if isinstance(item, list) and item and item[0] == key:
            return item
    return None


def _value(expr: list[SExpr], key: str, default: str | None = None) -> str | None:
    item = _child(expr, key)
    if item is None:
        return default
    if len(item) < 2:
        return ""
    v = item[1]
    return v if isinstance(v, str) else default


def _random_mac(rng: random.Random) -> str:
    a, b, c = rng.randrange(0x80), rng.randrange(256), rng.randrange(256)
    return f"00:16:3e:{a:02x}:{b:02x}:{c:02x}"


def _random_uuid(rng: random.Random) -> uuidlib.UUID:
    # xend 3.0.x: 16 random bytes, no RFC 4122 version bits
    return uuidlib.UUID(bytes=rng.getrandbits(128).to_bytes(16, "big"))


def parse_config(text_or_expr: str | bytes | SExpr) -> list[SExpr]:
    """Return the first S-expression of a create config, or raise xend's configuration error."""
    if isinstance(text_or_expr, list):
        return text_or_expr
    try:
        values = parse_all(text_or_expr) if isinstance(text_or_expr, (str, bytes)) else []
    except SexprError as exc:
        if exc.reason.startswith("unterminated list"):
            # xend's reader yields nothing for an unclosed list; op_create then fails so
            raise SimError("Configuration error list index out of range") from exc
        raise SimError(f"Invalid configuration {exc.reason}") from exc
    if not values or not isinstance(values[0], list) or not values[0]:
        raise SimError("Configuration error list index out of range")
    return values[0]


class SimNode:
    """A simulated Xen node served over xenstored, xend and the hypercall endpoint.

    ``async with SimNode(directory, domains=3, seed=None, xend_port=0, shutdown_delay=0.2) as
    node`` starts the xenstore daemon (``DIR/socket``, ``DIR/socket_ro``), xend (``DIR/xend-socket``
    and TCP 127.0.0.1), and the hypercall endpoint (``DIR/privcmd``). ``shutdown_delay`` is how
    long a guest takes from acknowledging a shutdown request to being shut down; ``reap_delay``
    how long the shut-down domain stays visible before xend applies ``on_poweroff`` etc.;
    ``dying_delay`` how long a destroyed domain lingers as ``Zombie-<name>`` (0: it vanishes).
    ``error_style`` picks xend's error conventions (``"3.0.3"``, ``"3.0.2"``, ``"3.0.4"``,
    ``"3.4"``, see :mod:`aiovirt.sim.xend`).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        domains: int = 3,
        seed: int | None = None,
        xend_port: int = 0,
        shutdown_delay: float = 0.2,
        *,
        reap_delay: float = 0.05,
        dying_delay: float = 0.0,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        error_style: str = "3.0.3",
        faults: Faults | None = None,
        xend_host: str = "127.0.0.1",
    ) -> None:
        self.directory = Path(directory).absolute()
        self.initial_domains = domains
        self.seed = seed
        self.shutdown_delay = shutdown_delay
        self.reap_delay = reap_delay
        self.dying_delay = dying_delay
        self.shutdown_timeout = shutdown_timeout
        self.error_style = error_style
        self.faults = faults if faults is not None else Faults()
        self.xend_host = xend_host
        self._xend_port_wanted = xend_port
        self.xend_port = 0
        self.rng = random.Random(seed)
        self.counters: Counter[str] = Counter()
        self.db: Any = None
        self._xenstored: Any = None
        self._privcmd: Any = None
        self._xend: Any = None
        self._domains: dict[int, SimDomain] = {}
        self._ids: list[int] = []
        self._by_name: dict[str, SimDomain] = {}
        self._next_domid = 1
        self._timers: set[asyncio.TimerHandle] = set()
        self._guest_session: Any = None
        self._changed = asyncio.Event()
        self._started = False
        self._total_kib = 0
        self._dom0_kib = 2048 * 1024
        # A host sized for its guests (4 cores for a handful, up to 128), whose CPUs the
        # running vCPUs share: CPU time never grows faster than the host has CPUs.
        self.nr_cpus = min(128, max(4, 1 << max(0, (domains // 8).bit_length())))
        self._share = 1.0

    # -- paths and endpoints ---------------------------------------------------------------
    @property
    def xenstore_path(self) -> str:
        """Return the read-write xenstore socket path."""
        return str(self.directory / "socket")

    @property
    def xenstore_ro_path(self) -> str:
        """Return the read-only xenstore socket path."""
        return str(self.directory / "socket_ro")

    @property
    def xend_unix_path(self) -> str:
        """Return xend's unix socket path."""
        return str(self.directory / "xend-socket")

    @property
    def privcmd_path(self) -> str:
        """Return the hypercall endpoint's socket path."""
        return str(self.directory / "privcmd")

    @property
    def uri(self) -> str:
        """Return the URI that ``aiovirt.open()`` accepts to reach this node (contract 4)."""
        return (f"xen:///?xend=unix:{self.xend_unix_path}&xenstore={self.xenstore_path}"
                f"&hypervisor=sim:{self.privcmd_path}")

    @property
    def endpoints(self) -> dict[str, str]:
        """Return uri, xenstore, xenstore_ro, xend, xend_unix and privcmd, as the CLI prints."""
        return {
            "uri": self.uri,
            "xenstore": self.xenstore_path,
            "xenstore_ro": self.xenstore_ro_path,
            "xend": f"http://{self.xend_host}:{self.xend_port}",
            "xend_unix": self.xend_unix_path,
            "privcmd": self.privcmd_path,
        }

    @property
    def stats(self) -> Counter[str]:
        """Return a snapshot of the node's counters: ``xend.<op>``, ``privcmd.<OP>`` ..."""
        out = Counter(self.counters)
        pstats = getattr(self._privcmd, "stats", None)
        if pstats:
            for op, n in pstats.items():
                out[f"privcmd.{getattr(op, 'name', op)}"] += n
        return out

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Build the node's domains and start its three servers."""
        from aiovirt.sim.privcmd import PrivcmdServer
        from aiovirt.sim.store import XenStoreDB
        from aiovirt.sim.xend import XendServer
        from aiovirt.sim.xenstored import XenStored

        self.directory.mkdir(parents=True, exist_ok=True)
        paths = [self.xenstore_path, self.xenstore_ro_path, self.xend_unix_path,
                 self.privcmd_path]
        for path in paths:
            claim_socket_path(path)
        self.db = XenStoreDB()
        self._populate(self.initial_domains)
        self._hook_guest_watches()
        try:
            self._xenstored = XenStored(self.db, self.xenstore_path, self.xenstore_ro_path,
                                        faults=self.faults.xenstore)
            await self._xenstored.start()
            self.faults.xenstore = self._xenstored.faults
            self._privcmd = PrivcmdServer(self, self.privcmd_path)
            await self._privcmd.start()
            self._xend = XendServer(self, self.xend_unix_path, host=self.xend_host,
                                    port=self._xend_port_wanted, error_style=self.error_style)
            await self._xend.start()
            self.xend_port = self._xend.port
        except BaseException:
            await self.close()
            raise
        self._started = True
        log.info("simulated node with %d guests serving in %s", self.initial_domains,
                 self.directory)

    async def close(self) -> None:
        """Stop the servers, cancel pending guest actions and remove the sockets."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.faults.xend.release_stalls()
        for server in (self._xend, self._privcmd, self._xenstored):
            if server is not None:
                try:
                    await server.close()
                except Exception:
                    log.exception("closing %r failed", server)
        self._xend = self._privcmd = self._xenstored = None
        for path in (self.xenstore_path, self.xenstore_ro_path, self.xend_unix_path,
                     self.privcmd_path):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
        self._started = False

    # -- change notification -----------------------------------------------------------------
    def _notify(self) -> None:
        self._rebalance()
        self._changed.set()
        self._changed = asyncio.Event()

    def _rebalance(self) -> None:
        """Share the host's CPUs among the running vCPUs, as Xen's scheduler does when the
        guests want more than there is; called after every change of state."""
        demand = sum(d.load * d.online_vcpus for d in self._domains.values() if d.consuming)
        share = min(1.0, self.nr_cpus / demand) if demand else 1.0
        if abs(share - self._share) < 1e-9:
            return
        now = time.monotonic()
        for dom in self._domains.values():
            dom.settle(now)
            dom.share = share
        self._share = share

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 5.0  # noqa: ASYNC109
    ) -> None:
        """Wait until ``predicate()`` holds (checked after every change); TimeoutError if not."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def _later(self, delay: float, fn: Callable[..., None], *args: Any,
               dom: SimDomain | None = None) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            if dom is not None:
                dom.timers.discard(handle)
            try:
                fn(*args)
            except Exception:
                log.exception("simulated node action %s failed", getattr(fn, "__name__", fn))

        handle = loop.call_later(max(0.0, delay), fire)
        self._timers.add(handle)
        if dom is not None:
            dom.timers.add(handle)

    # -- lookups -----------------------------------------------------------------------------
    @property
    def domains(self) -> list[SimDomain]:
        """Return every domain, in increasing id order."""
        return [self._domains[i] for i in self._ids]

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, ref: int | str) -> SimDomain:
        """Return the domain for ``ref`` (an id, or a name-or-id string); NoSuchDomain if none."""
        dom = self.find(ref)
        if dom is None:
            raise NoSuchDomain(ref)
        return dom

    def find(self, ref: int | str) -> SimDomain | None:
        """Return the domain xend would find for ``ref``: a unique name first, then an id."""
        if isinstance(ref, str):
            dom = self._by_name.get(ref)
            if dom is not None:
                return dom
            try:
                ref = int(ref)
            except ValueError:
                return None
        return self._domains.get(ref)

    def by_uuid(self, value: uuidlib.UUID | str) -> SimDomain | None:
        """Return the live domain with UUID ``value``, if any."""
        u = value if isinstance(value, uuidlib.UUID) else uuidlib.UUID(str(value))
        return next((d for d in self._domains.values() if d.uuid == u), None)

    # -- building the node ---------------------------------------------------------------------
    def _populate(self, count: int) -> None:
        rng = self.rng
        now, wall = time.monotonic(), time.time()
        guests: list[SimDomain] = []
        for i in range(1, count + 1):
            mem = rng.choice((128, 256, 256, 384, 512, 512, 768, 1024)) * 1024
            maxmem = mem if rng.random() < 0.7 else mem * 2
            vcpus = rng.choice((1, 1, 1, 2, 2, 4))
            busy = rng.random() < 0.25
            load = rng.uniform(0.3, 0.9) if busy else rng.uniform(0.002, 0.03)
            uptime = rng.uniform(60.0, 3 * 86400.0)
            name = f"vm{i}"
            dom = SimDomain(
                domid=i, name=name, uuid=_random_uuid(rng), vcpus=vcpus, memory_kib=mem,
                maxmem_kib=maxmem, busy=busy, load=load,
                cpu_ns_base=int(uptime * load * vcpus * 1e9), run_since=now,
                start_time=round(wall - uptime, 2),
                image=["linux", ["kernel", _RNG_KERNEL], ["ramdisk", _RNG_RAMDISK],
                       ["root", "/dev/sda1 ro"]],
                vbds=[Vbd(2049, "sda1", f"file:/var/lib/xen/images/{name}.img")],
                vifs=[Vif(0, _random_mac(rng))],
                store_mfn=0x3FFFE - 2 * i, console_mfn=0x3FFFD - 2 * i,
            )
            guests.append(dom)
        used = sum(d.maxmem_kib for d in guests)
        self._total_kib = (self._dom0_kib + used + 8 * 1024 * 1024) // 1024 * 1024
        dom0 = SimDomain(
            domid=0, name="Domain-0", uuid=DOM0_UUID, vcpus=2, memory_kib=self._dom0_kib,
            maxmem_kib=self._dom0_kib, busy=True, load=0.05, run_since=now,
            cpu_ns_base=int(rng.uniform(100.0, 5000.0) * 1e9),
        )
        self._write_base_tree(dom0)
        self._add(dom0)
        for dom in guests:
            self._add(dom)
            self._publish(dom)
        self._next_domid = count + 1
        self._rebalance()

    def _add(self, dom: SimDomain) -> None:
        self._domains[dom.domid] = dom
        insort(self._ids, dom.domid)
        self._by_name[dom.name] = dom

    def _forget(self, dom: SimDomain) -> None:
        if self._domains.get(dom.domid) is dom:
            del self._domains[dom.domid]
            i = bisect_left(self._ids, dom.domid)
            if i < len(self._ids) and self._ids[i] == dom.domid:
                del self._ids[i]
        if self._by_name.get(dom.name) is dom:
            del self._by_name[dom.name]
        for handle in dom.timers:
            handle.cancel()
            self._timers.discard(handle)
        dom.timers.clear()

    def free_kib(self) -> int:
        """Return the node's memory not held by any domain."""
        return self._total_kib - sum(d.current_kib for d in self._domains.values())

    # -- xenstore layout (xenstore-layout.md §2-5, §9) ------------------------------------------
    def _w(self, path: str, value: str | int) -> None:
        self.db.write(path, str(value))

    def _rm(self, path: str) -> None:
        if self.db.exists(path):
            self.db.rm(path)

    def _write_base_tree(self, dom0: SimDomain) -> None:
        db = self.db
        db.mkdir("/vm")
        db.set_perms("/vm", [Perm(0, PermAccess.NONE)])
        db.mkdir("/local/domain")
        self._write_vm_record(dom0)
        home = dom0.home
        for key, value in (("vm", dom0.vm_path), ("domid", 0), ("name", dom0.name),
                           ("console/limit", 1048576), ("memory/target", dom0.memory_kib)):
            self._w(f"{home}/{key}", value)
        for i in range(dom0.vcpus):
            self._w(f"{home}/cpu/{i}/availability", "online")

    def _write_vm_record(self, dom: SimDomain) -> None:
        vm = dom.vm_path
        self._w(f"{vm}/uuid", str(dom.uuid))
        self.db.set_perms(f"{vm}/uuid", [Perm(dom.domid, PermAccess.READ)])
        for key, value in (("vcpus", dom.vcpus), ("vcpu_avail", dom.vcpu_avail),
                           ("memory", _mib(dom.memory_kib)), ("shadow_memory", 0),
                           ("maxmem", _mib(dom.maxmem_kib))):
            self._w(f"{vm}/{key}", value)
        if dom.start_time is not None:
            self._w(f"{vm}/start_time", format_float(dom.start_time))
        for key, text in (("name", dom.name), ("on_poweroff", dom.on_poweroff),
                          ("on_reboot", dom.on_reboot), ("on_crash", dom.on_crash),
                          ("xend/restart_count", str(dom.restart_count))):
            self._w(f"{vm}/{key}", text)

    def _write_image(self, dom: SimDomain) -> None:
        if dom.image is None:
            return
        vm = dom.vm_path
        img = dom.image
        self._w(f"{vm}/image", dumps(img))
        self._w(f"{vm}/image/ostype", img[0] if isinstance(img[0], str) else "linux")
        self._w(f"{vm}/image/kernel", _value(img, "kernel", "") or "")
        cmdline = ""
        ip, root, args = _value(img, "ip"), _value(img, "root"), _value(img, "args")
        if ip:
            cmdline += f" ip={ip}"
        if root:
            cmdline += f" root={root}"
        if args:
            cmdline += f" {args}"
        self._w(f"{vm}/image/cmdline", cmdline)
        self._w(f"{vm}/image/ramdisk", _value(img, "ramdisk", "") or "")

    def _write_devices(self, dom: SimDomain) -> None:
        domid, home = dom.domid, dom.home
        port = 3
        for vbd in dom.vbds:
            front = f"{home}/device/vbd/{vbd.devid}"
            back = f"/local/domain/{vbd.backend}/backend/vbd/{domid}/{vbd.devid}"
            self.db.mkdir(front)
            self.db.set_perms(front, [Perm(domid, PermAccess.NONE),
                                      Perm(vbd.backend, PermAccess.READ)])
            self.db.mkdir(back)
            self.db.set_perms(back, [Perm(vbd.backend, PermAccess.NONE),
                                     Perm(domid, PermAccess.READ)])
            for key, value in (("backend", back), ("backend-id", vbd.backend), ("state", 4),
                               ("virtual-device", vbd.devid),
                               ("device-type", vbd.device_type),
                               ("ring-ref", 8 + vbd.devid % 64), ("event-channel", port)):
                self._w(f"{front}/{key}", value)
            port += 1
            kind, _, params = vbd.uname.partition(":")
            for key, value in (("domain", dom.name), ("frontend", front), ("frontend-id", domid),
                               ("state", 4), ("online", 1), ("dev", vbd.dev), ("type", kind),
                               ("params", params), ("mode", vbd.mode)):
                self._w(f"{back}/{key}", value)
            if kind == "file":
                self._w(f"{back}/node", "/dev/loop0")
                self._w(f"{back}/physical-device", "7:0")
            for key, value in (("hotplug-status", "connected"), ("sectors", 4194304),
                               ("info", 1 if vbd.device_type == "cdrom" else 0),
                               ("sector-size", 512)):
                self._w(f"{back}/{key}", value)
        for vif in dom.vifs:
            front = f"{home}/device/vif/{vif.devid}"
            back = f"/local/domain/{vif.backend}/backend/vif/{domid}/{vif.devid}"
            self.db.mkdir(front)
            self.db.set_perms(front, [Perm(domid, PermAccess.NONE),
                                      Perm(vif.backend, PermAccess.READ)])
            self.db.mkdir(back)
            self.db.set_perms(back, [Perm(vif.backend, PermAccess.NONE),
                                     Perm(domid, PermAccess.READ)])
            for key, value in (("backend", back), ("backend-id", vif.backend), ("state", 4),
                               ("handle", vif.devid), ("mac", vif.mac),
                               ("tx-ring-ref", 521 + 2 * vif.devid),
                               ("rx-ring-ref", 522 + 2 * vif.devid), ("event-channel", port),
                               ("request-rx-copy", 0), ("feature-rx-notify", 1),
                               ("feature-sg", 1), ("feature-gso-tcpv4", 1)):
                self._w(f"{front}/{key}", value)
            port += 1
            items: list[tuple[str, str | int]] = [
                ("domain", dom.name), ("frontend", front), ("frontend-id", domid),
                ("state", 4), ("online", 1),
                ("script", vif.script if vif.script.startswith("/")
                 else f"/etc/xen/scripts/{vif.script}"),
                ("mac", vif.mac), ("handle", vif.devid)]
            for key in ("bridge", "ip", "vifname", "rate", "type"):
                value = getattr(vif, key)
                if value:
                    items.append((key, value))
            items += [("hotplug-status", "connected"), ("feature-sg", 1),
                      ("feature-gso-tcpv4", 1), ("feature-rx-copy", 1)]
            for key, value in items:
                self._w(f"{back}/{key}", value)
        if dom.vifs:
            self._w(f"{home}/device-misc/vif/nextDeviceID", max(v.devid for v in dom.vifs) + 1)

    def _write_home(self, dom: SimDomain) -> None:
        home = dom.home
        items: list[tuple[str, str | int]] = [
            ("vm", dom.vm_path), ("domid", dom.domid), ("name", dom.name),
            ("console/limit", 1048576), ("console/port", 2),
            ("console/ring-ref", dom.console_mfn or 0),
            ("console/tty", f"/dev/pts/{dom.domid % 4096}"),
            ("memory/target", dom.memory_kib), ("store/port", 1),
            ("store/ring-ref", dom.store_mfn or 0)]
        for key, value in items:
            self._w(f"{home}/{key}", value)
        for i in range(dom.vcpus):
            online = "online" if dom.vcpu_avail >> i & 1 else "offline"
            self._w(f"{home}/cpu/{i}/availability", online)

    def _publish(self, dom: SimDomain, *, restored: bool = False) -> None:
        """Write a new domain's store entries in xend 3.0.3's order (layout §9)."""
        home = dom.home
        self._rm(home)
        self.db.mkdir(home)
        self.db.set_perms(home, [Perm(dom.domid, PermAccess.NONE)])
        self._rm_vm_children(dom)
        self._write_image(dom)
        if not restored:
            self.db.introduce_domain(dom.domid)
        self._write_devices(dom)
        self._write_vm_record(dom)
        self._write_home(dom)
        if restored:
            self.db.introduce_domain(dom.domid)

    def _rm_vm_children(self, dom: SimDomain) -> None:
        # a rewritten /vm/<uuid> (restart, restore) keeps only the xend bookkeeping
        vm = dom.vm_path
        if not self.db.exists(vm):
            return
        for child in self.db.directory(vm):
            if child != "xend":
                self.db.rm(f"{vm}/{child}")

    def _unpublish(self, dom: SimDomain, *, keep_vm: bool) -> None:
        """Remove a domain's store entries as xend and the hotplug cleanup did."""
        for vbd in dom.vbds:
            self._rm(f"{dom.home}/device/vbd/{vbd.devid}")
        for vif in dom.vifs:
            self._rm(f"{dom.home}/device/vif/{vif.devid}")
        backends = {v.backend for v in dom.vbds} | {v.backend for v in dom.vifs}
        for backdom in backends:
            for cls in ("vbd", "vif"):
                self._rm(f"/local/domain/{backdom}/backend/{cls}/{dom.domid}")
        self._rm(dom.home)
        if not keep_vm:
            self._rm(dom.vm_path)

    # -- guests reacting to the store ----------------------------------------------------------
    def _hook_guest_watches(self) -> None:
        """Let guests see writes to their ``control/shutdown`` made by any store client.

        The guest kernels' watches are one in-process store session watching ``/local/domain``
        (registered after the initial population, so start-up writes cost nothing).
        """
        self._guest_session = self.db.connect(self._on_store_event)
        self.db.op_watch(self._guest_session, "/local/domain", "guests")

    def _on_store_event(self, path: str, _token: str) -> None:
        if not path.endswith("/control/shutdown"):
            return
        m = re.fullmatch(r"/local/domain/(\d+)/control/shutdown", path)
        if m is None:
            return
        dom = self._domains.get(int(m.group(1)))
        if dom is not None and dom.domid != 0:
            asyncio.get_running_loop().call_soon(self._guest_notice, dom)

    def _guest_notice(self, dom: SimDomain) -> None:
        """The guest kernel's watch on ``control/shutdown`` fired: ack and act on a request."""
        if self._domains.get(dom.domid) is not dom or not dom.consuming:
            return  # a paused or dead guest cannot answer
        path = f"{dom.home}/control/shutdown"
        try:
            value = self.db.read(path)
        except Exception:
            return
        request = value.decode() if isinstance(value, bytes) else str(value)
        if not request:
            return
        self._w(path, "")
        code = GUEST_SHUTDOWN_CODES.get(request)
        if code is None:
            log.info("guest %s ignores shutdown request %r", dom.name, request)
            return
        self._later(self.shutdown_delay, self._guest_shut_down, dom, int(code), dom=dom)

    def _guest_shut_down(self, dom: SimDomain, code: int) -> None:
        if self._domains.get(dom.domid) is not dom or dom.shutdown_code is not None:
            return
        self._mark_shutdown(dom, code)

    def _mark_shutdown(self, dom: SimDomain, code: int) -> None:
        dom.settle(time.monotonic())
        dom.shutdown_code = code
        self.db.fire_special("@releaseDomain")
        self._notify()
        if code != ShutdownReason.SUSPEND:
            self._later(self.reap_delay, self._reap, dom, dom=dom)

    def _reap(self, dom: SimDomain) -> None:
        """xend saw the domain shut down: apply its ``on_poweroff``/``on_reboot``/``on_crash``."""
        if self._domains.get(dom.domid) is not dom or dom.shutdown_code is None:
            return
        code = dom.shutdown_code
        action = {0: dom.on_poweroff, 1: dom.on_reboot, 3: dom.on_crash}.get(code, "destroy")
        if action == "preserve":
            self._w(f"{dom.home}/xend/shutdown_completed", "True")
            self._notify()
        elif action in ("restart", "rename-restart"):
            self._restart(dom)
        else:
            self._destroy(dom)

    def _restart(self, dom: SimDomain) -> None:
        self._destroy(dom, keep_vm=True)
        new = dataclasses.replace(
            dom, domid=self._alloc_domid(), paused=False, shutdown_code=None, dying=False,
            cpu_ns_base=0, run_since=time.monotonic(), start_time=round(time.time(), 2),
            restart_count=dom.restart_count + 1, timers=set(),
            vbds=[dataclasses.replace(v) for v in dom.vbds],
            vifs=[dataclasses.replace(v) for v in dom.vifs])
        self._add(new)
        self._publish(new)
        self._w(f"{new.vm_path}/xend/previous_restart_time", format_float(time.time()))
        self._notify()

    def _alloc_domid(self) -> int:
        domid = self._next_domid
        self._next_domid += 1
        return domid

    # -- the toolstack's operations (xend ops) -------------------------------------------------
    def _guest(self, ref: int | str, verb: str) -> SimDomain:
        dom = self.get(ref)
        if dom.domid == 0:
            raise SimError(f"Cannot {verb} privileged domain 0")
        return dom

    def pause(self, ref: int | str) -> None:
        """Pause a guest (idempotent); Domain-0 cannot be paused."""
        dom = self._guest(ref, "pause")
        dom.settle(time.monotonic())
        dom.paused = True
        self._notify()

    def unpause(self, ref: int | str) -> None:
        """Unpause a guest (idempotent); a guest asked to shut down while paused now answers."""
        dom = self._guest(ref, "unpause")
        dom.settle(time.monotonic())
        dom.paused = False
        self._notify()
        if dom.domid != 0 and self.db.exists(f"{dom.home}/control/shutdown"):
            self._guest_notice(dom)

    def request_shutdown(self, ref: int | str, reason: str = "poweroff") -> None:
        """Ask a guest to shut down: write ``control/shutdown`` as xend's ``op=shutdown`` did.

        The guest acknowledges by clearing the node and, ``shutdown_delay`` later, shuts down
        with the code for ``reason``; xend then applies ``on_poweroff``/``on_reboot``. A guest
        that cannot answer (paused) is destroyed after ``shutdown_timeout``.
        """
        dom = self.get(ref)
        if reason not in XEND_SHUTDOWN_REASONS:
            raise SimError(f"Invalid reason: {reason}")
        if dom.domid == 0:
            raise SimError("Can't specify Domain-0")
        self._w(f"{dom.home}/control/shutdown", reason)
        if reason != "suspend":
            self._w(f"{dom.home}/xend/shutdown_start_time", format_float(time.time()))
            self._later(self.shutdown_timeout, self._shutdown_timed_out, dom, dom=dom)
        self._notify()

    def reboot(self, ref: int | str) -> None:
        """Ask a guest to reboot (``shutdown`` with reason ``reboot``)."""
        self.request_shutdown(ref, "reboot")

    def _shutdown_timed_out(self, dom: SimDomain) -> None:
        if self._domains.get(dom.domid) is dom:
            log.info("domain %s did not shut down in time: destroying it", dom.name)
            self._destroy(dom)

    def destroy(self, ref: int | str) -> None:
        """Destroy a guest: its store entries go, ``@releaseDomain`` fires; Domain-0 refuses."""
        self._destroy(self._guest(ref, "destroy"))

    def _destroy(self, dom: SimDomain, *, keep_vm: bool = False) -> None:
        if self._domains.get(dom.domid) is not dom:
            return
        dom.settle(time.monotonic())
        self._unpublish(dom, keep_vm=keep_vm)
        if self.dying_delay > 0 and not keep_vm:
            if self._by_name.get(dom.name) is dom:
                del self._by_name[dom.name]
            dom.name = f"Zombie-{dom.name}"
            dom.dying = True
            for handle in dom.timers:
                handle.cancel()
                self._timers.discard(handle)
            dom.timers.clear()
            self._later(self.dying_delay, self._vanish, dom, dom=dom)
            self._notify()
            return
        self._vanish(dom)

    def _vanish(self, dom: SimDomain) -> None:
        self._forget(dom)
        if self.db.is_introduced(dom.domid):
            # our own teardown already removed its nodes (and must keep /vm/<uuid>/uuid)
            self.db.release_domain(dom.domid, remove_owned_nodes=False)
        else:
            self.db.fire_special("@releaseDomain")
        self._notify()

    def crash(self, ref: int | str) -> None:
        """Make a guest crash (shutdown code crash); xend then applies ``on_crash``."""
        dom = self._guest(ref, "crash")
        if dom.shutdown_code is None:
            self._mark_shutdown(dom, ShutdownReason.CRASH)

    def set_busy(self, ref: int | str, busy: bool) -> None:
        """Make a guest's vCPUs run (``r``) or block (``b``); for tests and demos."""
        dom = self.get(ref)
        dom.settle(time.monotonic())
        dom.busy = busy
        self._notify()

    def set_memory_target(self, ref: int | str, kib: int) -> None:
        """Set a domain's balloon target (``mem_target_set``): sxpr, ``/vm``, ``memory/target``."""
        dom = self.get(ref)
        if kib <= 0:
            raise SimError("Invalid memory size")
        grow = min(kib, dom.maxmem_kib) - dom.current_kib
        if grow > 0 and grow > self.free_kib():
            raise SimError(f"I need {grow} KiB, but only {self.free_kib()} KiB are free")
        dom.memory_kib = kib
        self._w(f"{dom.vm_path}/memory", _mib(kib))
        self._w(f"{dom.home}/memory/target", kib)
        self._notify()

    def set_max_memory(self, ref: int | str, kib: int) -> None:
        """Set a domain's hypervisor memory limit; the sxpr's and ``/vm``'s maxmem follow."""
        dom = self.get(ref)
        if kib <= 0:
            raise SimError("Invalid memory size")
        dom.maxmem_kib = kib
        if self.db.exists(f"{dom.vm_path}/maxmem"):
            self._w(f"{dom.vm_path}/maxmem", _mib(kib))
        self._notify()

    def set_vcpus(self, ref: int | str, count: int) -> None:
        """Set how many vCPUs are online (``set_vcpus``): ``vcpu_avail`` and ``cpu/*``."""
        dom = self.get(ref)
        if count <= 0:
            raise SimError(f"Invalid VCPU count: {count}")
        dom.settle(time.monotonic())
        dom.vcpu_avail = (1 << min(count, dom.vcpus)) - 1
        self._w(f"{dom.vm_path}/vcpu_avail", dom.vcpu_avail)
        for i in range(dom.vcpus):
            online = "online" if dom.vcpu_avail >> i & 1 else "offline"
            self._w(f"{dom.home}/cpu/{i}/availability", online)
        self._notify()

    def rename(self, ref: int | str, name: str) -> None:
        """Rename a domain; as in 3.0.3 only ``/vm/<uuid>/name`` changes in the store."""
        dom = self.get(ref)
        self._check_name(name, dom)
        if self._by_name.get(dom.name) is dom:
            del self._by_name[dom.name]
        dom.name = name
        self._by_name[name] = dom
        self._w(f"{dom.vm_path}/name", name)
        self._notify()

    def sysrq(self, ref: int | str, key: int) -> None:
        """Send a magic SysRq key; the guest clears ``control/sysrq`` as it handles it."""
        dom = self.get(ref)
        if dom.domid == 0:
            raise SimError("Can't specify Domain-0")
        path = f"{dom.home}/control/sysrq"
        self._w(path, chr(key))
        if dom.consuming:
            self._w(path, "")

    def _check_name(self, name: str, dom: SimDomain | None = None) -> None:
        if not name:
            raise SimError("missing vm name")
        if not VM_NAME.match(name):
            raise SimError("invalid vm name")
        other = self._by_name.get(name)
        if other is not None and other is not dom:
            raise SimError(f"VM name '{name}' already in use by domain {other.domid}")

    # -- create / save / restore -------------------------------------------------------------
    def create(self, config: str | bytes | SExpr) -> SimDomain:
        """Create a domain from a config S-expression (``op=create``); it is left paused."""
        expr = parse_config(config)
        try:
            dom = self._domain_from_config(expr)
        except SimError as exc:
            raise SimError(f"Error creating domain: {exc}") from exc
        dom.paused = True
        dom.start_time = round(time.time(), 2)
        self._add(dom)
        self._publish(dom)
        self._notify()
        return dom

    def _domain_from_config(self, expr: list[SExpr], *, keep_uuid: bool = True) -> SimDomain:
        rng = self.rng
        name = _value(expr, "name") or ""
        self._check_name(name)
        memory = py_int(_value(expr, "memory", "0"))
        if memory <= 0:
            raise SimError("Invalid memory size")
        maxmem = max(memory, py_int(_value(expr, "maxmem", str(memory)) or memory))
        image = _child(expr, "image")
        img = image[1] if image is not None and len(image) > 1 else None
        bootloader = _value(expr, "bootloader")
        if img is None and not bootloader:
            raise SimError("Missing image in configuration")
        if img is not None and not (isinstance(img, list) and img and img[0] in ("linux", "hvm")):
            head = img[0] if isinstance(img, list) and img else img
            raise SimError(f"unknown image type: {dumps(head) if head is not None else ''}")
        vcpus = py_int(_value(expr, "vcpus", "1") or 1)
        if isinstance(img, list) and _value(img, "vcpus"):
            vcpus = py_int(_value(img, "vcpus"))
        if vcpus <= 0:
            raise SimError(f"Invalid VCPU count: {vcpus}")
        restart: dict[str, str] = {}
        for event, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                               ("on_crash", "restart")):
            mode = _value(expr, event, default) or default
            if mode not in RESTART_MODES:
                raise SimError(f"invalid restart event: {event} = {mode}")
            restart[event] = mode
        uuid_text = _value(expr, "uuid")
        try:
            dom_uuid = uuidlib.UUID(uuid_text) if uuid_text and keep_uuid else _random_uuid(rng)
        except ValueError:
            raise SimError(f"Invalid uuid: {uuid_text}") from None
        vbds: list[Vbd] = []
        vifs: list[Vif] = []
        for item in expr[1:]:
            if not (isinstance(item, list) and item and item[0] == "device"):
                continue
            dev = item[1] if len(item) > 1 else None
            if not (isinstance(dev, list) and dev and dev[0] in DEVICE_CLASSES):
                raise SimError(f"invalid device {dumps(dev) if dev is not None else '()'}")
            if dev[0] in ("vbd", "tap"):
                vbds.append(self._vbd_from(dev))
            elif dev[0] == "vif":
                vifs.append(Vif(
                    len(vifs), _value(dev, "mac") or _random_mac(rng),
                    bridge=_value(dev, "bridge"), script=_value(dev, "script") or "vif-bridge",
                    ip=_value(dev, "ip"), type=_value(dev, "type"),
                    vifname=_value(dev, "vifname"), rate=_value(dev, "rate"),
                    backend=py_int(_value(dev, "backend", "0") or 0)))
        need = memory * 1024
        if need > self.free_kib():
            raise SimError(f"I need {need} KiB, but only {self.free_kib()} KiB are free")
        domid = self._alloc_domid()
        return SimDomain(
            domid=domid, name=name, uuid=dom_uuid, vcpus=vcpus, memory_kib=memory * 1024,
            maxmem_kib=maxmem * 1024,
            vcpu_avail=py_int(_value(expr, "vcpu_avail", "0") or 0) & ((1 << vcpus) - 1),
            cpu_weight=float(_value(expr, "cpu_weight", "1.0") or 1.0),
            image=img if isinstance(img, list) else None, bootloader=bootloader,
            bootloader_args=_value(expr, "bootloader_args"), vbds=vbds, vifs=vifs,
            load=rng.uniform(0.002, 0.03), run_since=time.monotonic(),
            store_mfn=0x3FFFE - 2 * domid, console_mfn=0x3FFFD - 2 * domid,
            on_poweroff=restart["on_poweroff"], on_reboot=restart["on_reboot"],
            on_crash=restart["on_crash"])

    def _vbd_from(self, dev: list[SExpr]) -> Vbd:
        uname = _value(dev, "uname") or ""
        name = _value(dev, "dev") or ""
        device_type = "disk"
        if ":" in name:
            name, _, device_type = name.partition(":")
        mode = _value(dev, "mode", "r") or "r"
        if mode not in ("r", "w", "w!"):
            raise SimError("Invalid mode")
        if not name:
            raise SimError(f"invalid device {dumps(dev)}")
        return Vbd(blkdev_number(name), name, uname, mode, device_type,
                   py_int(_value(dev, "backend", "0") or 0))

    async def save(self, ref: int | str, path: str | os.PathLike[str]) -> None:
        """Save a guest to ``path`` in xend's layout; the guest suspends and goes away.

        File: ``LinuxGuestRecord``, a 4-byte big-endian length, the domain sxpr, then a small
        stand-in for the ``xc_save`` image (the page count as a native unsigned long first).
        """
        dom = self._guest(ref, "save")
        if dom.shutdown_code is not None:
            raise SimError(f"Domain {dom.name} is not running")
        self._w(f"{dom.home}/control/shutdown", "suspend")
        self._w(f"{dom.home}/control/shutdown", "")  # the guest acknowledges
        if self.shutdown_delay > 0:
            await asyncio.sleep(self.shutdown_delay)
        if self._domains.get(dom.domid) is not dom:
            raise SimError(f"Domain {dom.name} went away while being saved")
        self._mark_shutdown(dom, ShutdownReason.SUSPEND)
        text = dumps(dom.sxpr(time.monotonic(), time.time())).encode()
        pages = dom.current_kib // PAGE_KIB
        blob = (SAVE_MAGIC + struct.pack(">I", len(text)) + text + struct.pack("=L", pages)
                + b"\0" * 4096)
        try:
            await asyncio.to_thread(Path(path).write_bytes, blob)
        except OSError as exc:
            dom.settle(time.monotonic())
            dom.shutdown_code = None
            self._notify()
            raise SimError(f"{exc}") from exc
        # 3.0.3 leaves /vm/<uuid> behind after a save
        self._destroy(dom, keep_vm=True)
        self.counters["node.saves"] += 1

    async def restore(self, path: str | os.PathLike[str]) -> SimDomain:
        """Restore a domain saved by :meth:`save`: a new id, the same name and UUID, running."""
        try:
            blob = await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise SimError(f"can't read guest state file {os.fspath(path)}: {exc}") from exc
        magic = blob[:len(SAVE_MAGIC)]
        if magic != SAVE_MAGIC:
            raise SimError(
                f"not a valid guest state file: found {magic.decode('latin-1')!r}")
        if len(blob) < 20:
            raise SimError(f"can't read guest state file {os.fspath(path)}: truncated header")
        (length,) = struct.unpack(">I", blob[16:20])
        text = blob[20:20 + length]
        if len(text) != length:
            raise SimError(f"can't read guest state file {os.fspath(path)}: truncated config")
        expr = parse_config(text)
        dom = self._domain_from_config(expr)
        dom.start_time = None  # 3.0.3 restored domains have no start_time
        dom.restart_count = 0
        self._add(dom)
        self._publish(dom, restored=True)
        self._notify()
        return dom

    # -- the hypervisor's interface (aiovirt.sim.privcmd.HypervisorModel) ----------------------
    def _hv_domain(self, domid: int) -> SimDomain:
        dom = self._domains.get(domid)
        if dom is None:
            raise OSError(errno.ESRCH, f"no domain {domid}")
        return dom

    def info_records(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of domains with id >= ``first_domid``, ascending."""
        now = time.monotonic()
        i = bisect_left(self._ids, first_domid)
        domains = self._domains
        return [domains[d].record(now) for d in self._ids[i:i + max(0, max_count)]]

    def hv_pause(self, domid: int) -> None:
        """Pause ``domid`` as the hypercall does (ESRCH if missing, EPERM for Domain-0)."""
        dom = self._hv_domain(domid)
        if domid == 0:
            raise OSError(errno.EPERM, "cannot pause Domain-0")
        dom.settle(time.monotonic())
        dom.paused = True
        self._notify()

    def hv_unpause(self, domid: int) -> None:
        """Unpause ``domid`` as the hypercall does."""
        self._hv_domain(domid)
        if domid == 0:
            raise OSError(errno.EPERM, "cannot unpause Domain-0")
        self.unpause(domid)

    def hv_destroy(self, domid: int) -> None:
        """Destroy ``domid``; xend notices through ``@releaseDomain`` and cleans the store."""
        dom = self._hv_domain(domid)
        if domid == 0:
            raise OSError(errno.EPERM, "cannot destroy Domain-0")
        self._destroy(dom)

    def hv_set_max_mem(self, domid: int, kib: int) -> None:
        """Set the memory limit of ``domid`` to ``kib`` KiB."""
        self._hv_domain(domid)
        self.set_max_memory(domid, kib)

    def xen_version(self) -> tuple[int, int, str]:
        """Return the simulated Xen's version, ``(3, 0, ".3-0")`` as xend's node info says."""
        return XEN_VERSION

    def physinfo(self) -> PhysInfo:
        """Return the node's physical description (memory in pages)."""
        cores = min(self.nr_cpus, 8)
        return PhysInfo(self.nr_cpus, 1, cores, 1, 2394000, self._total_kib // PAGE_KIB,
                        max(0, self.free_kib()) // PAGE_KIB)

    def node_sxpr(self) -> list[SExpr]:
        """Return xend 3.0.3's ``(node ...)`` S-expression (memory in MiB)."""
        phys = self.physinfo()
        major, minor, extra = XEN_VERSION
        items: Iterable[tuple[str, str]] = (
            ("system", "Linux"), ("host", socket.gethostname() or "xenhost1"),
            ("release", "2.6.16.29-xen"), ("version", "#1 SMP Tue Oct 17 10:22:51 BST 2006"),
            ("machine", "x86_64"), ("nr_cpus", str(phys.nr_cpus)),
            ("nr_nodes", str(phys.nr_nodes)),
            ("sockets_per_node", str(phys.nr_cpus // (phys.nr_nodes * phys.cores_per_socket
                                                     * phys.threads_per_core))),
            ("cores_per_socket", str(phys.cores_per_socket)),
            ("threads_per_core", str(phys.threads_per_core)),
            ("cpu_mhz", str(phys.cpu_khz // 1000)),
            ("hw_caps", "bfebfbff:20100800:00000000:00000140:0000e3bd:00000000:00000001"),
            ("total_memory", str(phys.total_pages * PAGE_KIB // 1024)),
            ("free_memory", str(phys.free_pages * PAGE_KIB // 1024)),
            ("xen_major", str(major)), ("xen_minor", str(minor)), ("xen_extra", extra),
            ("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"),
            ("xen_pagesize", "4096"), ("platform_params", "virt_start=0xffff800000000000"),
            ("xen_changeset", "Sun Oct 15 21:44:34 2006 +0100 11774:6c167ac0db8f"),
            ("cc_compiler", "gcc version 4.1.1 20060525 (Red Hat 4.1.1-1)"),
            ("cc_compile_by", "root"), ("cc_compile_domain", "example.org"),
            ("cc_compile_date", "Tue Oct 17 10:09:58 BST 2006"), ("xend_config_format", "2"),
        )
        out: list[SExpr] = ["node"]
        out += [[k, v] for k, v in items]
        return out

    def vcpu_sxpr(self, ref: int | str) -> list[SExpr]:
        """Return xend's ``vcpuinfo`` answer for a domain."""
        dom = self.get(ref)
        now = time.monotonic()
        per = dom.cpu_time_ns(now) / 1e9 / dom.online_vcpus
        out: list[SExpr] = ["domain", ["domid", str(dom.domid)], ["name", dom.name],
                            ["vcpu_count", str(dom.online_vcpus)]]
        for i in range(dom.vcpus):
            online = dom.vcpu_avail >> i & 1 and dom.shutdown_code is None
            running = bool(online and dom.consuming and (dom.busy or dom.domid == 0))
            out.append(["vcpu", ["number", str(i)], ["online", "1" if online else "0"],
                        ["blocked", "0" if running or not online else "1"],
                        ["running", "1" if running else "0"],
                        ["cpu_time", format_float(per if online else 0.0)],
                        ["cpu", str(i % 4)], ["cpumap", [str(c) for c in range(32)]]])
        return out


def claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new server: remove a stale socket, refuse a live one."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SimDirInUse(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SimDirInUse(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        log.info("removed stale socket %s", path)
        return
    except OSError as exc:
        raise SimDirInUse(f"cannot probe socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise SimDirInUse(
        f"{path} is in use by a running server; stop it or choose another directory")

