"""A simulated node in its own process: ``python -m aiovirt.sim``, the way a user starts one.

Used by the CLI tests and by the benchmarks (which keep the node's CPU out of their figures).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class SimStartError(RuntimeError):
    """``python -m aiovirt.sim`` exited without printing its endpoints."""

    def __init__(self, code: int, stderr: str) -> None:
        super().__init__(f"python -m aiovirt.sim exited with {code} before printing its endpoints")
        self.code = code
        self.stderr = stderr


def start_sim_process(directory: str, *args: str,
                      stderr: int | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start ``python -m aiovirt.sim --dir directory args...``; return it and its endpoints.

    Returns once the node has printed its JSON line. ``stderr`` is passed to :class:`Popen`
    (``subprocess.PIPE`` keeps it for the error). Raises :class:`SimStartError` if it printed
    nothing.
    """
    proc = subprocess.Popen([sys.executable, "-m", "aiovirt.sim", "--dir", directory, *args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr else ""
        code = proc.wait()
        close_streams(proc)
        raise SimStartError(code, err)
    return proc, json.loads(line)


def stop_process(proc: subprocess.Popen[str]) -> None:
    """Stop a server process: SIGINT (a clean stop), then kill after 10 s; close its pipes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    close_streams(proc)


def close_streams(proc: subprocess.Popen[str]) -> None:
    """Close the pipes of ``proc`` that are open."""
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
