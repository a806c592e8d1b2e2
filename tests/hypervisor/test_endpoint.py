"""The privcmd endpoint and the blocking ``sim`` driver, over a real unix socket."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from pathlib import Path

import pytest

from aiovirt.backends.privcmd_sim import SimPrivcmdDriver
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.privcmd import REPLY, REQUEST, PrivcmdOp
from aiovirt.protocol.states import DOMINF_PAUSED
from aiovirt.sim.privcmd import PrivcmdServer

from .conftest import MemoryHypervisor


async def test_driver_round_trips_every_operation(
    server: PrivcmdServer, model: MemoryHypervisor
) -> None:
    driver = await asyncio.to_thread(SimPrivcmdDriver.open, server.path)
    try:
        assert await asyncio.to_thread(driver.version) == (3, 0, ".2")
        assert await asyncio.to_thread(driver.physinfo) == model.physinfo()
        records = await asyncio.to_thread(driver.getinfolist, 0, 100)
        assert records == [model.domains[i] for i in range(4)]
        assert await asyncio.to_thread(driver.getinfolist, 2, 1) == [model.domains[2]]
        await asyncio.to_thread(driver.pause, 2)
        assert model.domains[2].flags & DOMINF_PAUSED
        await asyncio.to_thread(driver.unpause, 2)
        assert not model.domains[2].flags & DOMINF_PAUSED
        await asyncio.to_thread(driver.set_max_mem, 3, 131072)
        assert model.domains[3].max_pages == 32768
        await asyncio.to_thread(driver.destroy, 3)
        assert 3 not in model.domains
        with pytest.raises(OSError) as info:
            await asyncio.to_thread(driver.pause, 3)
        assert info.value.errno == errno.ESRCH
        with pytest.raises(OSError) as info:
            await asyncio.to_thread(driver.destroy, 0)
        assert info.value.errno == errno.EPERM
    finally:
        driver.close()
    assert server.stats[PrivcmdOp.GETDOMAININFOLIST] == 2
    assert server.stats[PrivcmdOp.PAUSEDOMAIN] == 2


async def test_driver_open_names_a_missing_endpoint(sockdir: Path) -> None:
    path = str(sockdir / "nothing-here")
    with pytest.raises(VirtError) as info:
        await asyncio.to_thread(SimPrivcmdDriver.open, path)
    assert info.value.code == ErrorNumber.NO_XEN
    assert info.value.domain == ErrorDomain.XEN
    assert path in str(info.value)


async def test_endpoint_answers_pipelined_requests_in_order(server: PrivcmdServer) -> None:
    def exchange() -> list[tuple[int, int, int, int]]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(server.path)
            sock.sendall(b"".join([
                REQUEST.pack(PrivcmdOp.XEN_VERSION, 7, 0, 0, 0),
                REQUEST.pack(99, 8, 0, 0, 0),
                REQUEST.pack(PrivcmdOp.PAUSEDOMAIN, 9, 42, 0, 0),
                REQUEST.pack(PrivcmdOp.GETDOMAININFOLIST, 10, 1, 2, 0),
            ]))
            replies = []
            stream = sock.makefile("rb")
            for _ in range(4):
                header = REPLY.unpack(stream.read(REPLY.size))
                stream.read(header[3])
                replies.append(header)
            return replies

    replies = await asyncio.to_thread(exchange)
    assert [r[1] for r in replies] == [7, 8, 9, 10]
    assert replies[0][2] == (3 << 16)
    assert replies[1][2] == -errno.ENOSYS
    assert replies[2][2] == -errno.ESRCH
    assert replies[3][2] == 2 and replies[3][3] == 2 * 72


async def test_driver_threads_each_use_their_own_socket(server: PrivcmdServer) -> None:
    driver = SimPrivcmdDriver(server.path)
    barrier = threading.Barrier(4)
    results: list[int] = []

    def worker() -> None:
        barrier.wait(5)
        for _ in range(20):
            results.append(len(driver.getinfolist(0, 10)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            await asyncio.to_thread(t.join, 10)
        assert results == [4] * 80
        assert len(driver._sockets) == 4
    finally:
        driver.close()
    assert not driver._sockets


async def test_close_drops_clients_and_removes_the_socket(
    model: MemoryHypervisor, sockdir: Path
) -> None:
    path = sockdir / "privcmd"
    server = PrivcmdServer(model, path)
    await server.start()
    driver = await asyncio.to_thread(SimPrivcmdDriver.open, str(path))
    await server.close()
    assert not path.exists()
    with pytest.raises(OSError):
        await asyncio.to_thread(driver.version)
    driver.close()
