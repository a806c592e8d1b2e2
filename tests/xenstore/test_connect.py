"""Connecting: many clients at once against a daemon that listens with a backlog of one."""

from __future__ import annotations

import asyncio

import aiovirt.xenstore as xenstore
from tests.xenstore.conftest import Daemon

WAIT = 20.0


async def test_64_connections_at_once_all_work(daemon: Daemon, base: str) -> None:
    # The real daemons listen with a backlog of 1: a non-blocking connect beyond it fails with
    # EAGAIN, which asyncio alone takes for "in progress" and hands back an unconnected socket.
    async def one(i: int) -> bytes:
        async with xenstore.connect(daemon.path, timeout=WAIT) as xs:
            await xs.write(f"{base}/conn/{i}", str(i))
            return await xs.read(f"{base}/conn/{i}")

    async with asyncio.timeout(WAIT):
        results = await asyncio.gather(*(one(i) for i in range(64)), return_exceptions=True)
    assert results == [str(i).encode() for i in range(64)]


async def test_connecting_to_a_full_backlog_waits_within_the_timeout(daemon: Daemon) -> None:
    # Connections the daemon has not accepted yet fill its backlog; ours waits for room, as
    # libxenstore's blocking connect does, and works once there is some.
    clients = await asyncio.gather(*(xenstore.connect(daemon.path, timeout=WAIT)
                                     for _ in range(16)))
    try:
        await asyncio.gather(*(xs.read("/") for xs in clients))
    finally:
        await asyncio.gather(*(xs.close() for xs in clients))
