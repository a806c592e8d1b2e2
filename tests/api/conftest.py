"""Fixtures of the API tests: short socket directories and simulated nodes."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A fresh directory under /tmp with a short path (unix socket paths must stay short)."""
    path = tempfile.mkdtemp(prefix="av")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
