"""The skip policy for tests that need a tool we did not write.

Such a test skips, with the reason printed, when the tool is missing; under
``AIOVIRT_REQUIRE_INTEROP=1`` (as in CI, which installs the tools) the same condition fails.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRED = os.environ.get("AIOVIRT_REQUIRE_INTEROP") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (or fail, when interop is required) the calling test unless ``condition`` holds."""
    if condition:
        return
    if REQUIRED:
        pytest.fail(f"AIOVIRT_REQUIRE_INTEROP=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Return the path of program ``name``, or skip/fail the test if it is not installed."""
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path
