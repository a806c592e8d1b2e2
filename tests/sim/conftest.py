"""Fixtures of the simulated-node tests: a running SimNode in a short temporary directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aiovirt.sim import SimNode


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Yield a fresh directory with a short path (unix socket paths must stay < 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="av"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def node(short_dir: Path) -> AsyncIterator[SimNode]:
    """Yield a running node with three guests, fast shutdowns and a fixed seed."""
    async with SimNode(short_dir, domains=3, seed=7, shutdown_delay=0.05,
                       reap_delay=0.02) as sim:
        yield sim
