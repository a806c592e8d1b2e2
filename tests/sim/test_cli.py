"""``python -m aiovirt.sim`` as a subprocess: the JSON line, clean stops, directory claims."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from aiovirt.protocol.xs_wire import XsOp
from aiovirt.sim.__main__ import build_parser, faults_from
from aiovirt.sim.faults import XendOp
from tests.sim.wire import build_request, read_reply

KEYS = {"uri", "xenstore", "xenstore_ro", "xend", "xend_unix", "privcmd", "stats_root"}


def is_socket(path: str) -> bool:
    """Return True if ``path`` is a unix socket."""
    return Path(path).is_socket()


@asynccontextmanager
async def sim_process(directory: Path, *args: str) -> AsyncIterator[
        tuple[asyncio.subprocess.Process, dict[str, str]]]:
    """Start the simulator, yield it with its endpoints once the JSON line arrives."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiovirt.sim", "--dir", str(directory), "--log-level", "WARNING",
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        assert line, (await proc.communicate())[1].decode()
        yield proc, json.loads(line)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def get(unix_path: str, path: str) -> bytes:
    """Return the body of a GET on xend's unix socket."""
    reader, writer = await asyncio.open_unix_connection(unix_path)
    try:
        writer.write(build_request("GET", path))
        reply = await asyncio.wait_for(read_reply(reader), 10)
        assert reply is not None
        return reply.body
    finally:
        writer.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_prints_one_json_line_and_stops_cleanly(short_dir: Path, sig: int) -> None:
    async with sim_process(short_dir, "--domains", "2", "--seed", "5") as (proc, ends):
        assert set(ends) == KEYS
        d = str(short_dir)
        assert ends["uri"] == (f"xen:///?xend=unix:{d}/xend-socket&xenstore={d}/socket"
                               f"&hypervisor=sim:{d}/privcmd&stats_root={d}/xen-root")
        assert ends["xend"].startswith("http://127.0.0.1:")
        for key in ("xenstore", "xenstore_ro", "xend_unix", "privcmd"):
            assert is_socket(ends[key])
        assert await get(ends["xend_unix"], "/xend/domain") == b"(Domain-0 vm1 vm2)"
        proc.send_signal(sig)
        async with asyncio.timeout(15):
            out, _err = await proc.communicate()
        assert proc.returncode == 0
        assert out == b""  # nothing after the JSON line
        # no socket is left; the device statistics stay, as a kernel's outlive the daemons
        assert sorted(os.listdir(short_dir)) == ["xen-root"]


async def test_refuses_a_directory_held_by_a_live_node(short_dir: Path) -> None:
    async with sim_process(short_dir, "--domains", "0") as (first, _ends):
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiovirt.sim", "--dir", str(short_dir),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        async with asyncio.timeout(30):
            out, err = await second.communicate()
        assert second.returncode == 1
        assert out == b""
        assert b"in use by a running server" in err
        assert first.returncode is None
        first.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await first.wait()


async def test_replaces_stale_sockets(short_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_dir / "socket"))
    stale.close()  # leaves the file, nobody listening
    async with sim_process(short_dir, "--domains", "1") as (proc, ends):
        assert is_socket(ends["xenstore"])
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.wait()
        assert proc.returncode == 0


async def test_fault_flags_reach_the_servers(short_dir: Path) -> None:
    async with sim_process(short_dir, "--domains", "1", "--xend-fail-op", "list") as (proc, e):
        reader, writer = await asyncio.open_unix_connection(e["xend_unix"])
        writer.write(build_request("GET", "/xend/domain"))
        reply = await asyncio.wait_for(read_reply(reader), 10)
        writer.close()
        assert reply is not None and reply.status_line == "HTTP/1.1 500 Request failed: list"
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await proc.wait()


@pytest.mark.parametrize(("flag", "name", "message"), [
    ("--xend-fail-op", "puase", "unknown xend op 'puase'"),
    ("--xend-stall-op", "lists", "unknown xend op 'lists'"),
    ("--xs-stall-op", "FOO", "unknown xenstore op 'FOO'"),
    ("--xs-stall-op", "99", "unknown xenstore op '99'"),
])
def test_an_unknown_fault_op_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], flag: str, name: str, message: str) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--dir", "/nonexistent", flag, name])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_fault_ops_are_read_by_name_or_number() -> None:
    args = build_parser().parse_args([
        "--dir", "/nonexistent", "--xend-fail-op", "pause", "--xend-stall-op", "*",
        "--xs-stall-op", "read", "--xs-stall-op", "13", "--xs-stall-path", "/vm"])
    faults = faults_from(args)
    assert faults.xend.fail_ops == {XendOp.PAUSE}
    assert faults.xend.stall_ops == {XendOp.ANY}
    assert faults.xenstore.stall_ops == {XsOp.READ, XsOp.RM}
    assert faults.xenstore.stalls(XsOp.READ, b"/vm/x\0")
    assert not faults.xenstore.stalls(XsOp.READ, b"/local\0")
