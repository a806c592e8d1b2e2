"""Coalesced ``info()`` on the xend route: many concurrent calls, one detailed domain list.

With no hypervisor, concurrent ``dom.info()`` calls join a batch that asks xend once for every
domain (``GET /xend/domain?detail=1``, counted by the sim as ``xend.list``) when that is cheaper
than asking per domain (``xend.domain``). These tests pin what the batching must keep: the same
answers as one-by-one calls, per-waiter errors reported in each waiter's own task, cancellation
of some waiters leaving the others answered, freshness (no answer from a request started before
the call) and INVALID_CONN for waiters of a connection closed under them.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import aiovirt
from aiovirt.errors import ErrorNumber, VirtError, get_last_error
from aiovirt.sim.node import SimNode

GUESTS = 20  # with Domain-0, 21 domains: well above the batch's minimum for a list


@pytest.fixture
def sim_dir() -> Iterator[str]:
    """A fresh short directory under /tmp (unix socket paths must stay short)."""
    path = tempfile.mkdtemp(prefix="avxb")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def node(sim_dir: str) -> AsyncIterator[SimNode]:
    """A simulated node with twenty guests, served from this process."""
    async with SimNode(sim_dir, domains=GUESTS, seed=1, shutdown_delay=0.05) as sim:
        yield sim


@pytest.fixture
async def conn(node: SimNode) -> AsyncIterator[aiovirt.Connection]:
    """A read-write connection to ``node`` through xend and xenstore, without the hypervisor."""
    ep = node.endpoints
    uri = f"xen:///?xend=unix:{ep['xend_unix']}&xenstore={ep['xenstore']}&hypervisor=none"
    async with aiovirt.open(uri) as connection:
        assert connection.hypervisor is None
        yield connection


async def wait_until(cond: Callable[[], bool], limit: float = 5.0) -> None:
    """Return once ``cond()`` holds; fail the test if it does not within ``limit`` s."""
    async with asyncio.timeout(limit):
        while not cond():  # noqa: ASYNC110 - the sim's counters have no event: poll them
            await asyncio.sleep(0.002)


async def xend_round_trip(conn: aiovirt.Connection) -> None:
    """Make one unrelated xend request, so requests issued before it have reached the node."""
    assert conn.xend is not None
    await conn.xend.node()


def xend_ops(node: SimNode) -> tuple[int, int]:
    """Return how many detailed lists and single-domain GETs xend has answered so far."""
    stats = node.stats
    return stats["xend.list"], stats["xend.domain"]


async def info_or_error(dom: aiovirt.Domain) -> aiovirt.DomainInfo | VirtError:
    """Return ``dom.info()``, or the VirtError it raised (checked to be this task's last)."""
    try:
        return await dom.info()
    except VirtError as err:
        assert get_last_error() is err
        return err


async def test_batched_answers_equal_one_by_one_answers(
        node: SimNode, conn: aiovirt.Connection) -> None:
    doms = await conn.list_domains()
    assert len(doms) == GUESTS + 1
    lists, singles = xend_ops(node)
    batched = await asyncio.gather(*(d.info() for d in doms))
    assert xend_ops(node) == (lists + 1, singles)
    for dom, info in zip(doms, batched, strict=True):
        alone = await dom.info()
        # cpu_time moves on between the two calls; the rest must be identical
        assert info[:4] == alone[:4], dom
        assert 0 <= info.cpu_time <= alone.cpu_time
    assert xend_ops(node) == (lists + 1, singles + len(doms))


async def test_many_concurrent_infos_cost_one_detailed_list(
        node: SimNode, conn: aiovirt.Connection) -> None:
    doms = await conn.list_domains()
    lists, singles = xend_ops(node)
    for round_ in range(3):
        await asyncio.gather(*(d.info() for d in doms))
        assert xend_ops(node) == (lists + round_ + 1, singles)


async def test_a_few_concurrent_infos_ask_per_domain(
        node: SimNode, conn: aiovirt.Connection) -> None:
    doms = await conn.list_domains()
    lists, singles = xend_ops(node)
    infos = await asyncio.gather(*(d.info() for d in doms[:3]))
    assert len(infos) == 3
    assert xend_ops(node) == (lists, singles + 3)


async def test_a_domain_destroyed_before_the_batch_alone_gets_no_domain(
        node: SimNode, conn: aiovirt.Connection) -> None:
    handled: list[VirtError] = []
    conn.set_error_handler(lambda ctx, err: handled.append(err))
    doms = await conn.list_domains()
    victim = doms[5]
    node.destroy(victim.id)
    lists, _ = xend_ops(node)
    results = await asyncio.gather(*(info_or_error(d) for d in doms))
    assert xend_ops(node)[0] == lists + 1
    errors = [r for r in results if isinstance(r, VirtError)]
    assert len(errors) == 1, errors
    assert errors[0].code == ErrorNumber.NO_DOMAIN
    assert errors[0].dom is victim
    assert results[5] is errors[0]
    assert handled == errors
    # and the next one-by-one call agrees
    with pytest.raises(VirtError) as lone:
        await victim.info()
    assert lone.value.code == ErrorNumber.NO_DOMAIN


async def test_a_failed_list_gives_every_waiter_its_own_error(
        node: SimNode, conn: aiovirt.Connection) -> None:
    handled: list[VirtError] = []
    conn.set_error_handler(lambda ctx, err: handled.append(err))
    doms = await conn.list_domains()
    node.faults.xend.fail_ops.add("list")
    lists, singles = xend_ops(node)
    results = await asyncio.gather(*(info_or_error(d) for d in doms))
    assert xend_ops(node) == (lists + 1, singles)
    assert all(isinstance(r, VirtError) for r in results), results
    errors: list[VirtError] = [r for r in results if isinstance(r, VirtError)]
    assert len({id(e) for e in errors}) == len(doms)  # one error object per waiter
    for err in errors:
        assert err.code == ErrorNumber.GET_FAILED, err
        assert "injected fault" in str(err)
    assert len(handled) == len(doms)
    assert {id(e) for e in handled} == {id(e) for e in errors}
    # the failure does not stick: the next batch is answered
    node.faults.xend.fail_ops.clear()
    infos = await asyncio.gather(*(d.info() for d in doms))
    assert len(infos) == len(doms)


@pytest.mark.parametrize("when", ["before-sending", "in-flight"])
async def test_cancelling_half_the_waiters_still_answers_the_rest(
        node: SimNode, conn: aiovirt.Connection, when: str) -> None:
    doms = await conn.list_domains()
    lists, _ = xend_ops(node)
    if when == "in-flight":
        # long enough that the cancellations below land while xend is still answering
        node.faults.xend.op_delays["list"] = 0.3
    tasks = [asyncio.create_task(d.info()) for d in doms]
    if when == "in-flight":
        await wait_until(lambda: xend_ops(node)[0] == lists + 1)
    else:
        await asyncio.sleep(0)  # the tasks join the forming batch, nothing is sent yet
    assert not any(t.done() for t in tasks)
    for task in tasks[1::2]:  # leaves 11 of 21: still enough for one detailed list
        task.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[1::2]), results
    answered = results[::2]
    assert all(isinstance(r, aiovirt.DomainInfo) for r in answered), answered
    assert xend_ops(node)[0] == lists + 1
    node.faults.xend.op_delays.clear()
    # the batch machinery is still sound for the next callers
    again = await asyncio.gather(*(d.info() for d in doms))
    assert [a[:4] for a in again[::2]] == [a[:4] for a in answered]  # type: ignore[index]


