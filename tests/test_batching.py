"""The coalescer's rules, once, directly: the hypervisor backend and the xend route rely on them.

A fake ``serve`` records each batch it is given and can be held at a gate, so each test says
exactly which requests were in flight when another one was made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from aiovirt.batching import Coalescer


class Server:
    """A ``serve`` that answers ``key * 10`` (or raises ``fail``), optionally held at a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = asyncio.Event()  # set when a batch reaches serve
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.per_key: dict[int, Exception] = {}

    async def serve(self, keys: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(keys))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [self.per_key.get(k, k * 10) for k in keys]


class Failure(Exception):
    """The error each waiter receives: its key and the cause (None: closed)."""

    def __init__(self, key: int, cause: BaseException | None) -> None:
        super().__init__(key, cause)
        self.key = key
        self.cause = cause


def make() -> tuple[Coalescer[int, int], Server]:
    server = Server()
    return Coalescer(server.serve, Failure, name="test batches"), server


async def test_requests_made_at_once_share_one_batch() -> None:
    batches, server = make()
    futures = [batches.request(k) for k in (3, 1, 3, 2)]
    assert await asyncio.gather(*futures) == [30, 10, 30, 20]
    assert server.batches == [[3, 1, 3, 2]]  # one call, every request in order
    assert batches.stats == {"batches": 1, "requests": 4}


async def test_tasks_started_together_join_the_same_batch() -> None:
    batches, server = make()

    async def ask(key: int) -> int:
        return await batches.request(key)

    assert await asyncio.gather(*(ask(k) for k in range(5))) == [0, 10, 20, 30, 40]
    assert server.batches == [[0, 1, 2, 3, 4]]


async def test_no_answer_comes_from_a_batch_started_before_the_request() -> None:
    batches, server = make()
    server.gate = asyncio.Event()
    first = batches.request(1)
    await asyncio.wait_for(server.started.wait(), 5)  # the first batch is in flight
    late = batches.request(2)
    again = batches.request(1)  # the same key as the batch in flight: still a new batch
    assert not first.done() and not late.done()
    server.gate.set()
    assert await asyncio.wait_for(first, 5) == 10
    assert await asyncio.wait_for(asyncio.gather(late, again), 5) == [20, 10]
    assert server.batches == [[1], [2, 1]]  # the next batch, served once the first returned


async def test_a_cancelled_waiter_leaves_the_batch() -> None:
    batches, server = make()
    keep, drop = batches.request(1), batches.request(2)
    drop.cancel()
    assert await keep == 10
    assert server.batches == [[1]]  # the cancelled request was not asked for


async def test_a_batch_whose_waiters_all_left_is_not_served() -> None:
    batches, server = make()
    for fut in [batches.request(k) for k in range(3)]:
        fut.cancel()
    assert await batches.request(9) == 90  # a later batch works as before
    assert server.batches == [[9]]


async def test_cancelling_a_waiter_in_flight_leaves_the_others_answered() -> None:
    batches, server = make()
    server.gate = asyncio.Event()
    futures = [batches.request(k) for k in range(4)]
    await asyncio.wait_for(server.started.wait(), 5)
    futures[1].cancel()
    server.gate.set()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert results[0] == 0 and results[2:] == [20, 30]
    assert isinstance(results[1], asyncio.CancelledError)


async def test_a_failed_batch_gives_each_waiter_its_own_error() -> None:
    batches, server = make()
    server.fail = OSError("the wire broke")
    results = await asyncio.gather(*(batches.request(k) for k in (1, 2, 2)),
                                   return_exceptions=True)
    assert all(isinstance(r, Failure) for r in results), results
    assert len({id(r) for r in results}) == 3  # three objects, never one shared
    assert [r.key for r in results] == [1, 2, 2]  # type: ignore[union-attr]
    assert all(r.cause is server.fail for r in results)  # type: ignore[union-attr]
    server.fail = None
    assert await batches.request(1) == 10  # the failure does not stick


async def test_an_error_for_one_key_fails_only_its_waiters() -> None:
    batches, server = make()
    server.per_key[2] = LookupError("no 2")
    results = await asyncio.gather(*(batches.request(k) for k in (1, 2, 3, 2)),
                                   return_exceptions=True)
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], Failure) and isinstance(results[3], Failure)
    assert results[1] is not results[3]
    assert results[1].cause is server.per_key[2]


async def test_close_serves_what_it_accepted_then_refuses() -> None:
    batches, server = make()
    server.gate = asyncio.Event()
    flying = batches.request(1)
    await asyncio.wait_for(server.started.wait(), 5)
    forming = batches.request(2)
    closing = asyncio.create_task(batches.close())
    await asyncio.sleep(0)  # one step: close() has begun and waits for the runner
    refused = batches.request(3)
    assert refused.done()
    with pytest.raises(Failure) as info:
        refused.result()
    assert info.value.cause is None and info.value.key == 3
    server.gate.set()
    await asyncio.wait_for(closing, 5)
    assert (flying.result(), forming.result()) == (10, 20)
    assert batches.closed


async def test_close_with_cancel_fails_every_waiter_and_leaves_no_task() -> None:
    batches, server = make()
    server.gate = asyncio.Event()  # never opened: the round trip hangs
    flying = [batches.request(k) for k in (1, 2)]
    await asyncio.wait_for(server.started.wait(), 5)
    forming = batches.request(3)
    await asyncio.wait_for(batches.close(cancel=True), 5)
    results = await asyncio.gather(*flying, forming, return_exceptions=True)
    assert all(isinstance(r, Failure) and r.cause is None for r in results), results
    assert len({id(r) for r in results}) == 3
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test batches"]
    await batches.close()  # idempotent


async def test_the_runner_ends_when_no_batch_is_forming() -> None:
    batches, _ = make()
    assert await batches.request(1) == 10  # the runner ended in the step that answered
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "test batches"]
