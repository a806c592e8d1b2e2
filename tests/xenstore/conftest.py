"""Fixtures: a xenstore daemon (the simulated node's, the real C xenstored or the real OCaml
oxenstored) and a client.

``daemon`` is parametrized over ``["sim", "real", "oxenstored"]``: every test that uses it runs
against all three ("real" is the C daemon, the reference the simulation follows). A daemon can
be killed and started again on the same socket path (the reconnect tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import aiovirt.xenstore as xenstore
from tests.support.interop import require


class Daemon:
    """A xenstore daemon under test: ``path`` (read-write socket), ``ro_path`` (None if none)."""

    kind: str
    path: str
    ro_path: str | None

    async def start(self) -> None:
        raise NotImplementedError

    async def kill(self) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        """Kill the daemon and start it again on the same socket path."""
        await self.kill()
        await self.start()


class SimDaemon(Daemon):
    """The simulated node's xenstored (``aiovirt.sim.xenstored.XenStored``) in this loop."""

    kind = "sim"

    def __init__(self, directory: str) -> None:
        sim_store = pytest.importorskip("aiovirt.sim.store")
        sim_xenstored = pytest.importorskip("aiovirt.sim.xenstored")
        self._server_class: Any = sim_xenstored.XenStored
        self.db: Any = sim_store.XenStoreDB()
        self.path = f"{directory}/socket"
        self.ro_path = f"{directory}/socket_ro"
        self._server: Any = None

    async def start(self) -> None:
        self._server = self._server_class(self.db, self.path, self.ro_path)
        await self._server.start()

    async def kill(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.close()


class RealDaemon(Daemon):
    """One of Debian's real 4.17 daemons in a subprocess (:mod:`tests.support.real_xenstored`).

    ``kind`` "real" is the C xenstored under the tests' LD_PRELOAD stub, "oxenstored" the OCaml
    daemon (XenServer's, XCP-ng's) in its own mount namespace. Neither serves a read-only
    socket. Starting waits for the daemon to listen, so it runs in a worker thread.
    """

    ro_path = None

    def __init__(self, directory: str, kind: str) -> None:
        from tests.support import real_xenstored as real

        self._run: Callable[[str], contextlib.AbstractContextManager[str]]
        if kind == "real":
            reason = real.real_xenstored_available()
            self._run = functools.partial(real.real_xenstored, trace=False)
        else:
            reason = real.real_oxenstored_available()
            self._run = real.real_oxenstored
        require(reason is None, reason or "")
        self.kind = kind
        self._dir = directory
        self.path = f"{directory}/socket"
        self._cm: contextlib.AbstractContextManager[str] | None = None

    async def start(self) -> None:
        cm = self._run(self._dir)
        path = await asyncio.to_thread(cm.__enter__)
        assert path == self.path, (path, self.path)
        self._cm = cm

    async def kill(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            await asyncio.to_thread(cm.__exit__, None, None, None)


@pytest.fixture
def short_dir(short_dir: Path) -> str:
    """Return the suite's short socket directory as a string (this area's tests join with +)."""
    return str(short_dir)


@pytest.fixture(params=["sim", "real", "oxenstored"])
async def daemon(request: pytest.FixtureRequest, short_dir: str) -> AsyncIterator[Daemon]:
    """Yield a running xenstore daemon of each kind."""
    kind = request.param
    d = SimDaemon(short_dir) if kind == "sim" else RealDaemon(short_dir, kind)
    await d.start()
    try:
        yield d
    finally:
        await d.kill()


@pytest.fixture
async def xs(daemon: Daemon) -> AsyncIterator[xenstore.XenStoreClient]:
    """Yield a client connected to ``daemon``, with a short default timeout."""
    async with xenstore.connect(daemon.path, timeout=5.0) as client:
        yield client


@pytest.fixture
def base() -> str:
    """Return the subtree each test works under."""
    return "/test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that run against a real daemon as interop tests."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("daemon") in ("real", "oxenstored"):
            item.add_marker(pytest.mark.interop)

