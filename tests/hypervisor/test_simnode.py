"""The hypervisor backend against the simulated node (SimNode serves ``DIR/privcmd``)."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiovirt.backends.hypervisor import Hypervisor
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.states import DomainState, state_from_flags
from aiovirt.sim.node import SimNode


@pytest.fixture
async def node(sockdir: Path, request: pytest.FixtureRequest) -> AsyncIterator[SimNode]:
    """Start a simulated node (12 guests, or as many as ``@pytest.mark.guests(n)`` asks)."""
    marker = request.node.get_closest_marker("guests")
    async with SimNode(sockdir, domains=marker.args[0] if marker else 12, seed=7) as node:
        yield node


@pytest.fixture
async def node_hv(node: SimNode) -> AsyncIterator[Hypervisor]:
    """Open the hypervisor backend on the node's endpoint, the way its URI names it."""
    async with await Hypervisor.open(f"sim:{node.endpoints['privcmd']}") as hv:
        yield hv


@pytest.mark.guests(1000)
async def test_thousand_concurrent_infos_use_a_few_batch_calls(
    node: SimNode, node_hv: Hypervisor
) -> None:
    before = node.stats["privcmd.GETDOMAININFOLIST"]
    ids = [rec.domid for rec in node.info_records(0, 2000)]
    assert len(ids) == 1001
    results = await asyncio.gather(*(node_hv.domain_info(i) for i in ids))
    assert [r.domid if r else None for r in results] == ids
    assert node.stats["privcmd.GETDOMAININFOLIST"] - before <= 3
    expected = {rec.domid: rec for rec in node.info_records(0, 2000)}
    for rec in results:
        assert rec is not None
        assert (rec.handle, rec.max_pages) == (expected[rec.domid].handle,
                                                expected[rec.domid].max_pages)


async def test_change_made_before_the_request_shows_in_its_answer(
    node: SimNode, node_hv: Hypervisor
) -> None:
    domid = node.info_records(1, 1)[0].domid
    node.hv_pause(domid)
    paused = await node_hv.domain_info(domid)
    assert paused is not None and state_from_flags(paused.flags) == DomainState.PAUSED
    await node_hv.unpause(domid)
    results = await asyncio.gather(*(node_hv.domain_info(i) for i in (0, domid)))
    assert results[1] is not None
    assert state_from_flags(results[1].flags) != DomainState.PAUSED


async def test_destroyed_domain_is_gone_and_dom0_is_refused(
    node: SimNode, node_hv: Hypervisor
) -> None:
    domid = node.info_records(10, 1)[0].domid
    await node_hv.destroy(domid)
    record = await node_hv.domain_info(domid)
    assert record is None or record.domid == domid  # a dying domain may linger, never another
    if record is None:
        with pytest.raises(VirtError) as info:
            await node_hv.pause(domid)
        assert info.value.code == ErrorNumber.XEN_CALL and info.value.int1 == errno.ESRCH
    with pytest.raises(VirtError) as info:
        await node_hv.destroy(0)
    assert info.value.code == ErrorNumber.XEN_CALL and info.value.int1 == errno.EINVAL
    assert "DESTROYDOMAIN for domain 0" in str(info.value)


async def test_version_and_physinfo(node: SimNode, node_hv: Hypervisor) -> None:
    major, minor, _extra = node.xen_version()
    assert await node_hv.version() == major * 1_000_000 + minor * 1_000
    assert await node_hv.physinfo() == node.physinfo()
