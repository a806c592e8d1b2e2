"""aiovirt's ``xenctrl`` driver through Debian's real libxenctrl, against an in-process node.

Runs only in a process started with the Xen ABI library preloaded (see tests/support/xenabi.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiovirt
from aiovirt.backends.hypervisor import Hypervisor
from aiovirt.backends.xenctrl import XenctrlDriver
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.privcmd import PAGE_KIB
from aiovirt.sim.node import SimNode

pytestmark = pytest.mark.interop


@pytest.fixture
async def node(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SimNode]:
    """A node of 300 guests (more than one libxenctrl request of the first listing)."""
    async with SimNode(short_dir, domains=300, seed=5, shutdown_delay=0.05) as sim:
        monkeypatch.setenv("AIOVIRT_SIM_PRIVCMD", sim.privcmd_path)
        yield sim


@pytest.fixture
def driver(node: SimNode) -> Iterator[XenctrlDriver]:
    drv = XenctrlDriver.open()
    try:
        yield drv
    finally:
        drv.close()


class _Counting:
    """libxenctrl with the sizes of its xc_domain_getinfolist requests recorded."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self.requests: list[int] = []

    def xc_domain_getinfolist(self, xch: int, first: int, count: int, buf: Any) -> int:
        self.requests.append(count)
        result: int = self._lib.xc_domain_getinfolist(xch, first, count, buf)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)


def _identity(node: SimNode) -> list[tuple[int, int, int, bytes]]:
    return [(r.domid, r.tot_pages, r.max_pages, r.handle) for r in node.info_records(0, 10_000)]


async def test_listing_pages_and_is_sized_from_the_last_count(node: SimNode,
                                                              driver: XenctrlDriver) -> None:
    counting = _Counting(driver._lib)
    driver._lib = counting  # type: ignore[assignment]
    first = await asyncio.to_thread(driver.getinfolist, 0, 8192)
    assert [(r.domid, r.tot_pages, r.max_pages, r.handle) for r in first] == _identity(node)
    assert len(counting.requests) > 1 and max(counting.requests) < 8192
    counting.requests.clear()
    again = await asyncio.to_thread(driver.getinfolist, 0, 8192)
    assert len(again) == 301
    assert counting.requests == [302]  # one request, one record more than last time
    # A page smaller than the node, and the next page from the last id + 1.
    page = await asyncio.to_thread(driver.getinfolist, 0, 100)
    rest = await asyncio.to_thread(driver.getinfolist, page[-1].domid + 1, 8192)
    assert [r.domid for r in page + rest] == [r[0] for r in _identity(node)]
    # The node grows past the last count: the listing grows its request and sees them all.
    for i in range(5):
        node.create(f"(vm (name extra{i}) (memory 64) (image (linux (kernel /boot/k))))")
    grown = await asyncio.to_thread(driver.getinfolist, 0, 8192)
    assert len(grown) == 306 and counting.requests[-2:] == [302, 604]


async def test_every_call_of_the_driver_reaches_the_node(node: SimNode,
                                                         driver: XenctrlDriver) -> None:
    guest = node.domains[1]
    await asyncio.to_thread(driver.pause, guest.domid)
    assert node.get(guest.domid).paused
    await asyncio.to_thread(driver.unpause, guest.domid)
    assert not node.get(guest.domid).paused
    await asyncio.to_thread(driver.set_max_mem, guest.domid, 100_000)
    assert node.get(guest.domid).hv_max_kib == 100_000  # xend's configured maxmem stays
    [rec] = await asyncio.to_thread(driver.getinfolist, guest.domid, 1)
    assert rec.max_pages == 100_000 // PAGE_KIB
    await asyncio.to_thread(driver.destroy, guest.domid)
    assert node.find(guest.domid) is None
    assert await asyncio.to_thread(driver.version) == node.xen_version()
    phys, want = await asyncio.to_thread(driver.physinfo), node.physinfo()
    assert (phys.nr_cpus, phys.nr_nodes, phys.cores_per_socket, phys.threads_per_core,
            phys.cpu_khz, phys.total_pages) == (want.nr_cpus, want.nr_nodes,
                                                want.cores_per_socket, want.threads_per_core,
                                                want.cpu_khz, want.total_pages)


async def test_refusals_carry_xens_errno(node: SimNode, driver: XenctrlDriver) -> None:
    with pytest.raises(OSError) as missing:
        await asyncio.to_thread(driver.pause, 4000)
    assert missing.value.errno == errno.ESRCH
    with pytest.raises(OSError) as dom0:
        await asyncio.to_thread(driver.destroy, 0)
    assert dom0.value.errno == errno.EINVAL  # as Xen refuses Domain-0 acting on itself
    assert node.find(0) is not None


async def test_the_api_through_xenctrl_refuses_missing_domains_and_domain0(node: SimNode) -> None:
    uri = (f"xen:///?xend=none&xenstore={node.xenstore_path}&hypervisor=xenctrl")
    async with aiovirt.open(uri) as conn:
        assert "hypervisor" in conn.backends
        with pytest.raises(VirtError) as missing:
            await conn.lookup_by_id(4000)
        assert missing.value.code == ErrorNumber.NO_DOMAIN
        dom0 = await conn.lookup_by_id(0)
        with pytest.raises(VirtError) as refused:
            await dom0.destroy()
        assert refused.value.code == ErrorNumber.OPERATION_INVALID
        assert await conn.num_of_domains() == len(node.domains)


async def test_a_wrong_interface_version_keeps_libxenctrls_explanation(
        node: SimNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOVIRT_SIM_XEN_INTERFACE", "0x14")  # a Xen 4.16 hypervisor
    hv = await Hypervisor.open("xenctrl")
    try:
        with pytest.raises(VirtError) as listing:
            await hv.list_domains()
        with pytest.raises(VirtError) as pausing:
            await hv.pause(1)
    finally:
        await hv.close()
    for err in (listing.value, pausing.value):
        assert err.int1 == errno.EACCES
        assert "Permission denied" in str(err)
        assert "need to rebuild the user-space tool set?" in str(err)
