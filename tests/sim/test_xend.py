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
    # xend's unix listener believed it was on port 8080 (HttpServer's default)
    assert reply.header("Location") == "http://localhost:8080/xend/domain/vm1/.."
    reply = await http(node, "POST", "/xend/domain/vm2", "op=shutdown&reason=halt", tcp=True)
    assert reply.header("Location") == f"http://localhost:{node.xend_port}/xend/domain/vm2/.."
    await node.wait_for(lambda: node.find("vm1") is None, 2)


async def test_create_answers_201_created_with_unmerged_sxpr(node: SimNode) -> None:
    config = CONFIG.replace(" ", "%20")  # as libvirt encodes it
    reply = await http(node, "POST", "/xend/domain/", f"op=create&config={config}")
    assert reply.status_line == "HTTP/1.1 201 created"
    assert reply.header("Location") == "http://localhost:8080/xend/domain/new1"
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
    assert reply.header("Location") == "http://localhost:8080/xend/domain/vm2"
    assert node.get("vm2").domid == 4
    bad = await http(node, "POST", "/xend/domain/vm3", "op=save&file=/nonexistent/dir/x")
    assert bad.status == 202 and bad.text.startswith("(xend.err ")
    missing = await http(node, "POST", "/xend/domain", "op=restore&file=/nonexistent")
    assert missing.status == 200
    assert missing.text.startswith("(xend.err \"can't read guest state file /nonexistent")


async def test_memory_ops(node: SimNode) -> None:
    configured = lookup(parse((await http(node, "GET", "/xend/domain/vm1")).body),
                        "domain/maxmem")
    reply = await http(node, "POST", "/xend/domain/vm1", "op=maxmem_set&memory=2048")
    assert (reply.status, reply.body) == (200, b"0")
    reply = await http(node, "POST", "/xend/domain/vm1", "op=mem_target_set&target=1024")
    assert (reply.status, reply.body) == (200, b"")
    sx = parse((await http(node, "GET", "/xend/domain/vm1")).body)
    # 3.0.3's maxmem_set only calls the hypervisor: the sxpr keeps the configured maxmem
    assert (lookup(sx, "domain/memory"), lookup(sx, "domain/maxmem")) == ("1024", configured)
    assert node.get("vm1").hv_max_kib == 2048 * 1024
    assert node.db.read("/local/domain/1/memory/target") == b"1048576"


@pytest.mark.parametrize(("style", "reflected"), [
    ("3.0.2", False), ("3.0.3", False), ("3.0.4", True), ("3.4", True)])
async def test_maxmem_set_reaches_the_sxpr_from_3_0_4(short_dir: Path, style: str,
                                                      reflected: bool) -> None:
    async with SimNode(short_dir, domains=1, seed=7, error_style=style) as sim:
        before = lookup(parse((await http(sim, "GET", "/xend/domain/vm1")).body),
                        "domain/maxmem")
        reply = await http(sim, "POST", "/xend/domain/vm1", "op=maxmem_set&memory=4000")
        assert (reply.status, reply.body) == (200, b"0")
        after = lookup(parse((await http(sim, "GET", "/xend/domain/vm1")).body),
                       "domain/maxmem")
        assert after == ("4000" if reflected else before)
        assert sim.get("vm1").hv_max_kib == 4000 * 1024


async def test_maxmem_set_errors_are_the_hypervisor_s_and_xc_s(node: SimNode) -> None:
    # the hypervisor's EINVAL, as xc.error's text
    reply = await http(node, "POST", "/xend/domain/vm1", "op=maxmem_set&memory=0")
    assert reply.status_line == "HTTP/1.1 500 Request failed: maxmem_set"
    assert reply.text == "(xend.err \"(22, 'Invalid argument')\")"
    # more KiB than a C int: the xc binding's OverflowError
    reply = await http(node, "POST", "/xend/domain/vm1", "op=maxmem_set&memory=2097152")
    assert reply.text == "(xend.err 'signed integer is greater than maximum')"


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


KEEP = {"Connection": "keep-alive"}


