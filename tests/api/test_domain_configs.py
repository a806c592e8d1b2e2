"""``conn.domain_configs()``: every domain's description from one xend list, parsed."""

from __future__ import annotations

import pytest

import aiovirt
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.domxml import xml_to_config
from aiovirt.sim.node import SimNode
from tests.api.conftest import uri_for


async def test_each_description_is_what_its_xml_says_from_one_list(node: SimNode) -> None:
    async with aiovirt.open(uri_for(node)) as conn:
        doms = await conn.list_domains()
        before = node.stats
        pairs = await conn.domain_configs(doms)
        after = node.stats
        # one request to xend, its detailed list, and nothing else
        assert {k: after[k] - before.get(k, 0) for k in after
                if after[k] != before.get(k, 0)} == {"xend.list": 1, "xend.requests": 1}
        assert [d for d, _ in pairs] == doms
        for dom, cfg in pairs:
            xml = xml_to_config(await dom.xml_desc())
            assert (cfg.name, cfg.id, cfg.uuid, cfg.memory, cfg.disks, cfg.interfaces) == (
                xml.name, xml.id, xml.uuid, xml.memory, xml.disks, xml.interfaces), dom.name
        guest = next(cfg for dom, cfg in pairs if dom.id)
        assert guest.disks and guest.disks[0].source and guest.disks[0].target == "sda1"
        assert guest.interfaces and guest.interfaces[0].bridge


async def test_a_domain_gone_since_its_lookup_is_left_out(node: SimNode) -> None:
    async with aiovirt.open(uri_for(node)) as conn:
        doms = await conn.list_domains()
        node.destroy("vm2")
        pairs = await conn.domain_configs(doms)
        assert {d.name for d, _ in pairs} == {d.name for d in doms} - {"vm2"}
        assert {d.name for d, _ in await conn.domain_configs()} == {d.name for d in doms} - {
            "vm2"}


async def test_without_xend_there_is_no_description(node: SimNode) -> None:
    async with aiovirt.open(uri_for(node, xend="none")) as conn:
        with pytest.raises(VirtError) as info:
            await conn.domain_configs()
    assert info.value.code == ErrorNumber.NO_CONNECT
    assert "descriptions" in str(info.value)
