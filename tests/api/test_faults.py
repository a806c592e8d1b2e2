"""xend faults (500s, stalls, drops) and cancellations: clear errors, connection still usable."""

from __future__ import annotations

import asyncio

import pytest

import aiovirt
from aiovirt import ErrorNumber, VirtError
from aiovirt.sim.node import SimNode
from tests.api.conftest import guests, uri_for
from tests.support.cancellation import cancelled_after


def _xend_uri(node: SimNode, **extra: str) -> str:
    return uri_for(node, xenstore="none", hypervisor="none", **extra)


@pytest.fixture(autouse=True)
def _quiet() -> object:
    aiovirt.set_error_handler(lambda ctx, err: None)
    yield
    aiovirt.set_error_handler(None)


async def test_xend_500_gives_xends_message_then_works_again(node: SimNode) -> None:
    async with aiovirt.open(_xend_uri(node)) as conn:
        dom = await conn.lookup_by_name(guests(node)[0].name)
        node.faults.xend.fail_ops.add("pause")
        with pytest.raises(VirtError) as info:
            await dom.suspend()
        err = info.value
        assert err.code == ErrorNumber.POST_FAILED and err.int1 == 500
        assert "injected fault" in str(err) and "op=pause" in str(err)
        assert node.xend_unix_path in str(err)
        node.faults.xend.fail_ops.add("domain")
        with pytest.raises(VirtError) as info:
            await dom.info()
        assert info.value.code == ErrorNumber.GET_FAILED
        node.faults.xend.clear()
        await dom.suspend()
        assert (await dom.info()).state == aiovirt.DomainState.PAUSED


async def test_stalled_xend_times_out_naming_it_then_works_again(node: SimNode) -> None:
    async with aiovirt.open(_xend_uri(node, timeout="0.5")) as conn:
        dom = await conn.lookup_by_name(guests(node)[0].name)
        node.faults.xend.stall_ops.add("domain")
        with pytest.raises(VirtError) as info:
            await dom.info()
        err = info.value
        assert err.code == ErrorNumber.OPERATION_TIMEOUT
        assert node.xend_unix_path in str(err) and "0.5 s" in str(err)
        node.faults.xend.clear()
        assert (await dom.info()).memory > 0


async def test_dropped_connections_fail_clearly_then_work_again(node: SimNode) -> None:
    async with aiovirt.open(_xend_uri(node)) as conn:
        dom = await conn.lookup_by_name(guests(node)[0].name)
        node.faults.xend.drop_after = 0
        for call in (dom.info(), dom.suspend(), conn.list_domains()):
            with pytest.raises(VirtError) as info:
                await call
            assert info.value.code == ErrorNumber.INTERNAL_ERROR
            assert "closed the connection" in str(info.value)
            assert node.xend_unix_path in str(info.value)
        node.faults.xend.clear()
        assert len(await conn.list_domains()) == len(node.domains)


async def test_cancelled_calls_give_their_pool_slots_back(node: SimNode) -> None:
    async with aiovirt.open(_xend_uri(node, xend_connections="2")) as conn:
        doms = await conn.list_domains()
        node.faults.xend.stall_ops.add("domain")
        tasks = [asyncio.create_task(d.info()) for d in doms]
        # a serial xend (3.0.3): the one connection carries a request that xend holds, the
        # other calls queue for it
        await asyncio.wait_for(node.faults.xend.wait_stalled(1), 10)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        node.faults.xend.clear()
        infos = await asyncio.wait_for(asyncio.gather(*(d.info() for d in doms)), 5)
        assert len(infos) == len(doms)


async def test_cancellation_at_every_point_leaves_the_connection_usable(
        node: SimNode, route: str) -> None:
    from tests.api.conftest import ROUTES

    async with aiovirt.open(uri_for(node, **ROUTES[route])) as conn:
        dom = await conn.lookup_by_name(guests(node)[0].name)
        for steps in range(8):
            await cancelled_after(steps, dom.info())
        assert (await dom.info()).memory == guests(node)[0].current_kib
        assert await conn.num_of_domains() == len(node.domains)


async def test_xend_failure_with_the_hypervisor_still_serving_info(node: SimNode) -> None:
    async with aiovirt.open(node.uri) as conn:
        dom = await conn.lookup_by_name(guests(node)[0].name)
        node.faults.xend.fail_ops.add("*")
        assert (await dom.info()).memory > 0  # the hypervisor answers info()
        with pytest.raises(VirtError) as info:
            await dom.xml_desc()
        assert info.value.code == ErrorNumber.GET_FAILED


@pytest.mark.parametrize("style", ["3.0.2", "3.0.3", "3.0.4", "3.4"])
async def test_every_xend_error_convention_through_the_connection(short_dir: str,
                                                                  style: str) -> None:
    async with SimNode(short_dir, domains=2, seed=1, error_style=style) as sim:
        async with aiovirt.open(_xend_uri(sim)) as conn:
            for call in (conn.lookup_by_name("ghost"), conn.lookup_by_id(77)):
                with pytest.raises(VirtError) as info:
                    await call
                assert info.value.code == ErrorNumber.NO_DOMAIN
            dom0 = await conn.lookup_by_id(0)
            dom = await conn.lookup_by_name("vm1")
            sim.faults.xend.fail_ops.add("pause")
            with pytest.raises(VirtError) as info:
                await dom.suspend()
            assert info.value.code == ErrorNumber.POST_FAILED
            assert "injected fault" in str(info.value)
            sim.faults.xend.clear()
            await dom.suspend()
            await dom.resume()
            assert (await dom0.info()).state == aiovirt.DomainState.RUNNING
