"""Fixtures: one simulated node per test module, started as its own process, and a runner.

The node is ``python -m aiovirt.sim --dir D --domains N`` (the way a user starts one); its
printed ``uri`` is what each ``aiovirsh`` subprocess connects to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.sim_process import SimStartError, start_sim_process, stop_process

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class SimProcess:
    """A running ``python -m aiovirt.sim``: its directory, URI and endpoints."""

    directory: str
    uri: str
    endpoints: dict[str, Any]
    process: subprocess.Popen[str]


def start_sim(domains: int, *, seed: int = 7) -> SimProcess:
    """Start a simulated node process and return it once it has printed its endpoints."""
    directory = tempfile.mkdtemp(prefix="avcli")
    try:
        proc, info = start_sim_process(directory, "--domains", str(domains), "--seed", str(seed),
                                       stderr=subprocess.PIPE)
    except SimStartError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"python -m aiovirt.sim printed nothing; stderr:\n{exc.stderr}")
    return SimProcess(directory, info["uri"], info, proc)


def stop_sim(sim: SimProcess) -> None:
    """Stop the node process (SIGINT, then kill) and remove its directory."""
    stop_process(sim.process)
    shutil.rmtree(sim.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """A simulated node with 4 guests, shared by the tests of one module."""
    node = start_sim(4)
    try:
        yield node
    finally:
        stop_sim(node)


@dataclass
class Result:
    """What one aiovirsh run produced."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """Return stdout parsed as JSON."""
        return json.loads(self.out)


def aiovirsh(*args: str, uri: str | None = None, timeout: float = 30,
             env: dict[str, str] | None = None) -> Result:
    """Run ``python -m aiovirt [-c uri] args...`` and return its exit code and output."""
    cmd = [sys.executable, "-m", "aiovirt"]
    if uri is not None:
        cmd += ["-c", uri]
    cmd += list(args)
    full_env = {k: v for k, v in os.environ.items() if k != "AIOVIRT_DEFAULT_URI"}
    full_env.update({"COLUMNS": "120", **(env or {})})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=full_env)
    return Result(proc.returncode, proc.stdout, proc.stderr)
