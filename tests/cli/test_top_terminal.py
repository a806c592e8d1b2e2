"""``aiovirsh top`` as a person sees it: a real pseudo-terminal, a terminal emulator (pyte)
reading what the program draws, key presses typed into it, against a 1,000-domain node."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import pytest

from tests.cli.conftest import ROOT, SimProcess, start_sim, stop_sim
from tests.support.interop import require

try:
    import pyte
except ImportError:  # pragma: no cover - the test extra installs it
    pyte = None

ROWS, COLS = 40, 120


@pytest.fixture(scope="module")
def big_sim() -> Iterator[SimProcess]:
    """A node with 1,000 guests."""
    node = start_sim(1000, seed=11)
    try:
        yield node
    finally:
        stop_sim(node)


class Terminal:
    """A program running in a pseudo-terminal, its screen kept by a VT100 emulator."""

    def __init__(self, args: list[str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        self.process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT,
                                        env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""

    def frames(self) -> int:
        """Return how many frames the program has drawn completely (header ... key help)."""
        complete = self.raw.count(b"aiovirsh top")
        if self.raw.rfind(b"q quit") < self.raw.rfind(b"aiovirsh top"):
            complete -= 1  # the last one is still being drawn
        return complete

    def text(self) -> str:
        """Return what the screen shows now, one line per row."""
        return "\n".join(line.rstrip() for line in self.screen.display)

    def pump(self, until: Callable[[], bool], limit: float = 20.0) -> None:
        """Feed the program's output to the emulator until ``until()`` holds."""
        deadline = time.monotonic() + limit
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"screen never matched; it shows:\n{self.text()}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the program exited and the pty closed
                data = b""
            if not data:
                try:
                    self.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                if not until():
                    raise AssertionError(f"program ended; screen:\n{self.text()}")
                return
            self.raw += data
            self.stream.feed(data)

    def type(self, keys: str) -> None:
        """Type ``keys`` at the program."""
        os.write(self.master, keys.encode())

    def close(self) -> int:
        """Wait for the program (killing it after a while) and return its exit status."""
        try:
            code = self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        os.close(self.master)
        return code


def _rows(screen_text: str) -> list[list[str]]:
    """Return the table rows (cells split on whitespace) under the column header."""
    lines = screen_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["ID", "NAME", "STATE"])
    rows = []
    for line in lines[start + 1:]:
        cells = line.split()
        # ID NAME STATE VCPUS MEM MAXMEM CPU% CPU-TIME, then the device rates if any
        if len(cells) not in (8, 10) or not cells[0].isdigit() or not cells[7].endswith("s"):
            break
        rows.append(cells)
    return rows


def test_top_live_dashboard_refreshes_sorts_on_a_key_and_quits(big_sim: SimProcess) -> None:
    require(sys.platform.startswith("linux"), "pseudo-terminals are tested on Linux")
    require(pyte is not None, "pyte (the terminal emulator that reads the screen) is missing")
    term = Terminal([sys.executable, "-m", "aiovirt", "-c", big_sim.uri, "top",
                     "--interval", "0.3"])
    try:
        # the first frames: header, column titles, a screenful of rows, the summary
        term.pump(lambda: term.frames() >= 3 and "1001 domains" in term.text())
        screen = term.text()
        assert "aiovirsh top" in screen and "sort: cpu" in screen
        rows = _rows(screen)
        assert ROWS - 10 <= len(rows) <= ROWS  # a screenful, not 1,001 lines
        cpu = [float(r[6]) for r in rows]
        assert cpu == sorted(cpu, reverse=True)  # busiest first
        assert all(r[2] in ("running", "idle", "paused") for r in rows)
        assert re.search(r"\(\d+ more below\)", screen)

        term.type("n")  # sort by name
        term.pump(lambda: "sort: name" in term.text())
        frames = term.frames()
        term.pump(lambda: term.frames() > frames + 1)  # it keeps refreshing
        names = [r[1] for r in _rows(term.text())]
        assert names[0] == "Domain-0"
        assert names == sorted(names)

        term.type("q")
        term.pump(lambda: term.process.poll() is not None, limit=10)
    finally:
        code = term.close()
    assert code == 0
