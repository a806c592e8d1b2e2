"""Fixtures: a simulated node in this process (so tests can act as the guest or xend too) and
a connection to it through its real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import aiovirt.connection
from aiovirt.connection import Connection
from aiovirt.sim.node import SimNode


@pytest.fixture
async def node(short_dir: Path) -> AsyncIterator[SimNode]:
    """A node with four guests (vm1..vm4) whose shutdowns take 20 ms."""
    async with SimNode(short_dir, domains=4, seed=3, shutdown_delay=0.02,
                       reap_delay=0.01) as sim:
        yield sim


@pytest.fixture
async def conn(node: SimNode) -> AsyncIterator[Connection]:
    """A read-write connection to ``node`` (xend, xenstore and the hypervisor)."""
    async with aiovirt.connection.open(node.uri) as connection:
        yield connection


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, checking every few milliseconds (for conditions that
    no event announces, such as a server noticing a closed socket)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on: poll the condition
            await asyncio.sleep(0.005)
