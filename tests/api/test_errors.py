"""Errors from real failing calls: codes, handlers, per-connection and per-task last errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aiovirt
from aiovirt import ErrorNumber, VirtError
from aiovirt.sim.node import SimNode


@pytest.fixture(autouse=True)
def _no_global_handler() -> Any:
    aiovirt.set_error_handler(None)
    yield
    aiovirt.set_error_handler(None)


async def test_connection_handler_sees_the_error_before_it_is_raised(node: SimNode) -> None:
    seen: list[tuple[Any, VirtError]] = []
    async with aiovirt.open(node.uri) as conn:
        conn.set_error_handler(lambda ctx, err: seen.append((ctx, err)), "ctx")
        with pytest.raises(VirtError) as info:
            await conn.lookup_by_name("Does_not_exist")
        assert seen == [("ctx", info.value)]
        assert conn.last_error is info.value
        assert aiovirt.get_last_error() is info.value
        assert info.value.conn is conn
        assert info.value.get_error_code() == ErrorNumber.NO_DOMAIN == 42
        conn.reset_last_error()
        assert conn.last_error is None


async def test_async_handler_is_awaited_before_the_call_raises(node: SimNode) -> None:
    done = []

    async def handler(ctx: Any, err: VirtError) -> None:
        await asyncio.sleep(0.01)
        done.append(err.code)

    async with aiovirt.open(node.uri) as conn:
        conn.set_error_handler(handler)
        with pytest.raises(VirtError):
            await conn.lookup_by_id(999)
        assert done == [ErrorNumber.NO_DOMAIN]


async def test_global_handler_when_the_connection_has_none(node: SimNode) -> None:
    seen: list[VirtError] = []
    aiovirt.set_error_handler(lambda ctx, err: seen.append(err))
    async with aiovirt.open_read_only(node.uri) as conn:
        dom = await conn.lookup_by_name("vm1")
        with pytest.raises(VirtError) as info:
            await dom.suspend()
        assert seen == [info.value]
        assert info.value.code == ErrorNumber.OPERATION_DENIED
        assert info.value.dom is dom and info.value.conn is conn
        conn.set_error_handler(lambda ctx, err: None)
        conn.set_error_handler(None)  # back to the global one
        with pytest.raises(VirtError):
            await dom.destroy()
        assert len(seen) == 2


async def test_a_failing_handler_never_replaces_the_error(node: SimNode) -> None:
    def broken(ctx: Any, err: VirtError) -> None:
        raise RuntimeError("handler bug")

    async with aiovirt.open(node.uri) as conn:
        conn.set_error_handler(broken)
        with pytest.raises(VirtError) as info:
            await conn.lookup_by_name("nope")
        assert info.value.code == ErrorNumber.NO_DOMAIN


async def test_each_task_sees_only_its_own_last_error(node: SimNode) -> None:
    async with aiovirt.open(node.uri) as conn:
        conn.set_error_handler(lambda ctx, err: None)
        gate = asyncio.Event()

        async def fail_by_name() -> VirtError | None:
            with pytest.raises(VirtError):
                await conn.lookup_by_name("missing-one")
            await gate.wait()
            return aiovirt.get_last_error()

        async def fail_by_id() -> VirtError | None:
            with pytest.raises(VirtError):
                await conn.lookup_by_id(4242)
            await gate.wait()
            return aiovirt.get_last_error()

        async def succeed() -> VirtError | None:
            await conn.lookup_by_name("vm1")
            await gate.wait()
            return aiovirt.get_last_error()

        tasks = [asyncio.create_task(f()) for f in (fail_by_name, fail_by_id, succeed)]
        await asyncio.sleep(0.05)
        gate.set()
        by_name, by_id, ok = await asyncio.gather(*tasks)
        assert by_name is not None and "missing-one" in str(by_name)
        assert by_id is not None and "4242" in str(by_id)
        assert ok is None
        assert conn.last_error in (by_name, by_id)


async def test_errors_name_what_failed(node: SimNode) -> None:
    async with aiovirt.open(node.uri) as conn:
        conn.set_error_handler(lambda ctx, err: None)
        dom = await conn.lookup_by_name("vm2")
        with pytest.raises(VirtError) as info:
            await dom.set_memory(-5)
        assert "-5" in str(info.value) and info.value.code == ErrorNumber.INVALID_ARG
        with pytest.raises(VirtError) as info:
            await conn.lookup_by_uuid(12345)  # type: ignore[arg-type]
        assert info.value.code == ErrorNumber.INVALID_ARG and "int" in str(info.value)