@pytest.fixture
async def threaded_node(sim_dir: str) -> AsyncIterator[SimNode]:
    """The same node, its xend serving connections concurrently (as xend 3.0.4+ does)."""
    async with SimNode(sim_dir, domains=GUESTS, seed=1, shutdown_delay=0.05,
                       error_style="3.0.4") as sim:
        yield sim


async def test_calls_made_while_a_list_is_in_flight_wait_for_the_next_list(
        threaded_node: SimNode) -> None:
    # a round trip beside a stalled request needs a xend that serves two connections at once
    node = threaded_node
    ep = node.endpoints
    uri = f"xen:///?xend=unix:{ep['xend_unix']}&xenstore={ep['xenstore']}&hypervisor=none"
    async with aiovirt.open(uri) as conn:
        await _calls_while_a_list_is_in_flight(node, conn)


async def _calls_while_a_list_is_in_flight(node: SimNode, conn: aiovirt.Connection) -> None:
    assert conn.xend is not None and conn.xend.threaded
    doms = await conn.list_domains()
    lists, _ = xend_ops(node)
    node.faults.xend.stall_ops.add("list")
    first = asyncio.gather(*(info_or_error(d) for d in doms))
    await asyncio.wait_for(node.faults.xend.wait_stalled(1), 10)
    second = asyncio.gather(*(info_or_error(d) for d in doms))
    await xend_round_trip(conn)
    # the second callers neither shared the first request nor sent their own yet
    assert xend_ops(node)[0] == lists + 1
    assert not first.done() and not second.done()
    node.faults.xend.stall_ops.clear()
    node.faults.xend.release_stalls()  # the stalled list's connection drops without a reply
    first_results = await asyncio.wait_for(first, 10)
    # the client resends a GET whose kept-alive connection dropped: then the first callers
    # are answered by that resend (sent after the release), else they all get the drop error
    resent = all(isinstance(r, aiovirt.DomainInfo) for r in first_results)
    assert resent or all(isinstance(r, VirtError) for r in first_results), first_results
    second_results = await asyncio.wait_for(second, 10)
    assert all(isinstance(r, aiovirt.DomainInfo) for r in second_results), second_results
    assert xend_ops(node)[0] == lists + 2 + resent


async def test_closing_the_connection_mid_flight_gives_invalid_conn(
        node: SimNode, conn: aiovirt.Connection) -> None:
    doms = await conn.list_domains()
    lists, _ = xend_ops(node)
    node.faults.xend.stall_ops.add("list")
    pending: Any = asyncio.gather(*(info_or_error(d) for d in doms))
    await asyncio.wait_for(node.faults.xend.wait_stalled(1), 10)
    assert xend_ops(node)[0] == lists + 1
    await conn.close()
    results = await asyncio.wait_for(pending, 5)
    assert all(isinstance(r, VirtError) for r in results), results
    assert {r.code for r in results} == {ErrorNumber.INVALID_CONN}
    assert len({id(r) for r in results}) == len(doms)
    assert all(r.conn is conn for r in results)
