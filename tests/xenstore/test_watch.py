"""Watches: initial event, delivery and order, several at once, unwatch, slow consumers."""

from __future__ import annotations

import asyncio

import pytest

from aiovirt.errors import ErrorNumber
from aiovirt.xenstore import WatchEvent, XenStoreClient, XenStoreError
from tests.xenstore.conftest import Daemon

WAIT = 5.0


async def test_initial_event_comes_first(xs: XenStoreClient, base: str) -> None:
    async with xs.watch(f"{base}/w", token="tok") as events:
        first = await events.get(WAIT)
        assert first == WatchEvent(f"{base}/w", "tok")
        assert not first.resync


async def test_initial_event_for_a_special_path(xs: XenStoreClient) -> None:
    async with xs.watch("@releaseDomain") as events:
        assert (await events.get(WAIT)).path == "@releaseDomain"


async def test_events_arrive_in_the_order_of_the_changes(xs: XenStoreClient,
                                                         base: str) -> None:
    async with xs.watch(f"{base}/w") as events:
        await events.get(WAIT)
        paths = [f"{base}/w/k{i}" for i in range(50)]
        await asyncio.gather(*(xs.write(p, "x") for p in paths))  # pipelined, in this order
        got = [(await events.get(WAIT)).path for _ in paths]
        assert got == paths


async def test_async_for_yields_events(xs: XenStoreClient, base: str) -> None:
    seen: list[str] = []
    async with xs.watch(f"{base}/af") as events:
        await xs.write(f"{base}/af/x", "1")
        async with asyncio.timeout(WAIT):
            async for event in events:
                seen.append(event.path)
                if event.path.endswith("/x"):
                    break
    assert seen == [f"{base}/af", f"{base}/af/x"]


async def test_several_watches_on_one_connection(xs: XenStoreClient, base: str) -> None:
    async with xs.watch(f"{base}/s") as outer, xs.watch(f"{base}/s/a") as inner, \
            xs.watch(f"{base}/other") as other:
        for w in (outer, inner, other):
            await w.get(WAIT)
        await xs.write(f"{base}/s/a/1", "v")
        await xs.write(f"{base}/s/b", "v")
        assert (await outer.get(WAIT)).path == f"{base}/s/a/1"
        assert (await outer.get(WAIT)).path == f"{base}/s/b"
        assert (await inner.get(WAIT)).path == f"{base}/s/a/1"
        await xs.read("/")  # a round trip: any event for `other` would have come by now
        assert other.pending() == 0 and inner.pending() == 0


async def test_leaving_the_block_unwatches(xs: XenStoreClient, base: str) -> None:
    async with xs.watch(f"{base}/u", token="same") as events:
        await events.get(WAIT)
    assert "same" not in xs._watches
    # The daemon forgot it too: the same path and token can be watched again (else EEXIST).
    async with xs.watch(f"{base}/u", token="same") as again:
        assert (await again.get(WAIT)).path == f"{base}/u"


async def test_iteration_ends_after_the_block(xs: XenStoreClient, base: str) -> None:
    async with xs.watch(f"{base}/end") as events:
        pass
    async with asyncio.timeout(WAIT):
        assert [e async for e in events] in ([], [WatchEvent(f"{base}/end", events.token)])


async def test_duplicate_token_is_refused(xs: XenStoreClient, base: str) -> None:
    async with xs.watch(f"{base}/a", token="t"):
        with pytest.raises(XenStoreError) as info:
            async with xs.watch(f"{base}/b", token="t"):
                pass
        assert info.value.code == ErrorNumber.INVALID_ARG


async def test_slow_consumer_never_blocks_replies_or_other_watches(xs: XenStoreClient,
                                                                  base: str) -> None:
    async with xs.watch(f"{base}/slow", maxsize=8) as slow, \
            xs.watch(f"{base}/fast") as fast:
        await fast.get(WAIT)
        # Nobody consumes `slow`: 200 events pile up against a queue of 8.
        for i in range(200):
            await xs.write(f"{base}/slow/k{i}", "x")
        await xs.write(f"{base}/fast/k", "x")
        assert (await fast.get(WAIT)).path == f"{base}/fast/k"
        assert await xs.read(f"{base}/slow/k199") == b"x"
        assert slow.pending() == 1  # the backlog folded into one overflow event
        flagged = await slow.get(WAIT)
        assert flagged == WatchEvent(f"{base}/slow", slow.token, overflowed=True)
        assert flagged.resync
        # Once the consumer has taken it, events flow normally again.
        await xs.write(f"{base}/slow/after", "x")
        assert (await slow.get(WAIT)).path == f"{base}/slow/after"
        assert slow.overflows >= 1


async def test_cancelled_watch_registration_leaves_nothing_behind(xs: XenStoreClient,
                                                                  base: str) -> None:
    async def register() -> None:
        async with xs.watch(f"{base}/c", token="cancel-me"):
            await asyncio.sleep(3600)

    for _ in range(3):
        task = asyncio.create_task(register())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await xs.read("/")
    assert "cancel-me" not in xs._watches
    async with xs.watch(f"{base}/c", token="cancel-me") as events:
        assert (await events.get(WAIT)).path == f"{base}/c"


async def test_watch_ends_with_error_when_the_connection_dies(daemon: Daemon,
                                                              base: str) -> None:
    import aiovirt.xenstore as xenstore

    async with xenstore.connect(daemon.path) as xs:
        async with xs.watch(f"{base}/x") as events:
            await events.get(WAIT)
            await daemon.kill()
            with pytest.raises(XenStoreError) as info:
                await events.get(WAIT)
            assert info.value.code == ErrorNumber.NO_XENSTORE


async def test_close_ends_every_watch_iteration(daemon: Daemon, base: str) -> None:
    import aiovirt.xenstore as xenstore

    xs = await xenstore.connect(daemon.path)
    async with xs.watch(f"{base}/c1") as a, xs.watch(f"{base}/c2") as b:
        await a.get(WAIT)
        await b.get(WAIT)

        async def drain(events: object) -> int:
            return len([e async for e in events])  # type: ignore[attr-defined]

        consumers = [asyncio.create_task(drain(w)) for w in (a, b)]
        await asyncio.sleep(0)
        await xs.close()
        async with asyncio.timeout(WAIT):
            assert await asyncio.gather(*consumers) == [0, 0]
