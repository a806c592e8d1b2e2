"""Fixtures of the simulated-node tests: a running SimNode in the suite's ``short_dir``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiovirt.sim import SimNode


@pytest.fixture
async def node(short_dir: Path) -> AsyncIterator[SimNode]:
    """Yield a running node with three guests, fast shutdowns and a fixed seed."""
    async with SimNode(short_dir, domains=3, seed=7, shutdown_delay=0.05,
                       reap_delay=0.02) as sim:
        yield sim


@pytest.fixture
async def threaded_node(short_dir: Path) -> AsyncIterator[SimNode]:
    """Yield the same node, its xend serving connections concurrently (as xend 3.0.4+)."""
    async with SimNode(short_dir, domains=3, seed=7, shutdown_delay=0.05,
                       reap_delay=0.02, xend_serving="threaded") as sim:
        yield sim