async def _open(node: SimNode, tcp: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if tcp:
        return await asyncio.open_connection("127.0.0.1", node.xend_port)
    return await asyncio.open_unix_connection(node.xend_unix_path)


async def _answered_within(node: SimNode, tcp: bool, seconds: float) -> bool:
    """Return True if a new connection's request is answered within ``seconds``."""
    reader, writer = await _open(node, tcp)
    try:
        writer.write(build_request("GET", "/xend/domain"))
        try:
            async with asyncio.timeout(seconds):
                reply = await read_reply(reader)
        except TimeoutError:
            return False
        assert reply is not None and reply.status == 200
        return True
    finally:
        writer.close()


async def _answered_beside_a_kept_alive_one(node: SimNode, tcp: bool, seconds: float) -> bool:
    """Return :func:`_answered_within` while another connection, kept alive after one
    request, stays open and idle."""
    reader, writer = await _open(node, tcp)
    try:
        writer.write(build_request("GET", "/xend/domain", headers=KEEP))
        assert await asyncio.wait_for(read_reply(reader), 5) is not None
        return await _answered_within(node, tcp, seconds)
    finally:
        writer.close()


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
async def test_serial_xend_serves_no_one_else_while_a_connection_is_kept_alive(
        node: SimNode, tcp: bool) -> None:
    assert node.xend_serving is None  # the default: 3.0.3's own, one connection at a time
    reader, writer = await _open(node, tcp)
    try:
        writer.write(build_request("GET", "/xend/domain", headers=KEEP))
        first = await asyncio.wait_for(read_reply(reader), 5)
        assert first is not None and first.header("Connection") == "keep-alive"
        # A is idle but open: B's connect lands in the backlog and gets no answer
        other = asyncio.ensure_future(_answered_within(node, tcp, 10))
        done, _ = await asyncio.wait({other}, timeout=0.3)
        assert not done
        writer.close()  # A lets go: B is served at once
        assert await asyncio.wait_for(other, 5)
    finally:
        writer.close()


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
async def test_threaded_xend_serves_others_beside_a_kept_alive_connection(
        threaded_node: SimNode, tcp: bool) -> None:
    assert await _answered_beside_a_kept_alive_one(threaded_node, tcp, 5)


async def test_connection_is_closed_after_the_reply_unless_keep_alive_was_asked(
        node: SimNode) -> None:
    for headers in ({}, {"Connection": "close"}, {"Connection": "Keep-Alive, TE"}):
        reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
        try:
            # an HTTP/1.1 request is persistent by default; xend did not honour that
            writer.write(build_request("GET", "/xend/domain", headers=headers))
            reply = await asyncio.wait_for(read_reply(reader), 5)
            assert reply is not None and reply.header("Connection") is None
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()


async def test_a_thread_op_frees_the_serial_accept_loop(node: SimNode, short_dir: Path) -> None:
    # save runs in a thread of its own, which then serves that connection: kept alive and
    # idle after it, the connection no longer holds the others back
    reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    try:
        target = short_dir / "vm3.save"
        writer.write(build_request("POST", "/xend/domain/vm3", f"op=save&file={target}",
                                   headers=KEEP))
        reply = await asyncio.wait_for(read_reply(reader), 5)
        assert reply is not None and reply.status == 202
        assert await _answered_within(node, False, 5)
        writer.write(build_request("GET", "/xend/domain", headers=KEEP))  # still served
        again = await asyncio.wait_for(read_reply(reader), 5)
        assert again is not None and again.body == b"(Domain-0 vm1 vm2)"
    finally:
        writer.close()


@pytest.mark.parametrize(("style", "serving", "config_format"), [
    ("3.0.2", "serial", None), ("3.0.3", "serial", "2"), ("3.0.4", "threaded", "3"),
    ("3.4", "threaded", "4")])
async def test_each_version_serves_and_describes_itself_as_it_did(
        short_dir: Path, style: str, serving: str, config_format: str | None) -> None:
    async with SimNode(short_dir, domains=1, error_style=style) as sim:
        info = parse((await http(sim, "GET", "/xend/node")).body)
        assert lookup(info, "node/xend_config_format") == config_format
        assert await _answered_beside_a_kept_alive_one(sim, False, 0.5) == (
            serving == "threaded")


async def test_serving_can_be_chosen_apart_from_the_version(short_dir: Path) -> None:
    async with SimNode(short_dir, domains=1, error_style="3.0.3",
                       xend_serving="threaded") as sim:
        assert await _answered_beside_a_kept_alive_one(sim, False, 5)
    with pytest.raises(ValueError, match="serving must be one of"):
        async with SimNode(short_dir, domains=1, xend_serving="forked"):
            pass


async def test_bad_request_lines_are_400_and_closed(node: SimNode) -> None:
    for raw in (b"GARBAGE\r\n\r\n", b"GET / FTP/1.0\r\n\r\n", b"\r\n"):
        reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
        try:
            writer.write(raw)
            reply = await asyncio.wait_for(read_reply(reader), 5)
            assert reply is not None and reply.status_line == "HTTP/1.1 400 Bad request"
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()
    # a two-field request line is HTTP/0.9, still answered with a 1.1 status line
    reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    try:
        writer.write(b"GET /xend\r\n\r\n")
        reply = await asyncio.wait_for(read_reply(reader), 5)
        assert reply is not None and reply.body == b"(ls  node domain vnet)"
    finally:
        writer.close()


async def test_multipart_form_fields_are_args(node: SimNode) -> None:
    body = ("--XX\r\nContent-Disposition: form-data; name=\"op\"\r\n\r\npause\r\n"
            "--XX--\r\n")
    reply = await http(node, "POST", "/xend/domain/vm2", body, form=False,
                       headers={"Content-Type": "multipart/form-data; boundary=XX"})
    assert reply.status == 200 and node.get("vm2").paused
    # any other content type carries no fields: no op
    reply = await http(node, "POST", "/xend/domain/vm2", "op=unpause", form=False,
                       headers={"Content-Type": "text/plain"})
    assert reply.status_line == "HTTP/1.1 406 Invalid request"
