"""Debian's ``xentop`` reads the simulated node's block statistics files as aiovirt does."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import aiovirt
from tests.xentools.conftest import XENTOP, XenNode

pytestmark = pytest.mark.interop


async def test_xentop_shows_the_block_requests_aiovirt_reports(
        start_node: Callable[..., XenNode]) -> None:
    node = start_node(3, "--stats-interval", "0")  # the files hold still: exact comparison
    _, out, _ = await node.run(XENTOP, "-b", "-i", "1")
    lines = [line.split() for line in out.splitlines() if line.strip()]
    head = lines[0]
    rows = {r[0]: dict(zip(head, r, strict=False)) for r in lines[1:]}
    async with aiovirt.open(node.uri()) as conn:
        for dom in await conn.list_domains():
            if dom.id == 0:
                continue
            stats = await dom.block_stats("sda1")
            row = rows[dom.name]
            assert int(row["VBDS"]) == 1
            assert int(row["VBD_RD"]) == stats.rd_req and int(row["VBD_WR"]) == stats.wr_req
            assert int(row["VBD_RSECT"]) * 512 == stats.rd_bytes
            assert int(row["VBD_WSECT"]) * 512 == stats.wr_bytes
            assert int(row["VBD_OO"]) == stats.errs
