"""The simulated Xen node: its domains, their lifecycle, and the servers that show them.

:class:`SimNode` holds a Domain-0 and N guests and is the one source of truth for them. Every
change goes through a method here, which updates the domain, rewrites the xenstore tree the way
xend 3.0.3 and the guest kernels did, fires ``@introduceDomain`` / ``@releaseDomain`` through
the store, so that the three interfaces the node serves (xenstored, xend, the hypercall
endpoint) always agree.

The node is the toolstack's logic (xend's operations and its reactions to the guests) over
the pieces it is made of: the domain model (:mod:`~aiovirt.sim.domain`), configuration parsing
(:mod:`~aiovirt.sim.config`), the xenstore layout (:mod:`~aiovirt.sim.layout`), the guests'
side of the control protocol (:mod:`~aiovirt.sim.guest`), the save file
(:mod:`~aiovirt.sim.saveimage`), the hypervisor (:mod:`~aiovirt.sim.hypervisor`), xend's
S-expressions (:mod:`~aiovirt.sim.xend_views`) and the start-up population and sockets
(:mod:`~aiovirt.sim.startup`).

Units: memory in KiB, CPU time in nanoseconds, wall times in epoch seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import random
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord, PhysInfo
from aiovirt.protocol.sexpr import SExpr, dumps, format_float
from aiovirt.protocol.states import ShutdownReason
from aiovirt.sim import guest, layout
from aiovirt.sim.config import check_vm_name, domain_from_config, parse_config
from aiovirt.sim.devstats import DEVICE_STATS_LIMIT, XEN_ROOT, SimDeviceStats
from aiovirt.sim.domain import SimDomain, Vbd, Vif, mib
from aiovirt.sim.errors import NoSuchDomain, SimError
from aiovirt.sim.faults import Faults
from aiovirt.sim.hypervisor import XEN_VERSION, Hypervisor, host_cpus
from aiovirt.sim.privcmd import PrivcmdServer
from aiovirt.sim.saveimage import read_save_image, write_save_image
from aiovirt.sim.startup import (
    SimDirInUse,
    claim_socket_path,
    host_memory_kib,
    initial_dom0,
    initial_guests,
    remove_socket,
)
from aiovirt.sim.store import Session, XenStoreDB
from aiovirt.sim.xend import XendServer
from aiovirt.sim.xend_views import domain_sxpr, node_sxpr, vcpu_sxpr
from aiovirt.sim.xenstored import XenStored

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

XEND_SHUTDOWN_REASONS = ("poweroff", "reboot", "halt", "suspend", "crash")
SHUTDOWN_TIMEOUT = 30.0  # xend 3.0.x destroys a domain still alive this long after a request


class SimNode:
    """A simulated Xen node served over xenstored, xend and the hypercall endpoint.

    ``async with SimNode(directory, domains=3, seed=None, xend_port=0, shutdown_delay=0.2) as
    node`` starts the xenstore daemon (``DIR/socket``, ``DIR/socket_ro``), xend (``DIR/xend-socket``
    and TCP 127.0.0.1), and the hypercall endpoint (``DIR/privcmd``). ``shutdown_delay`` is how
    long a guest takes from acknowledging a shutdown request to being shut down; ``reap_delay``
    how long the shut-down domain stays visible before xend applies ``on_poweroff`` etc.;
    ``dying_delay`` how long a destroyed domain lingers as ``Zombie-<name>`` (0: it vanishes).
    ``error_style`` picks xend's error conventions (``"3.0.3"``, ``"3.0.2"``, ``"3.0.4"``,
    ``"3.4"``, see :mod:`aiovirt.sim.xend`); ``xend_serving`` how xend serves its connections
    (``"serial"``: one at a time per listener, as 3.0.0-3.0.3; ``"threaded"``: each on its own,
    as 3.0.4+); None, the default, takes the one of ``error_style``'s version.
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
        xend_serving: str | None = None,
        device_stats: bool | None = None,
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
        self.xend_serving = xend_serving
        # The statistics files cost inodes: served by default up to a size (see devstats).
        self.device_stats = (domains <= DEVICE_STATS_LIMIT if device_stats is None
                             else device_stats)
        self._xend_port_wanted = xend_port
        self.xend_port = 0
        self.rng = random.Random(seed)
        self.counters: Counter[str] = Counter()
        self.db = XenStoreDB()  # replaced by a fresh one at every start
        self._xenstored: XenStored | None = None
        self._privcmd: PrivcmdServer | None = None
        self._xend: XendServer | None = None
        # A host sized for its guests, whose CPUs the running vCPUs share: CPU time never
        # grows faster than the host has CPUs.
        self._hv = Hypervisor(host_cpus(domains))
        self.devstats: SimDeviceStats | None = None  # the device statistics files
        self._by_name: dict[str, SimDomain] = {}
        self._next_domid = 1
        self._timers: set[asyncio.TimerHandle] = set()
        self._held_reaps: list[SimDomain] | None = None  # xend held back (hold_reaps)
        self._guest_session: Session | None = None
        self._changed = asyncio.Event()
        self._started = False

    @property
    def nr_cpus(self) -> int:
        """Return the host's number of CPUs (the running vCPUs share them)."""
        return self._hv.nr_cpus

    @nr_cpus.setter
    def nr_cpus(self, value: int) -> None:
        self._hv.nr_cpus = value

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
                f"&hypervisor=sim:{self.privcmd_path}"
                f"&stats_root={self.stats_root if self.device_stats else 'none'}")

    @property
    def stats_root(self) -> str:
        """Return the root under which the node's statistics files are (``DIR/xen-root``)."""
        return str(self.directory / XEN_ROOT)

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
            **({"stats_root": self.stats_root} if self.device_stats else {}),
        }

    @property
    def stats(self) -> Counter[str]:
        """Return a snapshot of the node's counters: ``xend.<op>``, ``privcmd.<OP>`` ..."""
        out = Counter(self.counters)
        if self._privcmd is not None:
            for op, n in self._privcmd.stats.items():
                out[f"privcmd.{op.name}"] += n
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
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in self._socket_paths():
            claim_socket_path(path)
        # the store asks the hypervisor which domains exist, as C's xc_domain_getinfo() does
        self.db = XenStoreDB(domain_exists=lambda domid: domid in self._hv.domains)
        self._populate(self.initial_domains)
        self._hook_guest_watches()
        try:
            self._xenstored = XenStored(self.db, self.xenstore_path, self.xenstore_ro_path,
                                        faults=self.faults.xenstore)
            await self._xenstored.start()
            self._privcmd = PrivcmdServer(self, self.privcmd_path)
            await self._privcmd.start()
            self._xend = XendServer(self, self.xend_unix_path, host=self.xend_host,
                                    port=self._xend_port_wanted, error_style=self.error_style,
                                    serving=self.xend_serving)
            await self._xend.start()
            self.xend_port = self._xend.port
            if self.device_stats:
                self.devstats = SimDeviceStats(self, self.stats_root)
                await self.devstats.start()
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
        if self.devstats is not None:
            await self.devstats.close()
        for server in (self._xend, self._privcmd, self._xenstored):
            if server is not None:
                try:
                    await server.close()
                except Exception:
                    log.exception("closing %r failed", server)
        self._xend = self._privcmd = self._xenstored = None
        for path in self._socket_paths():
            remove_socket(path)
        self._started = False

    def _socket_paths(self) -> list[str]:
        return [self.xenstore_path, self.xenstore_ro_path, self.xend_unix_path,
                self.privcmd_path]

    # -- change notification -----------------------------------------------------------------
    def _notify(self) -> None:
        self._hv.rebalance()
        self._changed.set()
        self._changed = asyncio.Event()

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
        domains = self._hv.domains
        return [domains[i] for i in self._hv.ids]

    def __len__(self) -> int:
        return len(self._hv.ids)

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
        return self._hv.domains.get(ref)

    def by_uuid(self, value: uuidlib.UUID | str) -> SimDomain | None:
        """Return the live domain with UUID ``value``, if any."""
        u = value if isinstance(value, uuidlib.UUID) else uuidlib.UUID(str(value))
        return next((d for d in self._hv.domains.values() if d.uuid == u), None)

    # -- building the node ---------------------------------------------------------------------
    def _populate(self, count: int) -> None:
        now, wall = time.monotonic(), time.time()
        guests = initial_guests(self.rng, count, now, wall)
        self._hv.total_kib = host_memory_kib(guests)
        dom0 = initial_dom0(self.rng, now)
        layout.write_base_tree(self.db, dom0)
        self._add(dom0)
        for dom in guests:
            self._add(dom)
            layout.publish(self.db, dom)
        self._next_domid = count + 1
        self._hv.rebalance()

    def _add(self, dom: SimDomain) -> None:
        self._hv.add(dom)
        self._by_name[dom.name] = dom

    def _forget(self, dom: SimDomain) -> None:
        self._hv.remove(dom)
        if self._by_name.get(dom.name) is dom:
            del self._by_name[dom.name]
        self._cancel_timers(dom)

    def _cancel_timers(self, dom: SimDomain) -> None:
        for handle in dom.timers:
            handle.cancel()
            self._timers.discard(handle)
        dom.timers.clear()

    def free_kib(self) -> int:
        """Return the node's memory not held by any domain."""
        return self._hv.free_kib()

    def _w(self, path: str, value: str | int) -> None:
        layout.put(self.db, path, value)

    # -- guests reacting to the store ----------------------------------------------------------
    def _hook_guest_watches(self) -> None:
        """Let guests see writes to their ``control/shutdown`` made by any store client.

        The guest kernels' watches are one in-process store session watching ``/local/domain``
        (registered after the initial population, so start-up writes cost nothing).
        """
        self._guest_session = self.db.connect(self._on_store_event)
        self.db.op_watch(self._guest_session, guest.GUEST_WATCH, "guests")

    def _on_store_event(self, path: str, _token: str) -> None:
        domid = guest.shutdown_request_domid(path)
        if domid is None:
            return
        dom = self._hv.domains.get(domid)
        if dom is not None and dom.domid != 0:
            asyncio.get_running_loop().call_soon(self._guest_notice, dom)

    def _guest_notice(self, dom: SimDomain) -> None:
        """The guest kernel's watch on ``control/shutdown`` fired: ack and act on a request."""
        if not self._hv.holds(dom) or not dom.consuming:
            return  # a paused or dead guest cannot answer
        code = guest.take_shutdown_request(self.db, dom)
        if code is not None:
            self._later(self.shutdown_delay, self._guest_shut_down, dom, int(code), dom=dom)

    def _guest_shut_down(self, dom: SimDomain, code: int) -> None:
        if not self._hv.holds(dom) or dom.shutdown_code is not None:
            return
        self._mark_shutdown(dom, code)

    def _mark_shutdown(self, dom: SimDomain, code: int) -> None:
        dom.settle(time.monotonic())
        dom.shutdown_code = code
        self.db.fire_special("@releaseDomain")
        self._notify()
        if code != ShutdownReason.SUSPEND:
            if self._held_reaps is not None:
                self._held_reaps.append(dom)
            else:
                self._later(self.reap_delay, self._reap, dom, dom=dom)

    def hold_reaps(self) -> None:
        """Hold xend back: a domain that shuts down stays shut down until :meth:`release_reaps`.

        xend 3.0.3 reaps a shut-down domain as soon as its own ``@releaseDomain`` watch fires,
        the same firing a client's rescan answers, so whether the client sees the shutdown code
        first is a race on a real node too. Holding the reap lets a test decide that race.
        """
        if self._held_reaps is None:
            self._held_reaps = []

    def release_reaps(self) -> None:
        """Let xend react again: held shut-down domains are reaped now, later ones as usual."""
        held, self._held_reaps = self._held_reaps or [], None
        for dom in held:
            self._reap(dom)

    def _reap(self, dom: SimDomain) -> None:
        """xend saw the domain shut down: apply its ``on_poweroff``/``on_reboot``/``on_crash``."""
        if not self._hv.holds(dom) or dom.shutdown_code is None:
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
            restart_count=dom.restart_count + 1, timers=set(), hv_max_kib=dom.maxmem_kib,
            vbds=[dataclasses.replace(v) for v in dom.vbds],
            vifs=[dataclasses.replace(v) for v in dom.vifs])
        self._add(new)
        layout.publish(self.db, new)
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
        if self._hv.holds(dom):
            log.info("domain %s did not shut down in time: destroying it", dom.name)
            self._destroy(dom)

    def destroy(self, ref: int | str) -> None:
        """Destroy a guest: its store entries go, ``@releaseDomain`` fires; Domain-0 refuses."""
        self._destroy(self._guest(ref, "destroy"))

    def _destroy(self, dom: SimDomain, *, keep_vm: bool = False) -> None:
        if not self._hv.holds(dom):
            return
        dom.settle(time.monotonic())
        layout.unpublish(self.db, dom, keep_vm=keep_vm)
        if self.dying_delay > 0 and not keep_vm:
            if self._by_name.get(dom.name) is dom:
                del self._by_name[dom.name]
            dom.name = f"Zombie-{dom.name}"
            dom.dying = True
            self._cancel_timers(dom)
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
            self.db.forget_domain(dom.domid)
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
        grow = min(kib, dom.hv_max_kib) - dom.current_kib
        if grow > 0 and grow > self.free_kib():
            raise SimError(f"I need {grow} KiB, but only {self.free_kib()} KiB are free")
        dom.memory_kib = kib
        self._w(f"{dom.vm_path}/memory", mib(kib))
        self._w(f"{dom.home}/memory/target", kib)
        self._notify()

    def set_max_memory(self, ref: int | str, kib: int) -> None:
        """Set a domain's hypervisor memory limit (``XEN_DOMCTL_max_mem``); EINVAL for 0.

        Only the hypervisor's value changes: xend's configured maxmem (its sxpr,
        ``/vm/<uuid>/maxmem``) stays. A limit below what the domain holds is taken, as Xen 4.1+
        takes it, and the domain gives the excess back at once (see docs/simulator.md).
        """
        dom = self.get(ref)
        if kib <= 0:
            raise OSError(errno.EINVAL, f"a limit of {kib} KiB")
        dom.hv_max_kib = kib
        self._notify()

    def set_configured_max_memory(self, ref: int | str, kib: int) -> None:
        """Set the maximum xend keeps in a domain's configuration (xend 3.0.4+'s maxmem_set)."""
        dom = self.get(ref)
        dom.maxmem_kib = kib
        self._notify()

    def set_vcpus(self, ref: int | str, count: int) -> None:
        """Set how many vCPUs are online (``set_vcpus``): ``vcpu_avail`` and ``cpu/*``."""
        dom = self.get(ref)
        if count <= 0:
            raise SimError(f"Invalid VCPU count: {count}")
        dom.settle(time.monotonic())
        dom.vcpu_avail = (1 << min(count, dom.vcpus)) - 1
        self._w(f"{dom.vm_path}/vcpu_avail", dom.vcpu_avail)
        layout.write_vcpu_availability(self.db, dom)
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
        self._w(f"{dom.home}/control/sysrq", chr(key))
        guest.handle_sysrq(self.db, dom)

    def _check_name(self, name: str, dom: SimDomain | None = None) -> None:
        check_vm_name(name)
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
        layout.publish(self.db, dom)
        self._notify()
        return dom

    def _domain_from_config(self, expr: list[SExpr]) -> SimDomain:
        return domain_from_config(expr, self.rng, check_name=self._check_name,
                                  allocate=self._allocate)

    def _allocate(self, need_kib: int) -> int:
        """Refuse a new domain of ``need_kib`` the node cannot hold; else return its id."""
        if need_kib > self.free_kib():
            raise SimError(f"I need {need_kib} KiB, but only {self.free_kib()} KiB are free")
        return self._alloc_domid()

    async def save(self, ref: int | str, path: str | os.PathLike[str]) -> None:
        """Save a guest to ``path`` in xend's layout; the guest suspends and goes away.

        The file is :mod:`aiovirt.sim.saveimage`'s: xend's guest record, then a stand-in for
        the ``xc_save`` image.
        """
        dom = self._guest(ref, "save")
        if dom.shutdown_code is not None:
            raise SimError(f"Domain {dom.name} is not running")
        self._w(f"{dom.home}/control/shutdown", "suspend")
        guest.acknowledge_request(self.db, dom)
        if self.shutdown_delay > 0:
            await asyncio.sleep(self.shutdown_delay)
        if not self._hv.holds(dom):
            raise SimError(f"Domain {dom.name} went away while being saved")
        self._mark_shutdown(dom, ShutdownReason.SUSPEND)
        text = dumps(domain_sxpr(dom, time.monotonic(), time.time())).encode()
        try:
            await write_save_image(path, text, dom.current_kib // PAGE_KIB)
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
        expr = parse_config(await read_save_image(path))
        dom = self._domain_from_config(expr)
        dom.start_time = None  # 3.0.3 restored domains have no start_time
        dom.restart_count = 0
        self._add(dom)
        layout.publish(self.db, dom, restored=True)
        self._notify()
        return dom

    # -- the hypervisor's interface (aiovirt.sim.privcmd.HypervisorModel) ----------------------
    def info_records(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of domains with id >= ``first_domid``, ascending."""
        return self._hv.records(first_domid, max_count)

    def hv_pause(self, domid: int) -> None:
        """Pause ``domid`` as the hypercall does (ESRCH if missing, EINVAL for Domain-0)."""
        dom = self._hv.target(domid, "pause")
        dom.settle(time.monotonic())
        dom.paused = True
        self._notify()

    def hv_unpause(self, domid: int) -> None:
        """Unpause ``domid`` as the hypercall does."""
        self._hv.target(domid, "unpause")
        self.unpause(domid)

    def hv_destroy(self, domid: int) -> None:
        """Destroy ``domid``; xend notices through ``@releaseDomain`` and cleans the store."""
        self._destroy(self._hv.target(domid, "destroy"))

    def hv_set_max_mem(self, domid: int, kib: int) -> None:
        """Set the memory limit of ``domid`` to ``kib`` KiB."""
        self._hv.target(domid)
        self.set_max_memory(domid, kib)

    def xen_version(self) -> tuple[int, int, str]:
        """Return the simulated Xen's version, ``(3, 0, ".3-0")`` as xend's node info says."""
        return XEN_VERSION

    def physinfo(self) -> PhysInfo:
        """Return the node's physical description (memory in pages)."""
        return self._hv.physinfo()

    # -- xend's views -------------------------------------------------------------------------
    def node_sxpr(self) -> list[SExpr]:
        """Return xend 3.0.3's ``(node ...)`` S-expression (memory in MiB)."""
        return node_sxpr(self.physinfo(), XEN_VERSION)

    def vcpu_sxpr(self, ref: int | str) -> list[SExpr]:
        """Return xend's ``vcpuinfo`` answer for a domain."""
        return vcpu_sxpr(self.get(ref), time.monotonic())
