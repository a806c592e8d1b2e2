"""Suite-wide settings. Area fixtures live in each test directory's own conftest.py."""

from __future__ import annotations

import os

# Hypothesis: bounded, deterministic enough for CI, never a deadline flake on a loaded machine.
from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
