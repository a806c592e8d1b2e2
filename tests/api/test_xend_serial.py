"""The xend route against a xend that serves one connection at a time (3.0.0-3.0.3).

xend 3.0.3 serves a connection inline for as long as it is kept alive; the next connection
waits unanswered until then. The simulated node's xend does the same by default, so these tests
hold the client to it: concurrent calls queue for one connection, nothing is held once the
burst is done (other clients of the node are answered at once), and against a xend that serves
connections concurrently (3.0.4+, which says so in its node record) more connections are used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

import aiovirt
from aiovirt import ErrorNumber, VirtError
from aiovirt.backends.xend import XendClient
from aiovirt.sim.node import SimNode
from tests.api.conftest import uri_for
from tests.support.interop import require_tool

CALLS = 50


def xend_only(node: SimNode, **extra: str) -> str:
    return uri_for(node, xenstore="none", hypervisor="none", **extra)


@pytest.fixture
async def node(short_dir: str) -> AsyncIterator[SimNode]:
    """A node with eight guests and xend 3.0.3's serving (the simulator's default)."""
    async with SimNode(short_dir, domains=8, seed=5) as sim:
        assert sim.xend_serving is None
        yield sim


async def fifty_calls(conn: aiovirt.Connection) -> list[object]:
    """Make 50 concurrent API calls of every kind the xend route serves."""
    doms = await conn.list_domains()
    calls = []
    for i in range(CALLS):
        dom = doms[i % len(doms)]
        kind = i % 5
        if kind == 0:
            calls.append(dom.info())
        elif kind == 1:
            calls.append(dom.xml_desc())
        elif kind == 2:
            calls.append(conn.lookup_by_name(dom.name))
        elif kind == 3:
            calls.append(dom.max_memory())
        else:
            calls.append(conn.node_info())
    return await asyncio.gather(*calls)


async def curl_answers(node: SimNode, seconds: float) -> float:
    """Ask the node's xend for its domain list with curl; return how long the answer took."""
    curl = require_tool("curl")
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        curl, "-sS", "--max-time", str(seconds), "--unix-socket", node.xend_unix_path,
        "-H", "Accept: application/sxp", "http://localhost/xend/domain",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, f"curl got no answer within {seconds} s: {err.decode()}"
    assert out.startswith(b"(Domain-0 ")
    return elapsed


async def test_fifty_concurrent_calls_complete_against_a_serial_xend(node: SimNode) -> None:
    async with aiovirt.open(xend_only(node)) as conn:
        assert conn.xend is not None and not conn.xend.threaded
        results = await asyncio.wait_for(fifty_calls(conn), 20)
        assert len(results) == CALLS
        assert all(r is not None for r in results)
        # one connection at a time, and none left open once the burst is done
        assert conn.xend.open_connections == 0


async def test_other_clients_are_answered_while_a_connection_is_open_and_idle(
        node: SimNode) -> None:
    async with aiovirt.open(xend_only(node)) as conn:
        await fifty_calls(conn)
        assert await curl_answers(node, 1.0) < 1.0
        dom = await conn.lookup_by_name("vm1")
        await dom.info()
        assert await curl_answers(node, 1.0) < 1.0


async def test_a_full_connection_leaves_the_serial_xend_free_too(node: SimNode) -> None:
    async with aiovirt.open(node.uri) as conn:
        await asyncio.gather(*(d.xml_desc() for d in await conn.list_domains()))
        assert await curl_answers(node, 1.0) < 1.0


async def test_a_xend_held_by_another_client_times_out_saying_why(node: SimNode) -> None:
    reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    try:  # another client keeps its connection alive: 3.0.3 serves no one else meanwhile
        writer.write(b"GET /xend/domain HTTP/1.1\r\nConnection: keep-alive\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        async with XendClient("unix:" + node.xend_unix_path, timeout=0.3) as xend:
            with pytest.raises(VirtError) as info:
                await xend.list_domain_names()
            assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
            assert "one connection at a time" in str(info.value)
    finally:
        writer.close()


async def test_calls_waiting_for_the_connection_can_be_cancelled(node: SimNode) -> None:
    node.faults.xend.op_delays["domain"] = 0.2
    async with aiovirt.open(xend_only(node)) as conn:
        doms = await conn.list_domains()
        tasks = [asyncio.create_task(d.xml_desc()) for d in doms]
        await asyncio.sleep(0.05)  # the first is in flight, the others queue behind it
        for task in tasks[1:]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[0], str)
        assert all(isinstance(r, asyncio.CancelledError) for r in results[1:])
        node.faults.xend.clear()
        assert len(await asyncio.wait_for(fifty_calls(conn), 20)) == CALLS


@pytest.mark.parametrize("style", ["3.0.4", "3.4"])
async def test_a_threaded_xend_gets_more_connections_because_it_says_so(
        short_dir: str, style: str) -> None:
    async with SimNode(short_dir, domains=8, seed=5, error_style=style) as sim:
        async with aiovirt.open(xend_only(sim, xend_connections="4")) as conn:
            xend = conn.xend
            assert xend is not None and xend.threaded and xend.capacity == 4
            sim.faults.xend.op_delays["domain"] = 0.05
            await asyncio.wait_for(fifty_calls(conn), 20)
            assert 1 < xend.connections <= 4 + 1  # the probe's, then up to four at once
            # idle kept-alive connections do not hold a threaded xend's other clients back
            assert xend.open_connections >= 1
            assert await curl_answers(sim, 1.0) < 1.0


async def test_a_serial_xend_gets_one_connection_whatever_the_uri_says(node: SimNode) -> None:
    async with aiovirt.open(xend_only(node, xend_connections="16")) as conn:
        assert conn.xend is not None and conn.xend.capacity == 1
        await asyncio.wait_for(fifty_calls(conn), 20)
        assert conn.xend.open_connections == 0


async def test_many_connections_at_once_wait_for_the_listen_backlog(short_dir: str) -> None:
    # xend's backlog is 5: opening 32 connections at once overflows it, and a unix socket's
    # connect then fails with EAGAIN (which asyncio alone would take for connected)
    async with SimNode(short_dir, domains=40, seed=5, error_style="3.0.4") as sim:
        async with await XendClient.open("unix:" + sim.xend_unix_path, limit=32) as xend:
            assert xend.threaded
            names = [f"vm{i}" for i in range(1, 41)] * 5
            results = await asyncio.wait_for(
                asyncio.gather(*(xend.domain(n) for n in names), return_exceptions=True), 20)
            assert [r for r in results if isinstance(r, BaseException)] == []
            assert xend.connections <= 33
