"""The libvirt 0.0.6 python tests, ported as examples/, run as scripts against sim:///."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["basic", "error", "lookup_uuid", "create"])
def test_example_prints_ok(name: str) -> None:
    env = dict(os.environ, AIOVIRT_PAUSE_SECONDS="0.3")
    proc = subprocess.run([sys.executable, str(REPO / "examples" / f"{name}.py")],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("OK"), proc.stdout + proc.stderr
