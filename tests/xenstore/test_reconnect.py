"""Connection loss: waiters fail at once; with reconnect=True the client and its watches recover."""

from __future__ import annotations

import asyncio

import pytest

import aiovirt.xenstore as xenstore
from aiovirt.errors import ErrorNumber
from aiovirt.xenstore import XenStoreError, XenStoreTransaction
from tests.xenstore.conftest import Daemon

WAIT = 10.0


class Traffic:
    """Counts answered calls; ``flowing`` is set once ``enough`` of them were answered."""

    def __init__(self, enough: int) -> None:
        self.ok = 0
        self.failed = 0
        self.enough = enough
        self.flowing = asyncio.Event()

    def answered(self) -> None:
        self.ok += 1
        if self.ok >= self.enough:
            self.flowing.set()


async def _until_disconnected(xs: xenstore.XenStoreClient) -> None:
    async with asyncio.timeout(WAIT):
        while xs.connected:
            await xs.wait_changed()


async def _until_a_dial_failed(xs: xenstore.XenStoreClient) -> None:
    """Wait until the client has tried to reconnect and failed (the daemon is really down)."""
    failures = xs.dial_failures
    async with asyncio.timeout(WAIT):
        while xs.dial_failures == failures:
            await xs.wait_changed()


async def test_daemon_killed_fails_every_waiter_at_once(daemon: Daemon, base: str) -> None:
    async with xenstore.connect(daemon.path) as xs:
        await xs.write(f"{base}/k", "v")
        traffic = Traffic(enough=200)

        async def reader() -> None:
            while True:
                await xs.read(f"{base}/k")
                traffic.answered()

        tasks = [asyncio.create_task(reader()) for _ in range(50)]
        async with asyncio.timeout(WAIT):
            await traffic.flowing.wait()  # calls are in flight (any moment is a kill point)
        await daemon.kill()
        async with asyncio.timeout(WAIT):
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            assert isinstance(r, XenStoreError), r
            assert r.code == ErrorNumber.NO_XENSTORE
            assert daemon.path in str(r)
        assert not xs.connected
        with pytest.raises(XenStoreError) as info:
            await xs.read(f"{base}/k")
        assert info.value.code == ErrorNumber.NO_XENSTORE


async def test_reconnect_restores_calls_and_watches(daemon: Daemon, base: str) -> None:
    async with xenstore.connect(daemon.path, reconnect=True, timeout=WAIT) as xs:
        await xs.write(f"{base}/k", "v")
        async with xs.watch(f"{base}/w") as events:
            assert (await events.get(WAIT)).path == f"{base}/w"
            stop = asyncio.Event()
            traffic = Traffic(enough=100)

            async def reader() -> None:
                while not stop.is_set():
                    try:
                        await xs.read(f"{base}/k")
                        traffic.answered()
                    except XenStoreError as err:
                        assert err.code in (ErrorNumber.NO_XENSTORE,
                                            ErrorNumber.OPERATION_FAILED), err
                        # In flight at the kill, or ENOENT on the new daemon.
                        traffic.failed += 1

            tasks = [asyncio.create_task(reader()) for _ in range(20)]
            async with asyncio.timeout(WAIT):
                await traffic.flowing.wait()
            await daemon.restart()
            # Each watch yields an event telling its consumer to re-read.
            async with asyncio.timeout(WAIT):
                while True:
                    event = await events.get()
                    if event.reconnected:
                        break
            assert event.path == f"{base}/w" and event.resync
            # The watch is live on the new daemon.
            await xs.write(f"{base}/w/new", "1")
            async with asyncio.timeout(WAIT):
                while (await events.get()).path != f"{base}/w/new":
                    pass
            stop.set()
            async with asyncio.timeout(WAIT):
                await asyncio.gather(*tasks)
            assert traffic.failed >= 1 and traffic.ok >= 1
            assert xs.reconnects == 1
            if daemon.kind == "real":
                assert not await xs.exists(f"{base}/k")  # a fresh daemon, an empty store


async def test_transaction_in_flight_fails_and_never_half_applies(daemon: Daemon,
                                                                 base: str) -> None:
    async with xenstore.connect(daemon.path, reconnect=True, timeout=WAIT) as xs:
        t = await xs.transaction().start()
        await t.write(f"{base}/tx/a", "1")
        await daemon.restart()
        with pytest.raises(XenStoreError) as info:
            await t.write(f"{base}/tx/b", "1")
        assert info.value.code == ErrorNumber.NO_XENSTORE
        with pytest.raises(XenStoreError):
            await t.commit()
        assert not await xs.exists(f"{base}/tx/a")  # waits for the reconnection
        # run_transaction works again on the new connection.

        async def body(t: XenStoreTransaction) -> None:
            await t.write(f"{base}/tx/c", "1")

        await xs.run_transaction(body)
        assert await xs.read(f"{base}/tx/c") == b"1"


async def test_calls_wait_for_the_reconnection(daemon: Daemon, base: str) -> None:
    async with xenstore.connect(daemon.path, reconnect=True, timeout=WAIT) as xs:
        await xs.read("/")  # the daemon has accepted us
        await daemon.kill()
        await _until_disconnected(xs)  # the client has noticed
        call = asyncio.create_task(xs.write(f"{base}/late", "1"))
        await _until_a_dial_failed(xs)
        await _until_a_dial_failed(xs)  # the call has waited through two failed attempts
        assert not call.done()
        await daemon.start()
        async with asyncio.timeout(WAIT):
            await call
        assert await xs.read(f"{base}/late") == b"1"


async def test_close_during_reconnection_does_not_hang(daemon: Daemon) -> None:
    xs = await xenstore.connect(daemon.path, reconnect=True, timeout=WAIT)
    await xs.read("/")
    await daemon.kill()
    await _until_disconnected(xs)
    pending = asyncio.create_task(xs.read("/"))  # waits for the reconnection
    await _until_a_dial_failed(xs)
    assert not pending.done()
    async with asyncio.timeout(WAIT):
        await xs.close()
        with pytest.raises(XenStoreError):
            await pending


async def test_wait_changed_reports_loss_failed_dials_and_recovery(daemon: Daemon) -> None:
    async with xenstore.connect(daemon.path, reconnect=True, timeout=WAIT) as xs:
        await xs.read("/")
        with pytest.raises(TimeoutError):
            await xs.wait_changed(timeout=0.01)  # nothing changes while all is well
        await daemon.kill()
        await _until_disconnected(xs)
        await _until_a_dial_failed(xs)
        # (A dial racing the kill may reach the dying daemon's backlog, connect and be lost
        # at once: that counts as a reconnection. After a failed dial the daemon is gone.)
        reconnects = xs.reconnects
        assert xs.dial_failures >= 1 and not xs.connected
        await daemon.start()
        async with asyncio.timeout(WAIT):
            while not xs.connected:
                await xs.wait_changed()
        assert xs.reconnects == reconnects + 1
        await xs.read("/")
