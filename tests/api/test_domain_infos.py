"""``conn.domain_infos()``: every domain's info in one refresh, through every route."""

from __future__ import annotations

import pytest

import aiovirt
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.sim.node import SimNode
from tests.api.conftest import uri_for


def _without_time(info: aiovirt.DomainInfo) -> tuple[object, ...]:
    return (info.state, info.max_mem, info.memory, info.nr_virt_cpu)


async def test_domain_infos_agree_with_each_info(conn: aiovirt.Connection,
                                                 node: SimNode) -> None:
    pairs = await conn.domain_infos()
    assert sorted(d.name for d, _ in pairs) == sorted(d.name for d in node.domains)
    for dom, info in pairs:
        alone = await dom.info()
        assert _without_time(info) == _without_time(alone), dom.name
        assert info.cpu_time <= alone.cpu_time  # time only moves on between the two calls
    # the same answers for an explicit list of domains
    doms = [d for d, _ in pairs]
    again = await conn.domain_infos(doms)
    assert [d for d, _ in again] == doms


async def test_a_domain_gone_since_its_lookup_is_left_out(conn: aiovirt.Connection,
                                                          node: SimNode) -> None:
    doms = await conn.list_domains()
    vm2 = next(d for d in doms if d.name == "vm2")
    node.destroy("vm2")
    pairs = await conn.domain_infos(doms)
    assert "vm2" not in {d.name for d, _ in pairs}
    assert len(pairs) == len(doms) - 1
    with pytest.raises(VirtError) as info:
        await vm2.info()
    assert info.value.code == ErrorNumber.NO_DOMAIN


async def test_a_refresh_costs_one_hypercall_and_new_domains_appear(node: SimNode) -> None:
    async with aiovirt.open(uri_for(node)) as conn:
        await conn.domain_infos()  # learns the names
        before = node.stats
        for _ in range(3):
            pairs = await conn.domain_infos()
            assert len(pairs) == len(node.domains)
        after = node.stats
        assert after["privcmd.GETDOMAININFOLIST"] - before["privcmd.GETDOMAININFOLIST"] == 3
        assert after["xend.list"] == before["xend.list"]
        # a domain created meanwhile appears, with its name
        node.create("(vm (name fresh) (memory 64) (image (linux (kernel /boot/k))))")
        assert "fresh" in {d.name for d, _ in await conn.domain_infos()}


async def test_without_a_hypervisor_one_xend_list_serves_the_refresh(node: SimNode) -> None:
    async with aiovirt.open(uri_for(node, hypervisor="none")) as conn:
        before = node.stats
        pairs = await conn.domain_infos()
        after = node.stats
        assert len(pairs) == len(node.domains)
        assert after["xend.list"] - before["xend.list"] == 1
        assert after["xend.domain"] == before["xend.domain"]


async def test_a_closed_connection_refuses(node: SimNode) -> None:
    conn = await aiovirt.open(uri_for(node))
    await conn.close()
    with pytest.raises(VirtError) as info:
        await conn.domain_infos()
    assert info.value.code == ErrorNumber.INVALID_CONN
    assert conn.last_error is info.value
