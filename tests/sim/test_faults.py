"""Fault knobs of the simulated node: delayed, failing, dropped and stalled replies."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aiovirt.protocol.xs_wire import XsOp, encode
from aiovirt.sim import SimNode
from aiovirt.sim.faults import XendFaults, XendOp, XsFaults
from tests.sim.wire import RawXs, build_request, http, read_reply


async def test_fail_op_answers_500_for_that_op_only(node: SimNode) -> None:
    node.faults.xend.fail_ops.add("pause")
    reply = await http(node, "POST", "/xend/domain/vm1", "op=pause")
    assert reply.status_line == "HTTP/1.1 500 Request failed: pause"
    assert reply.text == "(xend.err 'injected fault')"
    assert not node.get("vm1").paused  # not performed
    assert (await http(node, "POST", "/xend/domain/vm1", "op=unpause")).status == 200
    node.faults.xend.fail_ops.add("list")
    assert (await http(node, "GET", "/xend/domain")).status == 500
    node.faults.clear()
    assert (await http(node, "GET", "/xend/domain")).status == 200


async def test_delay_holds_the_reply_back(threaded_node: SimNode) -> None:
    node = threaded_node  # a serial xend would hold every other client back too
    node.faults.xend.op_delays["domain"] = 30.0
    slow = asyncio.ensure_future(http(node, "GET", "/xend/domain/vm1"))
    fast = await http(node, "GET", "/xend/domain")  # other ops are not delayed
    assert fast.status == 200
    done, _ = await asyncio.wait({slow}, timeout=0.2)
    assert not done
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_drop_after_k_requests_closes_the_connection(node: SimNode) -> None:
    node.faults.xend.drop_after = 2
    reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    try:
        keep = {"Connection": "keep-alive"}
        for _ in range(2):
            writer.write(build_request("GET", "/xend/domain", headers=keep))
            assert await asyncio.wait_for(read_reply(reader), 5) is not None
        writer.write(build_request("GET", "/xend/domain", headers=keep))
        assert await asyncio.wait_for(read_reply(reader), 5) is None
    finally:
        writer.close()
    assert node.stats["xend.dropped"] == 1


async def test_stalled_reply_never_comes_until_released(threaded_node: SimNode) -> None:
    node = threaded_node
    node.faults.xend.stall_ops.add("destroy")
    reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    try:
        writer.write(build_request("POST", "/xend/domain/vm1", "op=destroy"))
        pending = asyncio.ensure_future(read_reply(reader))
        await asyncio.wait_for(node.faults.xend.wait_stalled(1), 5)  # it arrived, is held
        assert not pending.done()
        assert (await http(node, "GET", "/xend/domain/vm1")).status == 200  # others go on
        node.faults.xend.release_stalls()
        assert await asyncio.wait_for(pending, 5) is None  # dropped without a reply
        assert node.faults.xend.stalled == 0
    finally:
        writer.close()
    assert node.find("vm1") is not None


async def test_stalled_request_does_not_block_close(short_dir: Path) -> None:
    async with SimNode(short_dir, domains=1) as sim:
        sim.faults.xend.stall_ops.add("*")
        reader, writer = await asyncio.open_unix_connection(sim.xend_unix_path)
        writer.write(build_request("GET", "/xend/domain"))
        await asyncio.wait_for(sim.faults.xend.wait_stalled(1), 5)  # close while it is held
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


async def test_xenstore_faults_reach_the_daemon(node: SimNode) -> None:
    xs_faults = node.faults.xenstore
    assert xs_faults is not None
    xs_faults.drop_after = 1
    xs = await RawXs.open(node.xenstore_path)
    try:
        reply = await xs.call(XsOp.READ, "/local/domain/1/name")
        assert reply.payload == b"vm1"
        xs.req_id += 1
        xs.writer.write(encode(XsOp.READ, xs.req_id, 0, b"/local/domain/1/name\0"))
        assert await asyncio.wait_for(xs.next(), 5) is None
    finally:
        await xs.close()
    node.faults.clear()
    assert xs_faults.drop_after is None


def test_fault_ops_are_checked_when_the_knobs_are_built() -> None:
    with pytest.raises(ValueError, match="unknown xend op 'puase'"):
        XendFaults(fail_ops={"puase"})  # type: ignore[arg-type]  # a caller's typo
    with pytest.raises(ValueError, match="unknown xenstore op 'REDA'"):
        XsFaults(stall_ops={"REDA"})  # type: ignore[arg-type]
    xend = XendFaults(fail_ops={"pause"}, op_delays={"list": 1.5})  # type: ignore[arg-type]
    assert xend.fail_ops == {XendOp.PAUSE} and xend.fails("pause") and not xend.fails("list")
    assert xend.delay_for("list") == 1.5 and xend.delay_for("domain") == 0.0
    assert XsFaults(stall_ops={2}).stall_ops == {XsOp.READ}  # type: ignore[arg-type]


async def test_xenstore_faults_set_before_start_reach_the_daemon(short_dir: Path) -> None:
    sim = SimNode(short_dir, domains=1)
    sim.faults.xenstore.drop_after = 0
    async with sim:
        xs = await RawXs.open(sim.xenstore_path)
        try:
            xs.writer.write(encode(XsOp.READ, 1, 0, b"/local/domain/1/name\0"))
            assert await asyncio.wait_for(xs.next(), 5) is None  # dropped unanswered
        finally:
            await xs.close()
