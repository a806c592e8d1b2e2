"""Clients we did not write against the simulated node: curl on xend, xenstore-utils on the store.

Includes the scale check: a 5,000-domain node answers xend's detailed list and a full
``xenstore-ls`` without timeouts.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from aiovirt.protocol.sexpr import lookup, parse
from aiovirt.sim import SimNode
from tests.support.interop import require_tool

pytestmark = pytest.mark.interop


async def run(*argv: str, env: dict[str, str] | None = None,
              limit: float = 60.0) -> tuple[int, bytes, bytes]:
    """Run a program without blocking the loop the node serves on; return (rc, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})})
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_curl_asking_for_sxp_gets_sexprs(node: SimNode) -> None:
    curl = require_tool("curl")
    rc, out, err = await run(curl, "-sS", "-H", "Accept: application/sxp", "--unix-socket",
                             node.xend_unix_path, "http://localhost/xend/domain/vm1")
    assert rc == 0, err
    assert lookup(parse(out), "domain/name") == "vm1"
    rc, out, err = await run(curl, "-sS", "-H", "Accept: application/sxp", "-d", "op=pause",
                             "--unix-socket", node.xend_unix_path,
                             "http://localhost/xend/domain/vm2")
    assert rc == 0, err
    assert node.get("vm2").paused


async def test_curl_default_accept_gets_a_page(node: SimNode) -> None:
    curl = require_tool("curl")
    rc, out, err = await run(curl, "-sS", "-i", "--unix-socket", node.xend_unix_path,
                             "http://localhost/xend/domain")
    assert rc == 0, err
    assert b"Content-type: text/html" in out and b"<html>" in out
    rc, out, err = await run(curl, "-sS", "-H", "Accept: application/sxp",
                             f"http://127.0.0.1:{node.xend_port}/xend/node")
    assert rc == 0, err
    assert lookup(parse(out), "node/xen_major") == "3"


async def test_xenstore_utils_see_the_node_tree(node: SimNode) -> None:
    xs_read = require_tool("xenstore-read")
    env = {"XENSTORED_PATH": node.xenstore_path}
    rc, out, err = await run(xs_read, "/local/domain/2/name", env=env)
    assert (rc, out) == (0, b"vm2\n"), err
    uuid = str(node.get("vm2").uuid)
    rc, out, err = await run(xs_read, f"/vm/{uuid}/name", env=env)
    assert (rc, out) == (0, b"vm2\n"), err
    xs_write = require_tool("xenstore-write")
    rc, _out, err = await run(xs_write, "/local/domain/2/control/shutdown", "poweroff", env=env)
    assert rc == 0, err
    await node.wait_for(lambda: node.find("vm2") is None, 3)


@pytest.mark.timeout(240)
async def test_5000_domain_node_answers_detail_list_and_full_xenstore_ls(
        short_dir: Path) -> None:
    curl = require_tool("curl")
    xs_ls = require_tool("xenstore-ls")
    started = time.perf_counter()
    async with SimNode(short_dir, domains=5000, seed=3) as sim:
        print(f"5000-domain node started in {time.perf_counter() - started:.2f} s")
        t = time.perf_counter()
        rc, out, err = await run(curl, "-sS", "--max-time", "60", "--unix-socket",
                                 sim.xend_unix_path, "http://localhost/xend/domain?detail=1",
                                 "-H", "Accept: application/sxp")
        assert rc == 0, err
        domains = parse(out)
        assert len(domains) == 5001
        assert lookup(domains[-1], "domain/name") == "vm5000"
        print(f"detail list: {len(out)} bytes in {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        rc, out, err = await run(xs_ls, env={"XENSTORED_PATH": sim.xenstore_path},
                                 limit=150)
        assert rc == 0, err
        lines = out.count(b"\n")
        assert lines > 5000 * 50
        assert b'vm5000 = ""' not in out and b'name = "vm5000"' in out
        print(f"xenstore-ls: {lines} lines in {time.perf_counter() - t:.2f} s")
