"""Fixtures of the Xen tools tests: a node in its own process serving Xen's hypercall ABI.

Each node is ``python -m aiovirt.sim --xen-tools``, as a user starts one; Debian's ``xl`` and
``xentop`` run under the environment its ready line gives. The tests skip (or fail, under
``AIOVIRT_REQUIRE_INTEROP=1``) when gcc, libxen-dev or xen-utils-4.17 is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import aiovirt
from aiovirt.sim.xenabi import missing_requirement
from tests.support.interop import require
from tests.support.sim_process import start_sim_process, stop_process
from tests.support.xenabi import PRELOADED

# preloaded/ drives the real libxenctrl in-process: it runs in a child pytest started under
# LD_PRELOAD by test_preloaded.py, never in a process without the library.
collect_ignore = [] if PRELOADED else ["preloaded"]

XEN_BIN = Path("/usr/lib/xen-4.17/bin")
XL = XEN_BIN / "xl"
XENTOP = XEN_BIN / "xentop"


def require_xen_tools() -> None:
    """Skip (or fail under interop) unless the library can be built and xl/xentop run."""
    missing = missing_requirement()
    require(missing is None, missing or "")
    require(XL.exists() and XENTOP.exists(),
            f"xen-utils-4.17 is not installed ({XL} or {XENTOP} is missing)")


@dataclass
class XenNode:
    """A node in a child process: its ready line and the environment of Xen's tools."""

    ready: dict[str, Any]
    directory: Path

    @property
    def env(self) -> dict[str, str]:
        """Return this process's environment plus the node's ``xen_tools_env``."""
        return {**os.environ, **self.ready["xen_tools_env"]}

    def uri(self, **overrides: str) -> str:
        """Return the node's URI with some endpoints replaced (``none`` turns one off)."""
        uri: str = self.ready["uri"]
        for key, value in overrides.items():
            head, _, rest = uri.partition(f"{key}=")
            _old, amp, tail = rest.partition("&")
            uri = f"{head}{key}={value}{amp}{tail}"
        return uri

    async def run(self, program: Path, *args: str, check: bool = True) -> tuple[int, str, str]:
        """Run a Xen tool against the node; return its status, stdout and stderr."""
        proc = await asyncio.create_subprocess_exec(
            str(program), *args, env=self.env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        code = proc.returncode
        assert code is not None
        if check:
            assert code == 0, f"{program.name} {' '.join(args)} exited {code}: {err.decode()}"
        return code, out.decode(), err.decode()


@pytest.fixture(scope="module")
def start_node() -> Iterator[Callable[..., XenNode]]:
    """Return a function starting ``python -m aiovirt.sim --xen-tools`` nodes for this module."""
    started: list[tuple[Any, Path]] = []

    def start(domains: int = 3, *extra: str) -> XenNode:
        require_xen_tools()
        directory = Path(tempfile.mkdtemp(prefix="avx"))
        proc, ready = start_sim_process(
            str(directory), "--domains", str(domains), "--seed", "13", "--xen-tools",
            "--log-level", "WARNING", *extra)
        started.append((proc, directory))
        return XenNode(ready, directory)

    try:
        yield start
    finally:
        for proc, directory in started:
            stop_process(proc)
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def xnode(start_node: Callable[..., XenNode]) -> XenNode:
    """A fresh node of three guests (for the tests that change it)."""
    return start_node(3)


@pytest.fixture
async def conn(xnode: XenNode) -> AsyncIterator[aiovirt.Connection]:
    """A read-write connection to ``xnode`` through every backend."""
    async with aiovirt.open(xnode.uri()) as connection:
        yield connection
