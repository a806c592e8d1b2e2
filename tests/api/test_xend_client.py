"""The xend backend against every xend error convention (3.0.0 to 4.4) and its transport."""

from __future__ import annotations

import asyncio
import os

import pytest

from aiovirt.backends.xend import XendClient
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol import sexpr
from tests.api.xend_versions import fake_xend

VERSIONS = ["3.0.0", "3.0.2", "3.0.3", "3.0.4", "3.1", "4.4"]


@pytest.fixture
def sock(short_dir: str) -> str:
    return os.path.join(short_dir, "xend-socket")


@pytest.mark.parametrize("version", VERSIONS)
async def test_unknown_domain_is_no_domain_in_every_version(sock: str, version: str) -> None:
    async with fake_xend(sock, version), XendClient("unix:" + sock) as xend:
        with pytest.raises(VirtError) as info:
            await xend.domain("nosuch")
        assert info.value.code == ErrorNumber.NO_DOMAIN
        assert "nosuch" in str(info.value) and sock in str(info.value)
        with pytest.raises(VirtError) as info:
            await xend.pause("nosuch")
        assert info.value.code == ErrorNumber.NO_DOMAIN


@pytest.mark.parametrize("version", VERSIONS)
async def test_failed_op_keeps_xends_message_in_every_version(sock: str, version: str) -> None:
    async with fake_xend(sock, version), XendClient("unix:" + sock) as xend:
        with pytest.raises(VirtError) as info:
            await xend.pause(0)
        err = info.value
        assert err.code == ErrorNumber.POST_FAILED
        assert "Cannot pause privileged domain 0" in str(err)
        assert "op=pause" in str(err) and sock in str(err)


@pytest.mark.parametrize("version", ["3.0.2", "3.0.3", "4.4"])
async def test_thread_ops_failing_with_200_or_202_are_errors(sock: str, version: str) -> None:
    async with fake_xend(sock, version), XendClient("unix:" + sock) as xend:
        with pytest.raises(VirtError) as info:
            await xend.save("vm1", "/nonexistent/dir/f")
        assert info.value.code == ErrorNumber.POST_FAILED
        assert "Failed to save domain" in str(info.value)
        with pytest.raises(VirtError) as info:
            await xend.restore("/nope")
        assert "can't read guest state file /nope" in str(info.value)


async def test_xend_answers_in_sexpr_with_keep_alive_and_form_bodies(sock: str) -> None:
    async with fake_xend(sock) as fake, XendClient("unix:" + sock, limit=4) as xend:
        names = await xend.list_domain_names()
        assert names == ["Domain-0", "vm1"]
        details = await xend.list_domains_detail()
        assert [sexpr.lookup(d, "domain/name") for d in details] == ["Domain-0", "vm1"]
        # the fake shows no xend_config_format: a serial xend, one connection at a time
        assert not xend.threaded and xend.capacity == 1
        before = len(fake.requests)
        await asyncio.gather(*(xend.domain("vm1") for _ in range(40)))
        await xend.unpause("vm1")
        # No User-Agent (xend would render HTML), SXP asked for.
        for request in fake.requests:
            assert "User-Agent" not in request.headers
            assert "application/sxp" in request.headers["Accept"]
        # keep-alive while others wait for the connection, close at the end of the burst
        burst = [r.headers["Connection"].lower() for r in fake.requests[before:before + 40]]
        assert burst == ["keep-alive"] * 39 + ["close"]
        assert fake.requests[-1].headers["Connection"].lower() == "close"
        post = fake.requests[-1]
        assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"
        # the burst of 40 went over one connection, and nothing is held once it is done
        assert len(fake.transports) <= 4
        assert xend.open_connections == 0


async def test_bodies_of_any_size_are_read_whole(sock: str) -> None:
    async with fake_xend(sock) as fake, XendClient("unix:" + sock) as xend:
        items = " ".join(f"(item{i} {'x' * 50})" for i in range(20000))
        fake.big_body = f"(big {items})".encode()
        value = await xend._call("GET", "/xend/big")
        assert isinstance(value, list) and len(value) == 20001


async def test_unknown_op_is_post_failed_with_status(sock: str) -> None:
    async with fake_xend(sock) as _fake, XendClient("unix:" + sock) as xend:
        with pytest.raises(VirtError) as info:
            await xend.domain_op("vm1", "frobnicate")
        assert info.value.code == ErrorNumber.POST_FAILED
        assert info.value.int1 == 501


async def test_unreachable_xend_names_the_endpoint(short_dir: str) -> None:
    path = os.path.join(short_dir, "nothing-here")
    with pytest.raises(VirtError) as info:
        await XendClient.open("unix:" + path)
    assert info.value.code == ErrorNumber.NO_CONNECT
    assert path in str(info.value)
    with pytest.raises(VirtError) as info:
        await XendClient.open("http://127.0.0.1:9/")
    assert info.value.code == ErrorNumber.NO_CONNECT
    assert "127.0.0.1:9" in str(info.value)


async def test_stalled_reply_times_out_and_client_stays_usable(sock: str) -> None:
    async with fake_xend(sock), XendClient("unix:" + sock, timeout=0.3) as xend:
        with pytest.raises(VirtError) as info:
            await xend.domain_op("vm1", "stall")
        assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
        assert "op=stall" in str(info.value)
        assert await xend.list_domain_names() == ["Domain-0", "vm1"]


async def test_cancelled_request_leaves_client_usable(sock: str) -> None:
    async with fake_xend(sock), XendClient("unix:" + sock, limit=1) as xend:
        task = asyncio.create_task(xend.domain_op("vm1", "stall"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The only pool slot was given back.
        assert await asyncio.wait_for(xend.list_domain_names(), 5) == ["Domain-0", "vm1"]


async def test_closed_client_refuses_requests(sock: str) -> None:
    async with fake_xend(sock):
        xend = XendClient("unix:" + sock)
        await xend.close()
        with pytest.raises(VirtError) as info:
            await xend.list_domain_names()
        assert info.value.code == ErrorNumber.INVALID_CONN
