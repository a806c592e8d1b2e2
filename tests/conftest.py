"""Suite-wide settings. Area fixtures live in each test directory's own conftest.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Hypothesis: bounded, deterministic enough for CI, never a deadline flake on a loaded machine.
from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Yield a fresh directory under /tmp with a short path, removed afterwards.

    Unix socket paths must stay under 108 bytes, which ``tmp_path`` does not promise. Areas whose
    tests join paths as strings override this fixture with ``str(short_dir)``.
    """
    path = Path(tempfile.mkdtemp(prefix="av"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
