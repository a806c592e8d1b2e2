"""The simulated xend's HTTP behaviour: status lines, headers, bodies, negotiation, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from aiovirt.protocol.sexpr import lookup, parse
from aiovirt.sim import SimNode
from tests.sim.wire import build_request, http, read_reply

CURL_HEADERS = {"User-Agent": "curl/7.88.1", "Accept": "*/*"}
CONFIG = "(vm (name new1) (memory 64) (image (linux (kernel /boot/vmlinuz))))"


async def test_directories_list_as_xend_3_0_3(node: SimNode) -> None:
    assert (await http(node, "GET", "/")).body == b"(ls )"
    for path in ("/xend", "/xend/"):
        assert (await http(node, "GET", path)).body == b"(ls  node domain vnet)"
    assert (await http(node, "GET", "/xend/vnet")).body == b"()"


async def test_reply_headers_are_named_and_ordered_like_xend(node: SimNode) -> None:
    reply = await http(node, "GET", "/xend/domain")
    assert reply.status_line == "HTTP/1.1 200 OK"
    assert [k for k, _ in reply.headers] == [
        "Content-length", "Expires", "Content-type", "Pragma", "Cache-control"]
    assert reply.header("Content-type") == "application/sxp"
    assert reply.header("Expires") == "-1"
    assert reply.body == b"(Domain-0 vm1 vm2 vm3)"


async def test_domain_sxpr_fields_in_3_0_3_order(node: SimNode) -> None:
    sx = parse((await http(node, "GET", "/xend/domain/vm1")).body)
    assert isinstance(sx, list)
    heads = [item[0] for item in sx[1:] if isinstance(item, list)]
    assert heads == [
        "domid", "uuid", "vcpus", "vcpu_avail", "cpu_weight", "memory", "shadow_memory",
        "maxmem", "features", "name", "on_poweroff", "on_reboot", "on_crash", "image",
        "device", "device", "state", "shutdown_reason", "cpu_time", "online_vcpus", "up_time",
        "start_time", "store_mfn", "console_mfn"]
    assert lookup(sx, "domain/features") == ""
    assert lookup(sx, "domain/cpu_weight") == "1.0"
    assert [d[1][0] for d in sx[1:] if isinstance(d, list) and d[0] == "device"] == [
        "vif", "vbd"]
    dom0 = parse((await http(node, "GET", "/xend/domain/Domain-0")).body)
    heads0 = [item[0] for item in dom0[1:] if isinstance(item, list)]
    assert heads0[-4:] == ["state", "shutdown_reason", "cpu_time", "online_vcpus"]
    assert lookup(dom0, "domain/state") == "r-----"


async def test_detail_list_and_op_list_give_every_domain(node: SimNode) -> None:
    detail = parse((await http(node, "GET", "/xend/domain?detail=1")).body)
    assert [lookup(d, "domain/domid") for d in detail] == ["0", "1", "2", "3"]
    listed = await http(node, "POST", "/xend/domain", "op=list")
    assert len(parse(listed.body)) == 4
    assert (await http(node, "GET", "/xend/domain?detail=0")).body.startswith(b"(Domain-0 ")


@pytest.mark.parametrize(("headers", "sxp"), [
    ({}, True),
    ({"User-Agent": "x"}, True),
    ({"Accept": "text/html"}, True),
    (CURL_HEADERS, False),
    ({"User-Agent": "curl", "Accept": "text/html, application/sxp"}, True),
])
async def test_content_negotiation(node: SimNode, headers: dict[str, str], sxp: bool) -> None:
    reply = await http(node, "GET", "/xend/domain", headers=headers)
    assert reply.status == 200
    if sxp:
        assert reply.header("Content-type") == "application/sxp"
        assert reply.body == b"(Domain-0 vm1 vm2 vm3)"
    else:
        assert reply.header("Content-type") == "text/html"
        assert b"<html>" in reply.body and b"vm2" in reply.body


async def test_unknown_domain_and_unknown_child_are_404_text(node: SimNode) -> None:
    for method in ("GET", "POST"):
        reply = await http(node, method, "/xend/domain/nosuch", "op=pause")
        assert reply.status_line == "HTTP/1.1 404 Not found"
        assert reply.header("Content-type") == "text/plain"
        assert reply.body == b"No such domain nosuch"
    reply = await http(node, "GET", "/xend/frob")
    assert (reply.status, reply.body) == (404, b"Not found: frob")


async def test_domain_found_by_id_and_by_name(node: SimNode) -> None:
    by_id = await http(node, "GET", "/xend/domain/2")
    by_name = await http(node, "GET", "/xend/domain/vm2")
    assert lookup(parse(by_id.body), "domain/name") == "vm2"
    assert lookup(parse(by_name.body), "domain/domid") == "2"


async def test_missing_or_repeated_op_is_406(node: SimNode) -> None:
    for body in ("x=1", "op=pause&op=unpause"):
        reply = await http(node, "POST", "/xend/domain/vm1", body)
        assert reply.status_line == "HTTP/1.1 406 Invalid request"
        assert reply.body == b""
    reply = await http(node, "POST", "/xend/domain/vm1", "op=pause", form=False)
    assert reply.status == 406  # no form Content-Type: the body is not read


async def test_unknown_op_is_501_with_its_name(node: SimNode) -> None:
    reply = await http(node, "POST", "/xend/domain/vm1", "op=frob")
    assert reply.status_line == "HTTP/1.1 501 Operation not implemented: frob"
    assert reply.body == b"Operation not implemented: frob"
    assert reply.header("Content-type") == "application/sxp"
    assert (await http(node, "POST", "/xend/node", "op=halt")).status == 501


async def test_unsupported_method_is_501(node: SimNode) -> None:
    reply = await http(node, "DELETE", "/xend/domain/vm1")
    assert reply.status_line == "HTTP/1.1 501 Not implemented"
    assert reply.header("Accept") == "GET,HEAD,POST"
    assert reply.body == b"Request method not supported (DELETE)"


async def test_pause_and_unpause(node: SimNode) -> None:
    reply = await http(node, "POST", "/xend/domain/vm1", "op=pause")
    assert reply.status_line == "HTTP/1.1 200 OK"
    assert reply.body == b"" and reply.header("Content-type") is None
    assert lookup(parse((await http(node, "GET", "/xend/domain/vm1")).body),
                  "domain/state") == "--p---"
    assert (await http(node, "POST", "/xend/domain/vm1?op=unpause", "")).status == 200
    assert node.get("vm1").paused is False


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/xend/domain/0", "op=pause", "(xend.err 'Cannot pause privileged domain 0')"),
    ("/xend/domain/0", "op=unpause", "(xend.err 'Cannot unpause privileged domain 0')"),
    ("/xend/domain/0", "op=destroy", "(xend.err 'Cannot destroy privileged domain 0')"),
    ("/xend/domain/0", "op=shutdown&reason=halt", "(xend.err \"Can't specify Domain-0\")"),
    ("/xend/domain/vm1", "op=shutdown&reason=nap", "(xend.err 'Invalid reason: nap')"),
    ("/xend/domain/vm1", "op=shutdown", "(xend.err \"'reason'\")"),
    ("/xend/domain/vm1", "op=mem_target_set&target=abc",
     "(xend.err \"invalid literal for int() with base 10: 'abc'\")"),
    ("/xend/domain/vm1", "op=mem_target_set&target=0", "(xend.err 'Invalid memory size')"),
    ("/xend/domain/vm1", "op=maxmem_set", "(xend.err 'Missing parameter: memory')"),
    ("/xend/domain/vm1", "op=rename&name=vm2",
     "(xend.err \"VM name 'vm2' already in use by domain 2\")"),
])
async def test_failing_sync_ops_are_500_request_failed(
        node: SimNode, path: str, body: str, message: str) -> None:
    reply = await http(node, "POST", path, body)
    op = body.split("&")[0].split("=")[1]
    assert reply.status_line == f"HTTP/1.1 500 Request failed: {op}"
    assert reply.header("Content-type") == "application/sxp"
    assert reply.text == message


async def test_error_style_3_0_2_answers_200_with_xend_err(short_dir: Path) -> None:
    async with SimNode(short_dir, domains=1, error_style="3.0.2") as sim:
        reply = await http(sim, "POST", "/xend/domain/0", "op=pause")
        assert reply.status == 200
        assert reply.text == "(xend.err 'Cannot pause privileged domain 0')"
        reply = await http(sim, "POST", "/xend/domain/0", "op=destroy")
        assert reply.status == 202


async def test_error_style_3_0_4_names_missing_domains_differently(short_dir: Path) -> None:
    async with SimNode(short_dir, domains=1, error_style="3.0.4") as sim:
        reply = await http(sim, "GET", "/xend/domain/nosuch")
        assert (reply.status, reply.text) == (404, "No domain named 'nosuch'.")


async def test_shutdown_is_202_with_location(node: SimNode) -> None:
    reply = await http(node, "POST", "/xend/domain/vm1", "op=shutdown&reason=halt")
    assert reply.status_line == "HTTP/1.1 202 Accepted"
    assert reply.header("Content-length") == "0"
    assert reply.header("Location") == "http://localhost:8000/xend/domain/vm1/.."
    await node.wait_for(lambda: node.find("vm1") is None, 2)


async def test_create_answers_201_created_with_unmerged_sxpr(node: SimNode) -> None:
    config = CONFIG.replace(" ", "%20")  # as libvirt encodes it
    reply = await http(node, "POST", "/xend/domain/", f"op=create&config={config}")
    assert reply.status_line == "HTTP/1.1 201 created"
    assert reply.header("Location") == "http://localhost:8000/xend/domain/new1"
    sx = parse(reply.body)
    assert lookup(sx, "domain/state") == "??????"
    assert b"(state '??????')" in reply.body
    assert lookup(sx, "domain/cpu_time") is None
    assert node.get("new1").paused
    for op in ("wait_for_devices", "unpause"):
        assert (await http(node, "POST", "/xend/domain/new1", f"op={op}")).status < 300
    reply = await http(node, "POST", "/xend/domain", f"op=create&config={config}")
    assert reply.status_line == "HTTP/1.1 500 Request failed: create"
    assert "already in use" in reply.text


async def test_save_and_restore_are_thread_ops(node: SimNode, short_dir: Path) -> None:
    target = short_dir / "vm2.save"
    reply = await http(node, "POST", "/xend/domain/vm2", f"op=save&file={target}")
    assert (reply.status, reply.body) == (202, b"")
    assert target.exists() and node.find("vm2") is None
    reply = await http(node, "POST", "/xend/domain", f"op=restore&file={target}")
    assert reply.status_line == "HTTP/1.1 201 Created"
    assert reply.body == b""
    assert reply.header("Location") == "http://localhost:8000/xend/domain/vm2"
    assert node.get("vm2").domid == 4
    bad = await http(node, "POST", "/xend/domain/vm3", "op=save&file=/nonexistent/dir/x")
    assert bad.status == 202 and bad.text.startswith("(xend.err ")
    missing = await http(node, "POST", "/xend/domain", "op=restore&file=/nonexistent")
    assert missing.status == 200
    assert missing.text.startswith("(xend.err \"can't read guest state file /nonexistent")


async def test_memory_ops(node: SimNode) -> None:
    reply = await http(node, "POST", "/xend/domain/vm1", "op=maxmem_set&memory=2048")
    assert (reply.status, reply.body) == (200, b"0")
    reply = await http(node, "POST", "/xend/domain/vm1", "op=mem_target_set&target=1024")
    assert (reply.status, reply.body) == (200, b"")
    sx = parse((await http(node, "GET", "/xend/domain/vm1")).body)
    assert (lookup(sx, "domain/memory"), lookup(sx, "domain/maxmem")) == ("1024", "2048")
    assert node.db.read("/local/domain/1/memory/target") == b"1048576"


async def test_vcpuinfo_by_get_and_other_queries(node: SimNode) -> None:
    sx = parse((await http(node, "GET", "/xend/domain/Domain-0?op=vcpuinfo")).body)
    assert lookup(sx, "domain/vcpu_count") == "2"
    vcpus = [v for v in sx[1:] if isinstance(v, list) and v[0] == "vcpu"]
    assert len(vcpus) == 2 and len(lookup_list_tail(vcpus[0], "cpumap")) == 32
    credit = await http(node, "POST", "/xend/domain/vm1", "op=domain_sched_credit_get")
    assert credit.body == b"\"{'cap': 0, 'weight': 256}\""
    devices = parse((await http(node, "POST", "/xend/domain/vm1", "op=devices&type=vbd")).body)
    assert devices[0][0] == "2049"


def lookup_list_tail(item: Sequence[object], key: str) -> list[object]:
    """Return the list value of ``(key (a b c))`` inside ``item``."""
    for child in item[1:]:
        if isinstance(child, list) and child and child[0] == key:
            value = child[1]
            assert isinstance(value, list)
            return value
    raise AssertionError(f"no {key} in {item}")


async def test_node_resource(node: SimNode) -> None:
    info = parse((await http(node, "GET", "/xend/node/")).body)
    assert lookup(info, "node/xen_major") == "3"
    assert lookup(info, "node/xend_config_format") == "2"
    assert (await http(node, "POST", "/xend/node", "op=shutdown")).body == b"0"
    dmesg = await http(node, "GET", "/xend/node/dmesg")
    assert dmesg.header("Content-type") == "text/plain" and b"(XEN)" in dmesg.body


async def test_oversized_body_is_413_and_closed(node: SimNode) -> None:
    reply = await http(node, "POST", "/xend/domain", "op=create&config=" + "x" * 10001)
    assert reply.status_line == "HTTP/1.1 413 Request entity too large"


async def test_head_has_no_body(node: SimNode) -> None:
    reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    try:
        writer.write(build_request("HEAD", "/xend/domain"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-length" not in head
    finally:
        writer.close()


async def test_keep_alive_serves_many_requests_on_one_connection(node: SimNode) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.xend_port)
    try:
        for _ in range(3):
            writer.write(build_request("GET", "/xend/domain",
                                       headers={"Connection": "keep-alive"}))
            reply = await asyncio.wait_for(read_reply(reader), 5)
            assert reply is not None and reply.body == b"(Domain-0 vm1 vm2 vm3)"
            assert reply.header("Connection") == "keep-alive"
    finally:
        writer.close()


async def test_big_detail_list_is_whole(short_dir: Path) -> None:
    async with SimNode(short_dir, domains=300, seed=1) as sim:
        reply = await http(sim, "GET", "/xend/domain?detail=1", tcp=True)
        assert int(reply.header("Content-length") or 0) == len(reply.body) > 100_000
        assert len(parse(reply.body)) == 301
