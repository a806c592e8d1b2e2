"""Debian's xenstore-utils and test-xenstore (clients we did not write) against the sim daemon."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.support.interop import require, require_tool
from tests.xenstored.conftest import Daemon

pytestmark = pytest.mark.interop

TEST_XENSTORE = "/usr/lib/xen-4.17/bin/test-xenstore"
HAVE_TEST_XENSTORE = os.path.isfile(TEST_XENSTORE)


async def _run(socket_path: str, *argv: str) -> tuple[int, str, str]:
    env = dict(os.environ, XENSTORED_PATH=socket_path)
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_tools_work_against_the_socket(daemon: Daemon) -> None:
    tool = {n: require_tool(f"xenstore-{n}") for n in
            ("write", "read", "ls", "list", "exists", "rm", "chmod")}
    p = daemon.path
    assert (await _run(p, tool["write"], "/vm/a", "1", "/vm/b", "two words"))[0] == 0
    assert (await _run(p, tool["read"], "/vm/b"))[1] == "two words\n"
    assert (await _run(p, tool["list"], "/vm"))[1] == "a\nb\n"
    assert (await _run(p, tool["exists"], "/vm/a"))[0] == 0
    assert (await _run(p, tool["exists"], "/vm/zz"))[0] == 1
    assert (await _run(p, tool["chmod"], "/vm/a", "n0", "r5"))[0] == 0
    assert daemon.db.get_perms("/vm/a")[1].domid == 5
    rc, out, _ = await _run(p, tool["ls"], "-p", "/vm")
    assert rc == 0 and "(n0,r5)" in out and 'b = "two words"' in out
    assert (await _run(p, tool["rm"], "/vm/a"))[0] == 0
    assert not daemon.db.exists("/vm/a")


async def test_xenstore_watch_prints_initial_and_change(daemon: Daemon) -> None:
    watch = require_tool("xenstore-watch")
    env = dict(os.environ, XENSTORED_PATH=daemon.path)
    proc = await asyncio.create_subprocess_exec(
        watch, "-n", "2", "/w", env=env, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), 10)
    assert first == b"/w\n"
    daemon.db.write("/w/a", "1")
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert out == b"/w/a\n"


async def test_ls_of_a_large_tree(daemon: Daemon) -> None:
    ls = require_tool("xenstore-ls")
    for i in range(300):
        daemon.db.write(f"/local/domain/{i}/name", f"guest-with-a-long-name-{i}")
    rc, out, err = await _run(daemon.path, ls, "/local/domain")
    assert rc == 0, err
    assert out.count("name =") == 300


async def test_mutating_tools_fail_cleanly_on_read_only_socket(daemon: Daemon) -> None:
    write, read, rm = (require_tool(f"xenstore-{n}") for n in ("write", "read", "rm"))
    chmod = require_tool("xenstore-chmod")
    daemon.db.write("/ro/x", "v")
    ro = daemon.ro_path
    for argv in ((write, "/ro/y", "1"), (rm, "/ro/x"), (chmod, "/ro/x", "n0")):
        rc, _, err = await _run(ro, *argv)
        assert rc != 0, err
    assert (await _run(ro, read, "/ro/x"))[1] == "v\n"
    assert daemon.db.exists("/ro/x") and not daemon.db.exists("/ro/y")


async def test_test_xenstore_passes(daemon: Daemon) -> None:
    require(HAVE_TEST_XENSTORE, f"{TEST_XENSTORE} is not installed")
    rc, out, err = await _run(daemon.path, TEST_XENSTORE)
    assert rc == 0, out + err
    assert out.count(" ns") == 12
