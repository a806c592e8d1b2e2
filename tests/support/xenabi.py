"""Whether this test process has the Xen ABI library preloaded, and how to start one that has.

The real libxenctrl reaches Xen through libc's ``open``/``ioctl``, which only a library loaded
at process start (``LD_PRELOAD``) can answer; so the tests that drive aiovirt's ``xenctrl``
driver in-process run in a child pytest started under :func:`run_preloaded_pytest`. In that
child :data:`PRELOADED` is true, the ``xenctrl`` route joins tests/api's routes, and each
in-process node is named to the library through ``AIOVIRT_SIM_PRIVCMD``.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRELOADED = hasattr(ctypes.CDLL(None), "aiovirt_xenabi_loaded")


def run_preloaded_pytest(*args: str, timeout: float = 300) -> tuple[int, str]:
    """Run ``python -m pytest args`` under the built library; return its status and output."""
    from aiovirt.sim.xenabi import build_library

    env = {**os.environ, "LD_PRELOAD": str(build_library()), "PYTHONPATH": str(ROOT)}
    env.pop("AIOVIRT_SIM_PRIVCMD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def passed_count(output: str) -> int:
    """Return how many tests pytest's summary line says passed."""
    m = re.search(r"(\d+) passed", output)
    return int(m.group(1)) if m else 0
