"""The statistics files backend against the simulated dom0's files (no connection)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from aiovirt.backends.devstats import DeviceStatsReader
from aiovirt.protocol.devstats import BlockStats, parse_proc_net_dev
from aiovirt.sim.node import SimNode


@pytest.fixture
async def reader(node: SimNode) -> AsyncIterator[DeviceStatsReader]:
    """A reader of ``node``'s statistics root."""
    async with DeviceStatsReader(node.stats_root) as r:
        yield r


def files(node: SimNode, domid: int) -> BlockStats:
    """Return domain ``domid``'s sda1 counters as its files hold them."""
    d = node.devstats.devices_dir / f"vbd-{domid}-2049" / "statistics"
    n = {name: int((d / name).read_text()) for name in ("rd_req", "rd_sect", "wr_req",
                                                         "wr_sect", "oo_req")}
    return BlockStats(n["rd_req"], n["rd_sect"] * 512, n["wr_req"], n["wr_sect"] * 512,
                      n["oo_req"])


async def test_one_device_and_the_snapshot_match_the_files(node: SimNode,
                                                           reader: DeviceStatsReader) -> None:
    assert await reader.block_stats(1, 2049) == files(node, 1)
    assert await reader.block_stats(1, 2050) is None
    assert await reader.block_stats(9, 2049) is None
    snap = await reader.snapshot()
    assert set(snap.block) == {1, 2, 3} and set(snap.net) == {1, 2, 3}
    for domid in (1, 2, 3):
        assert snap.block[domid] == {2049: files(node, domid)}
        line = parse_proc_net_dev(node.devstats.proc_net_dev.read_text())[f"vif{domid}.0"]
        assert snap.net[domid] == {f"vif{domid}.0": line.guest_view()}
    assert await reader.interface_stats(2) == snap.net[2]


async def test_the_files_are_read_in_worker_threads(node: SimNode,
                                                    reader: DeviceStatsReader,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import aiovirt.backends.devstats as module

    threads: list[threading.Thread] = []
    real = module._read_counters

    def spy(path: str, dir_fd: int | None = None) -> BlockStats | None:
        threads.append(threading.current_thread())
        return real(path, dir_fd)

    monkeypatch.setattr(module, "_read_counters", spy)
    await reader.block_stats(1, 2049)
    assert len(threads) == 1
    await reader.snapshot()
    assert len(threads) > 1 and threading.main_thread() not in threads


async def test_concurrent_snapshots_share_one_read(reader: DeviceStatsReader) -> None:
    snaps = await asyncio.gather(*(reader.snapshot() for _ in range(20)))
    assert reader.snapshots == 1 and all(s is snaps[0] for s in snaps)
    await reader.snapshot()
    assert reader.snapshots == 2  # a later call never gets an older read


async def test_a_cancelled_caller_leaves_the_read_to_the_others(
        reader: DeviceStatsReader) -> None:
    first = asyncio.ensure_future(reader.snapshot())
    second = asyncio.ensure_future(reader.snapshot())
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).block
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await reader.snapshot()).net


async def test_a_paused_guest_stands_still_and_a_running_one_grows(
        node: SimNode, reader: DeviceStatsReader) -> None:
    node.pause(1)
    await node.devstats.refresh()
    frozen = await reader.block_stats(1, 2049)
    start = await reader.block_stats(2, 2049)
    async with asyncio.timeout(10):
        while (now := await reader.block_stats(2, 2049)) == start:
            await asyncio.sleep(0.05)  # the guests' clocks must move on
            await node.devstats.refresh()
    assert now is not None and start is not None and now.rd_req > start.rd_req
    assert await reader.block_stats(1, 2049) == frozen


async def test_a_root_without_xen_backends_has_no_devices(short_dir: str) -> None:
    async with DeviceStatsReader(short_dir) as reader:
        snap = await reader.snapshot()
        assert snap.block == {} and snap.net == {}
        assert await reader.block_stats(1, 2049) is None
