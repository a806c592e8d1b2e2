"""Block and interface statistics read from the simulated dom0's files through the API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import aiovirt
from aiovirt import BlockStats, InterfaceStats
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.devstats import parse_proc_net_dev
from aiovirt.sim.node import SimNode


def stat_file(node: SimNode, domid: int, devnum: int, name: str) -> int:
    """Return one counter as the file holds it (read here, not through aiovirt)."""
    path = node.devstats.devices_dir / f"vbd-{domid}-{devnum}" / "statistics" / name
    return int(path.read_text())


async def grown(node: SimNode, read: object, before: object) -> object:
    """Rewrite the files until every counter of ``read()`` has grown past ``before``'s first
    two (requests and bytes: the slowest may lag the others); return the new value."""
    async with asyncio.timeout(10):
        while True:
            await node.devstats.refresh()
            now = await read()  # type: ignore[operator]
            if now[0] > before[0] and now[1] > before[1]:  # type: ignore[index]
                return now
            await asyncio.sleep(0.05)  # the guests' clocks must move on


async def test_block_stats_are_the_backend_files_in_bytes(node: SimNode,
                                                          conn: aiovirt.Connection) -> None:
    dom = await conn.lookup_by_name("vm1")
    stats = await dom.block_stats("sda1")
    assert isinstance(stats, BlockStats)
    assert stats == BlockStats(
        stat_file(node, dom.id, 2049, "rd_req"), stat_file(node, dom.id, 2049, "rd_sect") * 512,
        stat_file(node, dom.id, 2049, "wr_req"), stat_file(node, dom.id, 2049, "wr_sect") * 512,
        stat_file(node, dom.id, 2049, "oo_req"))
    assert stats.rd_req > 0 and stats.wr_bytes > 0


async def test_interface_stats_are_the_vif_line_seen_from_the_guest(
        node: SimNode, conn: aiovirt.Connection) -> None:
    dom = await conn.lookup_by_name("vm2")
    line = parse_proc_net_dev(node.devstats.proc_net_dev.read_text())[f"vif{dom.id}.0"]
    stats = await dom.interface_stats(f"vif{dom.id}.0")
    assert isinstance(stats, InterfaceStats)
    # the guest received what its vif transmitted, and sent what the vif received
    assert (stats.rx_bytes, stats.rx_packets, stats.rx_drop) == (
        line.tx_bytes, line.tx_packets, line.tx_drop)
    assert (stats.tx_bytes, stats.tx_packets) == (line.rx_bytes, line.rx_packets)
    assert stats.rx_bytes > 0 and stats.tx_packets > 0


async def test_the_interface_name_is_the_one_xml_desc_shows(conn: aiovirt.Connection) -> None:
    dom = await conn.lookup_by_name("vm3")
    xml = await dom.xml_desc()
    assert f"<target dev='vif{dom.id}.0'/>" in xml
    assert (await dom.interface_stats(f"vif{dom.id}.0")).tx_packets > 0


async def test_counters_grow_while_the_guest_runs(node: SimNode,
                                                  conn: aiovirt.Connection) -> None:
    dom = await conn.lookup_by_name("vm1")
    before_blk = await dom.block_stats("sda1")
    after_blk = await grown(node, lambda: dom.block_stats("sda1"), before_blk)
    assert isinstance(after_blk, BlockStats)
    assert after_blk.rd_req > before_blk.rd_req and after_blk.rd_bytes > before_blk.rd_bytes
    assert all(a >= b for a, b in zip(after_blk, before_blk, strict=True))
    vif = f"vif{dom.id}.0"
    before_if = await dom.interface_stats(vif)
    after_if = await grown(node, lambda: dom.interface_stats(vif), before_if)
    assert isinstance(after_if, InterfaceStats)
    assert all(a >= b for a, b in zip(after_if, before_if, strict=True))


async def test_a_paused_guests_counters_stand_still(node: SimNode,
                                                    conn: aiovirt.Connection) -> None:
    paused = await conn.lookup_by_name("vm1")
    running = await conn.lookup_by_name("vm2")
    await paused.suspend()
    await node.devstats.refresh()
    frozen = (await paused.block_stats("sda1"), await paused.interface_stats("vif1.0"))
    # time passes: the running guest's counters move on ...
    await grown(node, lambda: running.block_stats("sda1"), await running.block_stats("sda1"))
    await node.devstats.refresh()
    # ... the paused one's do not
    assert (await paused.block_stats("sda1"), await paused.interface_stats("vif1.0")) == frozen
    await paused.resume()
    await grown(node, lambda: paused.block_stats("sda1"), frozen[0])


async def test_the_bulk_form_reads_every_domain_at_once(node: SimNode,
                                                        conn: aiovirt.Connection) -> None:
    pairs = await conn.domain_infos()
    routes = conn._router.devstats
    assert routes is not None
    before = routes.reader.snapshots
    results = await asyncio.gather(*(conn.device_stats([d for d, _ in pairs]) for _ in range(5)))
    assert routes.reader.snapshots - before == 1  # coalesced
    bulk = results[0]
    assert [d for d, _ in bulk] == [d for d, _ in pairs]
    for dom, stats in bulk:
        if dom.id == 0:
            assert stats.block == {} and stats.interfaces == {}
            continue
        assert stats.block == {"sda1": await dom.block_stats("sda1")}
        assert stats.interfaces == {f"vif{dom.id}.0": await dom.interface_stats(
            f"vif{dom.id}.0")}
    assert {d.name for d, _ in await conn.device_stats()} == {"Domain-0", "vm1", "vm2", "vm3"}


@pytest.mark.parametrize(("device", "kind"), [
    ("sdb", "block"), ("xvda", "block"), ("eth0", "block"), ("", "block"),
    ("vif1.1", "interface"), ("vif2.0", "interface"), ("eth0", "interface"),
    ("lo", "interface"),
])
async def test_an_unknown_device_is_invalid_arg_naming_it(conn: aiovirt.Connection,
                                                          device: str, kind: str) -> None:
    dom = await conn.lookup_by_name("vm1")
    call = dom.block_stats if kind == "block" else dom.interface_stats
    with pytest.raises(VirtError) as info:
        await call(device)
    assert info.value.code == ErrorNumber.INVALID_ARG
    assert repr(device) in str(info.value) and "vm1" in str(info.value)
    assert conn.last_error is info.value
    assert (await dom.block_stats("sda1")).rd_req > 0  # the connection is still fine


async def test_a_destroyed_domain_is_no_domain(node: SimNode, conn: aiovirt.Connection) -> None:
    dom = await conn.lookup_by_name("vm3")
    await dom.destroy()
    with pytest.raises(VirtError) as info:
        await dom.block_stats("sda1")
    assert info.value.code == ErrorNumber.NO_DOMAIN
    await node.devstats.refresh()
    assert not (node.devstats.devices_dir / "vbd-3-2049").exists()  # its backend went too
    assert "vif3.0" not in parse_proc_net_dev(node.devstats.proc_net_dev.read_text())


async def test_read_only_connections_read_the_statistics_too(node: SimNode) -> None:
    async with aiovirt.open_read_only(node.uri) as conn:
        dom = await conn.lookup_by_name("vm2")
        assert (await dom.block_stats("sda1")).rd_req > 0


async def test_without_a_statistics_root_it_is_no_connect_saying_why(node: SimNode) -> None:
    async with aiovirt.open(node.uri.replace(f"stats_root={node.stats_root}",
                                             "stats_root=none")) as conn:
        dom = await conn.lookup_by_name("vm2")
        with pytest.raises(VirtError) as info:
            await dom.block_stats("sda1")
        assert info.value.code == ErrorNumber.NO_CONNECT
        assert "stats_root=none" in str(info.value)
        with pytest.raises(VirtError):
            await conn.device_stats()


async def test_counters_carry_on_across_a_restart_of_the_node(short_dir: Path) -> None:
    async with SimNode(short_dir, domains=2, seed=3) as first:
        async with aiovirt.open(first.uri) as conn:
            dom = await conn.lookup_by_name("vm1")
            await grown(first, lambda: dom.block_stats("sda1"), await dom.block_stats("sda1"))
            before = await dom.block_stats("sda1"), await dom.interface_stats("vif1.0")
    assert (Path(short_dir) / "xen-root").is_dir()
    async with SimNode(short_dir, domains=2, seed=3) as second:
        async with aiovirt.open(second.uri) as conn:
            dom = await conn.lookup_by_name("vm1")
            after = await dom.block_stats("sda1"), await dom.interface_stats("vif1.0")
    for old, new in zip(before, after, strict=True):
        assert all(n >= o for n, o in zip(new, old, strict=True)), (old, new)


async def test_a_big_node_serves_no_statistics_files_unless_asked(short_dir: Path) -> None:
    from aiovirt.sim.devstats import DEVICE_STATS_LIMIT

    assert SimNode(short_dir, domains=DEVICE_STATS_LIMIT).device_stats
    assert not SimNode(short_dir, domains=DEVICE_STATS_LIMIT + 1).device_stats
    assert SimNode(short_dir, domains=DEVICE_STATS_LIMIT + 1, device_stats=True).device_stats
    async with SimNode(short_dir, domains=2, device_stats=False) as node:
        assert "stats_root=none" in node.uri and "stats_root" not in node.endpoints
        assert not (Path(short_dir) / "xen-root").exists()
        async with aiovirt.open(node.uri) as conn:
            assert "devstats" in conn.unavailable
            with pytest.raises(VirtError) as info:
                await conn.device_stats()
            assert info.value.code == ErrorNumber.NO_CONNECT
