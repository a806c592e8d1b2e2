"""Connection loss: waiters fail at once; with reconnect=True the client and its watches recover."""

from __future__ import annotations

import asyncio

import pytest

import aiovirt.xenstore as xenstore
from aiovirt.errors import ErrorNumber
from aiovirt.xenstore import XenStoreError, XenStoreTransaction
from tests.xenstore.conftest import Daemon

WAIT = 10.0


async def test_daemon_killed_fails_every_waiter_at_once(daemon: Daemon, base: str) -> None:
    async with xenstore.connect(daemon.path) as xs:
        await xs.write(f"{base}/k", "v")
        stop = asyncio.Event()

        async def reader() -> None:
            while not stop.is_set():
                await xs.read(f"{base}/k")

        tasks = [asyncio.create_task(reader()) for _ in range(50)]
        await asyncio.sleep(0.05)  # let traffic flow (any moment is a valid kill point)
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
            ok = 0
            failed = 0

            async def reader() -> None:
                nonlocal ok, failed
                while not stop.is_set():
                    try:
                        await xs.read(f"{base}/k")
                        ok += 1
                    except XenStoreError as err:
                        assert err.code in (ErrorNumber.NO_XENSTORE,
                                            ErrorNumber.OPERATION_FAILED), err
                        failed += 1  # in flight at the kill, or ENOENT on the new daemon
                        await asyncio.sleep(0.001)

            tasks = [asyncio.create_task(reader()) for _ in range(20)]
            await asyncio.sleep(0.05)
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
            assert failed >= 1 and ok >= 1
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
        link = xs._link
        assert link is not None
        await daemon.kill()
        async with asyncio.timeout(WAIT):
            await asyncio.shield(link.lost)  # the client has noticed
        call = asyncio.create_task(xs.write(f"{base}/late", "1"))
        await asyncio.sleep(0.05)
        assert not call.done()
        await daemon.start()
        async with asyncio.timeout(WAIT):
            await call
        assert await xs.read(f"{base}/late") == b"1"


async def test_close_during_reconnection_does_not_hang(daemon: Daemon) -> None:
    xs = await xenstore.connect(daemon.path, reconnect=True, timeout=WAIT)
    await xs.read("/")
    await daemon.kill()
    pending = asyncio.create_task(xs.read("/"))
    await asyncio.sleep(0.02)
    async with asyncio.timeout(WAIT):
        await xs.close()
        with pytest.raises(XenStoreError):
            await pending
