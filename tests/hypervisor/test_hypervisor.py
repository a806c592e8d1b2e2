"""The hypervisor backend: thread bound, coalescing, freshness, cancellation, errors, shutdown."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import pytest

import aiovirt.errors
from aiovirt.backends.hypervisor import HypercallExecutor, Hypervisor
from aiovirt.backends.privcmd_sim import SimPrivcmdDriver
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError, reporting
from aiovirt.protocol.privcmd import MAX_BATCH, PrivcmdOp
from aiovirt.protocol.states import DOMINF_PAUSED
from aiovirt.sim.privcmd import PrivcmdServer
from tests.support.threads import threads_doing_our_work

from .conftest import GatedDriver, MemoryHypervisor


class Front:
    """A public seam the way ``Connection`` is one: reports errors against its own slot."""

    def __init__(self, hv: Hypervisor) -> None:
        self.hv = hv
        self._last_error: VirtError | None = None
        self._error_handler = (lambda _ctx, _err: None, None)

    def _error_sink(self) -> Front:
        return self

    @reporting
    async def info(self, domid: int) -> object:
        return await self.hv.domain_info(domid)

    @reporting
    async def pause(self, domid: int) -> None:
        await self.hv.pause(domid)


async def test_operations_reach_the_hypervisor(hv: Hypervisor, model: MemoryHypervisor) -> None:
    assert await hv.version() == 3_000_000
    assert (await hv.physinfo()).nr_cpus == 2
    await hv.pause(1)
    assert (await hv.domain_info(1)).flags & DOMINF_PAUSED  # type: ignore[union-attr]
    await hv.unpause(1)
    await hv.set_max_memory(2, 262144)
    assert model.domains[2].max_pages == 65536
    await hv.destroy(3)
    assert [r.domid for r in await hv.list_domains()] == [0, 1, 2]


async def test_vanished_domain_gives_none_never_the_next_one(
    hv: Hypervisor, model: MemoryHypervisor
) -> None:
    del model.domains[2]
    assert await hv.domain_info(2) is None  # lone request: targeted call
    results = await asyncio.gather(*(hv.domain_info(i) for i in (1, 2, 3)))  # one batch
    assert [r.domid if r else None for r in results] == [1, None, 3]


async def test_thousand_concurrent_infos_cost_a_few_batch_calls(sockdir: Path) -> None:
    model = MemoryHypervisor(999)
    async with PrivcmdServer(model, sockdir / "privcmd") as server, \
            await Hypervisor.open(f"sim:{server.path}") as hv:
        results = await asyncio.gather(*(hv.domain_info(i) for i in range(1000)))
        assert [r.domid for r in results if r is not None] == list(range(1000))
        assert server.stats[PrivcmdOp.GETDOMAININFOLIST] <= 3


async def test_gathered_info_futures_answer_each_request(
    hv: Hypervisor, model: MemoryHypervisor
) -> None:
    futures = [hv.request_info(i) for i in range(5)]
    futures[1].cancel()  # leaves the batch to the others
    everything = hv.request_info(None)
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert [r.domid if r else r for r in results[2:]] == [2, 3, None]  # type: ignore[union-attr]
    assert [r.domid for r in await everything] == sorted(model.domains)
    bad = hv.request_info(-5)
    with pytest.raises(VirtError):
        await bad


async def test_list_domains_pages_through_more_than_one_batch(sockdir: Path) -> None:
    model = MemoryHypervisor(MAX_BATCH + 10)
    async with PrivcmdServer(model, sockdir / "privcmd") as server, \
            await Hypervisor.open(f"sim:{server.path}") as hv:
        records = await hv.list_domains()
        assert [r.domid for r in records] == list(range(MAX_BATCH + 11))
        assert server.stats[PrivcmdOp.GETDOMAININFOLIST] == 2


async def test_answer_is_never_older_than_the_request(
    gated: tuple[Hypervisor, GatedDriver], model: MemoryHypervisor
) -> None:
    hv, driver = gated
    driver.hold = True
    early = asyncio.create_task(hv.domain_info(1))
    await driver.wait_fetched()  # the first batch has read the state and is still in flight
    model.hv_pause(1)
    driver.fetched.clear()
    late = asyncio.create_task(hv.domain_info(1))
    await asyncio.sleep(0)
    assert not late.done()
    driver.release.set()
    before, after = await asyncio.wait_for(asyncio.gather(early, late), 10)
    assert before is not None and not before.flags & DOMINF_PAUSED
    assert after is not None and after.flags & DOMINF_PAUSED
    assert driver.calls == 2


async def test_cancelled_waiter_does_not_cancel_the_batch(
    gated: tuple[Hypervisor, GatedDriver],
) -> None:
    hv, driver = gated
    driver.hold = True
    tasks = [asyncio.create_task(hv.domain_info(i)) for i in range(4)]
    await driver.wait_fetched()
    tasks[0].cancel()
    tasks[2].cancel()
    driver.release.set()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert isinstance(done[0], asyncio.CancelledError)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [done[1].domid, done[3].domid] == [1, 3]  # type: ignore[union-attr]
    assert driver.calls == 1


async def test_batch_whose_waiters_all_left_is_not_run(
    gated: tuple[Hypervisor, GatedDriver],
) -> None:
    hv, driver = gated
    tasks = [asyncio.create_task(hv.domain_info(i)) for i in range(3)]
    await asyncio.sleep(0)  # every task has joined the forming batch
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await hv.domain_info(1) is not None
    assert driver.calls == 1


async def test_failed_batch_fails_only_the_requests_it_served(
    gated: tuple[Hypervisor, GatedDriver], model: MemoryHypervisor
) -> None:
    hv, driver = gated
    driver.hold = True
    model.fail_info = errno.EIO
    first = [asyncio.create_task(hv.domain_info(i)) for i in (1, 2)]
    await driver.wait_fetched()
    model.fail_info = None
    second = asyncio.create_task(hv.domain_info(3))
    await asyncio.sleep(0)
    driver.release.set()
    errors = await asyncio.wait_for(asyncio.gather(*first, return_exceptions=True), 10)
    record = await asyncio.wait_for(second, 10)
    assert record is not None and record.domid == 3
    for domid, err in zip((1, 2), errors, strict=True):
        assert isinstance(err, VirtError)
        assert err.code == ErrorNumber.XEN_CALL and err.domain == ErrorDomain.XEN
        assert "GETDOMAININFOLIST" in str(err) and f"domain {domid}" in str(err)
        assert err.int1 == errno.EIO
    assert errors[0] is not errors[1]


async def test_worker_thread_errors_reach_the_calling_tasks_last_error(
    gated: tuple[Hypervisor, GatedDriver], model: MemoryHypervisor
) -> None:
    hv, _driver = gated
    front = Front(hv)
    model.fail_info = errno.EIO

    async def ask(domid: int) -> VirtError | None:
        aiovirt.errors.reset_last_error()
        with pytest.raises(VirtError):
            await front.info(domid)
        return aiovirt.errors.get_last_error()

    async def bystander() -> VirtError | None:
        await asyncio.sleep(0)
        return aiovirt.errors.get_last_error()

    seen = await asyncio.gather(ask(1), ask(2), bystander())
    assert seen[0] is not None and "domain 1" in str(seen[0])
    assert seen[1] is not None and "domain 2" in str(seen[1])
    assert seen[2] is None
    assert front._last_error is not None
    model.fail_info = None

    async def pause_missing() -> VirtError | None:
        with pytest.raises(VirtError):
            await front.pause(77)
        return aiovirt.errors.get_last_error()

    err = await asyncio.create_task(pause_missing())
    assert err is not None and err.code == ErrorNumber.XEN_CALL
    assert "PAUSEDOMAIN for domain 77" in str(err) and err.int1 == errno.ESRCH
    assert aiovirt.errors.get_last_error() is None  # this task never failed


async def test_never_more_threads_than_the_limit(
    gated: tuple[Hypervisor, GatedDriver],
) -> None:
    hv, driver = gated
    driver.delay = 0.02
    await asyncio.gather(*(hv.pause(i % 4) for i in range(24)))
    assert driver.peak == 3
    assert hv.executor.peak == 3


async def test_call_over_its_timeout_fails_and_keeps_its_slot(server: PrivcmdServer) -> None:
    driver = GatedDriver(await asyncio.to_thread(SimPrivcmdDriver.open, server.path))
    driver.delay = 0.3
    hv = Hypervisor(driver, HypercallExecutor(threads=1, timeout=0.05), "slow")
    try:
        with pytest.raises(VirtError) as info:
            await hv.pause(1)
        assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
        assert "PAUSEDOMAIN for domain 1" in str(info.value)
        assert driver.running == 1  # the thread is still in its call
        with pytest.raises(VirtError) as info:
            await hv.pause(2)  # times out while queued behind the first call
        assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
    finally:
        await hv.close()
    assert driver.running == 0 and driver.peak == 1
    assert driver.calls == 1  # the queued call was dropped, never run


async def test_close_answers_accepted_calls_then_refuses_and_joins_threads(
    gated: tuple[Hypervisor, GatedDriver],
) -> None:
    hv, driver = gated
    driver.hold = True
    accepted = asyncio.create_task(hv.domain_info(1))
    await driver.wait_fetched()
    closing = asyncio.create_task(hv.close())
    await asyncio.sleep(0)
    with pytest.raises(VirtError) as info:
        await hv.domain_info(2)
    assert info.value.code == ErrorNumber.OPERATION_INVALID and "closed" in str(info.value)
    driver.release.set()
    record = await asyncio.wait_for(accepted, 10)
    assert record is not None and record.domid == 1
    await asyncio.wait_for(closing, 10)
    assert not threads_doing_our_work()
    for call in (hv.list_domains(), hv.pause(1), hv.version()):
        with pytest.raises(VirtError):
            await call
    await hv.close()  # idempotent


async def test_spec_errors_are_clear(sockdir: Path) -> None:
    with pytest.raises(VirtError) as info:
        await Hypervisor.open("bogus")
    assert info.value.code == ErrorNumber.INVALID_ARG and "bogus" in str(info.value)
    missing = str(sockdir / "privcmd")
    with pytest.raises(VirtError) as info:
        await Hypervisor.open(f"sim:{missing}")
    assert info.value.code == ErrorNumber.NO_XEN and missing in str(info.value)
    assert not threads_doing_our_work()


async def test_domain_id_out_of_range_is_invalid(hv: Hypervisor) -> None:
    for bad in (-1, 0x7FF0, "1"):
        with pytest.raises(VirtError) as info:
            await hv.domain_info(bad)  # type: ignore[arg-type]
        assert info.value.code == ErrorNumber.INVALID_ARG


def test_executor_refuses_a_zero_limit() -> None:
    with pytest.raises(VirtError):
        HypercallExecutor(threads=0)


async def test_executor_runs_in_the_callers_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="none")
    executor = HypercallExecutor(threads=2, timeout=5)
    try:
        var.set("caller")
        assert await executor.run(var.get) == "caller"
        with pytest.raises(ZeroDivisionError):
            await executor.run(lambda: 1 // 0)
        assert await executor.run(time.monotonic) > 0
    finally:
        await executor.close()
    with pytest.raises(RuntimeError):
        await executor.run(time.monotonic)


async def test_cancelled_call_still_queued_never_runs(server: PrivcmdServer) -> None:
    driver = GatedDriver(await asyncio.to_thread(SimPrivcmdDriver.open, server.path))
    driver.delay = 0.1
    hv = Hypervisor(driver, HypercallExecutor(threads=1, timeout=10), "one-thread")
    try:
        running = asyncio.create_task(hv.pause(1))
        queued = asyncio.create_task(hv.pause(2))
        await asyncio.sleep(0)  # both calls are submitted; the one thread takes them in order
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        await running
        await hv.pause(3)  # the slot is free again
    finally:
        await hv.close()
    assert driver.calls == 2


async def test_cancelled_running_call_leaves_the_connection_usable(
    server: PrivcmdServer, model: MemoryHypervisor
) -> None:
    driver = GatedDriver(await asyncio.to_thread(SimPrivcmdDriver.open, server.path))
    driver.delay = 0.05
    hv = Hypervisor(driver, HypercallExecutor(threads=1, timeout=10), "one-thread")
    try:
        running = asyncio.create_task(hv.pause(1))
        assert await asyncio.to_thread(driver.entered.wait, 10)  # the call runs in its thread
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await hv.pause(2)  # the same thread and socket, after the abandoned call finished
        record = await hv.domain_info(1)
    finally:
        await hv.close()
    assert record is not None and record.flags & DOMINF_PAUSED  # the abandoned call completed
    assert model.domains[2].flags & DOMINF_PAUSED
