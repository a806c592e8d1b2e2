"""Fixtures of the hypervisor tests: a real privcmd endpoint over an in-memory hypervisor model.

:class:`MemoryHypervisor` is a second, small implementation of
:class:`aiovirt.sim.privcmd.HypervisorModel` (the simulated node is the other), so the server and
the ``sim`` driver are exercised over a real unix socket. :class:`GatedDriver` wraps the real
``sim`` driver to hold a batch "in flight" at a point the test chooses, and to count how many
driver calls run at once.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiovirt.backends.hypervisor import HypercallExecutor, Hypervisor
from aiovirt.backends.privcmd_sim import SimPrivcmdDriver
from aiovirt.protocol.privcmd import DomainInfoRecord, PhysInfo
from aiovirt.protocol.states import DOMINF_BLOCKED, DOMINF_PAUSED, DOMINF_RUNNING
from aiovirt.sim.privcmd import PrivcmdServer


class MemoryHypervisor:
    """An in-memory hypervisor: Domain-0 and ``guests`` guests with ids 1..guests."""

    def __init__(self, guests: int = 3) -> None:
        self.domains: dict[int, DomainInfoRecord] = {}
        self.fail_info: int | None = None  # errno for GETDOMAININFOLIST to fail with
        for domid in range(guests + 1):
            self.add(domid)

    def add(self, domid: int, *, pages: int = 65536) -> DomainInfoRecord:
        """Create domain ``domid`` (blocked, one vCPU) and return its record."""
        rec = DomainInfoRecord(
            domid, DOMINF_BLOCKED, pages, pages, 1000 + domid, domid * 1_000_000, 1, 0, 0,
            domid.to_bytes(16, "big"),
        )
        self.domains[domid] = rec
        return rec

    def _get(self, domid: int) -> DomainInfoRecord:
        try:
            return self.domains[domid]
        except KeyError:
            raise OSError(errno.ESRCH, f"no domain {domid}") from None

    def info_records(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of domains with id >= ``first_domid``, in order."""
        if self.fail_info is not None:
            raise OSError(self.fail_info, "injected failure")
        ids = sorted(self.domains)
        start = bisect.bisect_left(ids, first_domid)
        return [self.domains[i] for i in ids[start:start + max_count]]

    def hv_pause(self, domid: int) -> None:
        """Pause ``domid``."""
        rec = self._get(domid)
        self.domains[domid] = rec._replace(flags=(rec.flags | DOMINF_PAUSED) & ~DOMINF_RUNNING)

    def hv_unpause(self, domid: int) -> None:
        """Unpause ``domid``."""
        rec = self._get(domid)
        self.domains[domid] = rec._replace(flags=rec.flags & ~DOMINF_PAUSED)

    def hv_destroy(self, domid: int) -> None:
        """Destroy ``domid`` (Xen refuses for Domain-0)."""
        self._get(domid)
        if domid == 0:
            raise OSError(errno.EPERM, "Domain-0 cannot be destroyed")
        del self.domains[domid]

    def hv_set_max_mem(self, domid: int, kib: int) -> None:
        """Set ``domid``'s memory limit."""
        rec = self._get(domid)
        self.domains[domid] = rec._replace(max_pages=kib // 4)

    def xen_version(self) -> tuple[int, int, str]:
        """Return Xen 3.0.2's version."""
        return 3, 0, ".2"

    def physinfo(self) -> PhysInfo:
        """Return a two-CPU node with 4 GiB."""
        return PhysInfo(2, 1, 2, 1, 2_400_000, 1 << 20, 1 << 18)


class GatedDriver:
    """The real ``sim`` driver with a gate after GETDOMAININFOLIST and a concurrency count.

    While ``hold`` is set, each getinfolist call makes its real round trip, sets ``fetched``
    and waits for ``release``. ``delay`` seconds are spent in every call (to make calls
    overlap); ``running``/``peak`` count calls executing at once.
    """

    name = "gated-sim"

    def __init__(self, inner: SimPrivcmdDriver) -> None:
        self.inner = inner
        self.hold = False
        self.fetched = threading.Event()
        self.release = threading.Event()
        self.entered = threading.Event()  # set when any call starts running in a thread
        self.delay = 0.0
        self.running = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.entered.set()
        if self.delay:
            time.sleep(self.delay)

    def _leave(self) -> None:
        with self._lock:
            self.running -= 1

    def getinfolist(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        self._enter()
        try:
            try:
                result = self.inner.getinfolist(first_domid, max_count)
            finally:
                if self.hold:
                    self.fetched.set()
                    self.release.wait(10)
            return result
        finally:
            self._leave()

    def pause(self, domid: int) -> None:
        self._enter()
        try:
            self.inner.pause(domid)
        finally:
            self._leave()

    def unpause(self, domid: int) -> None:
        self.inner.unpause(domid)

    def destroy(self, domid: int) -> None:
        self.inner.destroy(domid)

    def set_max_mem(self, domid: int, kib: int) -> None:
        self.inner.set_max_mem(domid, kib)

    def version(self) -> tuple[int, int, str]:
        return self.inner.version()

    def physinfo(self) -> PhysInfo:
        return self.inner.physinfo()

    def close(self) -> None:
        self.inner.close()

    async def wait_fetched(self) -> None:
        """Wait (without blocking the loop) until a held getinfolist has made its round trip."""
        assert await asyncio.to_thread(self.fetched.wait, 10), "no batch reached the gate"


@pytest.fixture
def sockdir(short_dir: Path) -> Path:
    """Return the suite's short directory for unix sockets (paths must stay under 108 bytes)."""
    return short_dir


@pytest.fixture
def model() -> MemoryHypervisor:
    """Return a hypervisor with Domain-0 and three guests."""
    return MemoryHypervisor(3)


@pytest.fixture
async def server(model: MemoryHypervisor, sockdir: Path) -> AsyncIterator[PrivcmdServer]:
    """Serve ``model`` on ``sockdir/privcmd``."""
    async with PrivcmdServer(model, sockdir / "privcmd") as srv:
        yield srv


@pytest.fixture
async def hv(server: PrivcmdServer) -> AsyncIterator[Hypervisor]:
    """Open the hypervisor backend on the endpoint through the ``sim:`` spec."""
    async with await Hypervisor.open(f"sim:{server.path}", call_timeout=10) as hv:
        yield hv


@pytest.fixture
async def gated(server: PrivcmdServer) -> AsyncIterator[tuple[Hypervisor, GatedDriver]]:
    """Yield a hypervisor whose driver is the gated wrapper of the real ``sim`` driver."""
    driver = GatedDriver(await asyncio.to_thread(SimPrivcmdDriver.open, server.path, 10))
    hv = Hypervisor(driver, HypercallExecutor(threads=3, timeout=10), "sim-gated")
    try:
        yield hv, driver
    finally:
        driver.release.set()
        await hv.close()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``guests`` marker (how many guests a simulated node starts with)."""
    config.addinivalue_line("markers", "guests(n): start the simulated node with n guests")
