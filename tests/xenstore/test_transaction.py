"""Transactions: commit, abort, isolation, conflicts (EAGAIN), retries, cancellation."""

from __future__ import annotations

import asyncio

import pytest

import aiovirt.xenstore as xenstore
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.xs_wire import XsOp
from aiovirt.xenstore import XenStoreClient, XenStoreError, XenStoreTransaction
from tests.support.cancellation import cancelled_after
from tests.xenstore.conftest import Daemon


async def _tx_is_gone(xs: XenStoreClient, tx_id: int) -> bool:
    """Return True when the daemon no longer knows ``tx_id`` (a READ of / with it fails)."""
    link = xs._link
    assert link is not None
    fut = link.submit(XsOp.READ, b"/\0", tx_id, "/", 5.0)
    assert fut is not None
    try:
        await fut
    except XenStoreError as err:
        return err.errno_name in ("ENOENT", "EIO")
    return False


async def test_commit_applies_every_write(xs: XenStoreClient, base: str) -> None:
    async with xs.transaction() as t:
        await t.write(f"{base}/t/a", "1")
        await t.mkdir(f"{base}/t/d")
        assert await t.read(f"{base}/t/a") == b"1"  # read-your-writes
        assert not await xs.exists(f"{base}/t/a")  # invisible outside until commit
        assert sorted(await t.directory(f"{base}/t")) == ["a", "d"]
    assert await xs.read(f"{base}/t/a") == b"1"
    assert await xs.exists(f"{base}/t/d")
    assert await _tx_is_gone(xs, t.tx_id)


async def test_exception_aborts(xs: XenStoreClient, base: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with xs.transaction() as t:
            await t.write(f"{base}/ab", "1")
            raise Boom
    assert not await xs.exists(f"{base}/ab")
    assert await _tx_is_gone(xs, t.tx_id)


async def test_explicit_abort_and_ops_after_end(xs: XenStoreClient, base: str) -> None:
    t = await xs.transaction().start()
    await t.write(f"{base}/x", "1")
    await t.abort()
    assert not await xs.exists(f"{base}/x")
    with pytest.raises(XenStoreError) as info:
        await t.read(f"{base}/x")
    assert info.value.code == ErrorNumber.OPERATION_INVALID


async def test_conflict_raises_eagain_and_applies_nothing(xs: XenStoreClient,
                                                          base: str) -> None:
    # test-xenstore's "ta err": read in the tx, overwrite outside, commit must fail.
    await xs.write(f"{base}/a", "a")
    with pytest.raises(VirtError) as info:
        async with xs.transaction() as t:
            assert await t.read(f"{base}/a") == b"a"
            await xs.write(f"{base}/a", "b")
            await t.write(f"{base}/a", "c")
            await t.write(f"{base}/other", "c")
    assert isinstance(info.value, XenStoreError)
    assert info.value.errno_name == "EAGAIN"
    assert "EAGAIN" in str(info.value)
    assert await xs.read(f"{base}/a") == b"b"
    assert not await xs.exists(f"{base}/other")


async def test_run_transaction_counter_ends_at_exactly_n(xs: XenStoreClient,
                                                         base: str) -> None:
    path = f"{base}/counter"
    await xs.write(path, "0")
    n = 25

    async def increment(t: XenStoreTransaction) -> int:
        value = int(await t.read(path)) + 1
        await asyncio.sleep(0)  # let the others interleave and conflict
        await t.write(path, str(value))
        return value

    results = await asyncio.gather(*(xs.run_transaction(increment) for _ in range(n)))
    assert int(await xs.read(path)) == n
    assert sorted(results) == list(range(1, n + 1))


async def test_counter_across_connections(daemon: Daemon, base: str) -> None:
    path = f"{base}/counter2"
    async with xenstore.connect(daemon.path) as a, xenstore.connect(daemon.path) as b:
        await a.write(path, "0")

        async def increment(t: XenStoreTransaction) -> None:
            await t.write(path, str(int(await t.read(path)) + 1))

        await asyncio.gather(*(c.run_transaction(increment) for c in (a, b) * 10))
        assert await b.read(path) == b"20"


async def test_run_transaction_gives_up_after_retries(xs: XenStoreClient, base: str) -> None:
    path = f"{base}/always"
    await xs.write(path, "0")
    attempts = 0

    async def conflicting(t: XenStoreTransaction) -> None:
        nonlocal attempts
        attempts += 1
        await t.read(path)
        await xs.write(path, str(attempts))  # outside the tx
        await t.write(path, "mine")  # read, changed outside, written: a conflict on every daemon

    with pytest.raises(XenStoreError) as info:
        await xs.run_transaction(conflicting, retries=3)
    assert info.value.errno_name == "EAGAIN"
    assert attempts == 4


async def test_cancelled_transaction_body_is_aborted(xs: XenStoreClient, base: str) -> None:
    started = asyncio.Event()
    holder: list[XenStoreTransaction] = []

    async def body() -> None:
        async with xs.transaction() as t:
            holder.append(t)
            await t.write(f"{base}/cancelled", "1")
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(body())
    async with asyncio.timeout(5):
        await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _tx_is_gone(xs, holder[0].tx_id)
    assert not await xs.exists(f"{base}/cancelled")


async def test_cancelled_start_ends_the_transaction_the_daemon_opened(
        xs: XenStoreClient) -> None:
    link = xs._link
    assert link is not None
    sent: list[tuple[int, int, bytes]] = []
    enqueue = link._enqueue

    def spy(fut: object, op: int, payload: bytes, tx_id: int, *args: object) -> None:
        sent.append((op, tx_id, payload))
        enqueue(fut, op, payload, tx_id, *args)  # type: ignore[arg-type]

    link._enqueue = spy  # type: ignore[method-assign,assignment]
    for delay in range(4):
        t = await cancelled_after(delay, xs.transaction().start())
        if t is not None:
            await t.abort()
    await xs.read("/")  # a round trip: the orphan ENDs went out before it
    await xs.read("/")
    ended = [tx for op, tx, payload in sent if op == XsOp.TRANSACTION_END and payload == b"F\0"]
    starts = [op for op, _, _ in sent if op == XsOp.TRANSACTION_START]
    assert len(starts) >= 3  # (a task cancelled before its first step sends nothing)
    assert len(ended) == len(starts)
    link._enqueue = enqueue  # type: ignore[method-assign]
    for tx_id in ended:
        assert await _tx_is_gone(xs, tx_id)


async def test_run_transaction_retries_an_rm_whose_subtree_changed_outside(
        daemon: Daemon, xs: XenStoreClient, base: str) -> None:
    # The C daemon answers an RM inside a transaction EIO when a child the transaction saw
    # is gone by now: a conflict, which the next attempt (seeing the new tree) resolves.
    path = f"{base}/rmtree"
    await xs.write(f"{path}/a/deep", "1")  # answered: xs is accepted, the backlog is free
    await xs.write(f"{path}/b", "2")
    async with xenstore.connect(daemon.path, timeout=5.0) as other:
        attempts = 0

        async def remove(t: XenStoreTransaction) -> None:
            nonlocal attempts
            attempts += 1
            names = await t.directory(path)
            if attempts == 1:
                assert names == ["a", "b"]
                await other.rm(f"{path}/b")  # outside, after the transaction saw it
            await t.rm(path)

        await xs.run_transaction(remove)
        assert attempts == 2
        assert not await xs.exists(path)
