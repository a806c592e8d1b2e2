"""Fixtures of the device statistics tests: a simulated node whose files change on request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import aiovirt
from aiovirt.sim.node import SimNode


@pytest.fixture
async def node(short_dir: Path) -> AsyncIterator[SimNode]:
    """A simulated node with three guests whose statistics files change only on refresh()."""
    async with SimNode(short_dir, domains=3, seed=11, shutdown_delay=0.05) as sim:
        sim.devstats.interval = None  # the tests say when the files are rewritten
        yield sim


@pytest.fixture
async def conn(node: SimNode) -> AsyncIterator[aiovirt.Connection]:
    """A read-write connection to ``node`` (its URI names the statistics root)."""
    async with aiovirt.open(node.uri) as connection:
        yield connection
