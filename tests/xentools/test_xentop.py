"""Debian's ``xentop`` against a simulated node lists what aiovirt reports."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import aiovirt
from tests.xentools.conftest import XENTOP, XenNode
from tests.xentools.tools import aiovirt_view, parse_xentop

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("guests", [3, 1000])
async def test_xentop_lists_every_domain_as_aiovirt_reports(
        start_node: Callable[..., XenNode], guests: int) -> None:
    node = start_node(guests)
    async with aiovirt.open(node.uri()) as conn:
        before, _ = await aiovirt_view(conn)
        _, out, _ = await node.run(XENTOP, "-b", "-i", "1")
        after, _ = await aiovirt_view(conn)
    rows = parse_xentop(out)
    by_name = {seen.name: seen for seen in before.values()}
    later = {seen.name: seen for seen in after.values()}
    assert sorted(r.name for r in rows) == sorted(by_name)
    for row in rows:
        seen = by_name[row.name]
        assert row.mem_kib == seen.info.memory
        assert row.maxmem_kib == seen.info.max_mem
        assert row.vcpus == seen.info.nr_virt_cpu
        # Whole seconds, read between aiovirt's two readings.
        assert seen.info.cpu_time // 10**9 <= row.cpu_s <= later[row.name].info.cpu_time // 10**9
