"""Pipelining, cancellation at random points, timeouts: the connection always stays in sync."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Awaitable, Iterator

import pytest

import aiovirt.xenstore as xenstore
from aiovirt.errors import ErrorNumber
from aiovirt.xenstore import XenStoreClient, XenStoreError


async def _fill(xs: XenStoreClient, base: str, n: int) -> list[str]:
    paths = [f"{base}/k{i}" for i in range(n)]
    await asyncio.gather(*(xs.write(p, f"value-{i}") for i, p in enumerate(paths)))
    return paths


async def test_1000_concurrent_reads_return_the_right_values(xs: XenStoreClient,
                                                            base: str) -> None:
    paths = await _fill(xs, base, 1000)
    order = list(range(1000))
    random.Random(4).shuffle(order)
    values = await asyncio.gather(*(xs.read(paths[i]) for i in order))
    assert values == [f"value-{i}".encode() for i in order]


async def test_requests_of_one_turn_leave_in_one_write(xs: XenStoreClient, base: str) -> None:
    link = xs._link
    assert link is not None and link.transport is not None
    writes: list[int] = []
    transport = link.transport
    original = transport.write

    def counting_write(data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        original(data)

    transport.write = counting_write  # type: ignore[method-assign]
    try:
        await asyncio.gather(*(xs.read("/") for _ in range(300)))
    finally:
        transport.write = original  # type: ignore[method-assign]
    assert len(writes) == 1 and writes[0] == 300 * (16 + 2)


async def test_mixed_concurrent_ops_and_errors(xs: XenStoreClient, base: str) -> None:
    paths = await _fill(xs, base, 100)
    calls: list[Awaitable[object]] = []
    for i, p in enumerate(paths):
        calls.append(xs.read(p))
        calls.append(xs.read(f"{p}/missing"))
        calls.append(xs.directory(base if i % 2 else p))
    results = await asyncio.gather(*calls, return_exceptions=True)
    for i in range(100):
        assert results[3 * i] == f"value-{i}".encode()
        err = results[3 * i + 1]
        assert isinstance(err, XenStoreError) and err.errno_name == "ENOENT"
        assert err.path == f"{paths[i]}/missing"


async def test_cancellation_at_random_points_keeps_the_stream_in_sync(
        xs: XenStoreClient, base: str) -> None:
    paths = await _fill(xs, base, 200)
    rng = random.Random(7)
    wrong: list[tuple[str, bytes]] = []

    async def reader(i: int) -> None:
        for _ in range(20):
            got = await xs.read(paths[i])
            if got != f"value-{i}".encode():
                wrong.append((paths[i], got))

    for _round in range(5):
        tasks = [asyncio.create_task(reader(i)) for i in range(200)]
        for _ in range(rng.randrange(1, 40)):
            await asyncio.sleep(0)
            for task in rng.sample(tasks, 10):
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not wrong
        # Still usable, and nobody reads another's reply.
        values = await asyncio.gather(*(xs.read(p) for p in paths))
        assert values == [f"value-{i}".encode() for i in range(200)]
    assert xs.connected


async def test_asyncio_timeout_around_a_call_is_safe(xs: XenStoreClient, base: str) -> None:
    paths = await _fill(xs, base, 50)
    timed_out = 0
    for i in range(200):
        try:
            async with asyncio.timeout(0):
                await xs.read(paths[i % 50])
        except TimeoutError:
            timed_out += 1
    assert timed_out == 200
    assert await xs.read(paths[3]) == b"value-3"
    assert xs._link is not None and not xs._link.pending


@pytest.fixture
def silent_socket(short_dir: str) -> Iterator[str]:
    """Yield the path of a socket that accepts connections and never answers."""
    path = f"{short_dir}/silent"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(8)
    try:
        yield path
    finally:
        sock.close()


async def test_a_silent_daemon_times_out_per_call_and_per_connection(
        silent_socket: str) -> None:
    async with xenstore.connect(silent_socket, timeout=0.2) as xs:
        with pytest.raises(XenStoreError) as info:
            await xs.read("/a")
        assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
        assert "/a" in str(info.value) and info.value.path == "/a"
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(XenStoreError) as info:
            await xs.read("/b", timeout=0.05)
        assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
        assert loop.time() - started < 0.19
        results = await asyncio.gather(*(xs.read(f"/c{i}") for i in range(20)),
                                       return_exceptions=True)
        assert all(isinstance(r, XenStoreError) and r.code == ErrorNumber.OPERATION_TIMEOUT
                   for r in results)
