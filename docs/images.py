"""Make the documentation's pictures from real runs: ``python docs/images.py [--out DIR]``.

``top.svg`` is ``aiovirsh top`` as a terminal shows it: a simulated node is started with
``python -m aiovirt.sim``, ``aiovirsh top`` runs against it in a pseudo-terminal, a terminal
emulator (pyte) keeps the screen it draws, and the last complete frame is written as an SVG
with rich. Nothing is drawn by hand, so the picture shows the program as it is today. The docs
build (``docs/conf.py``) runs this script into ``docs/_generated/``, which is never committed.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pyte
from rich.console import Console
from rich.style import Style
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
COLS, ROWS = 100, 26


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
    env["TERM"] = "xterm-256color"
    return env


def _color(name: str) -> str | None:
    """Return rich's name for a pyte colour (pyte says "brown" for yellow, hex for 256 colours)."""
    if name == "default":
        return None
    if len(name) == 6 and all(c in "0123456789abcdefABCDEF" for c in name):
        return f"#{name}"
    name = name.replace("brown", "yellow")
    if name.startswith("bright") and not name.startswith("bright_"):
        name = "bright_" + name.removeprefix("bright")
    return name


def _screen_text(screen: pyte.Screen) -> list[Text]:
    lines = []
    for y in range(screen.lines):
        row = screen.buffer[y]
        line = Text()
        for x in range(screen.columns):
            ch = row[x]
            style = Style(color=_color(ch.fg), bgcolor=_color(ch.bg), bold=ch.bold,
                          italic=ch.italics, underline=ch.underscore, reverse=ch.reverse)
            line.append(ch.data, style)
        line.rstrip()
        lines.append(line)
    return lines


def _frames(raw: bytes) -> int:
    complete = raw.count(b"aiovirsh top")
    if raw.rfind(b"q quit") < raw.rfind(b"aiovirsh top"):
        complete -= 1
    return complete


def capture_top(out: Path, *, domains: int = 60, seed: int = 7, limit: float = 60.0) -> Path:
    """Run ``aiovirsh top`` against a fresh simulated node and write its screen to ``out``."""
    with tempfile.TemporaryDirectory(prefix="aiovirt-img-") as tmp:
        sim = subprocess.Popen(
            [sys.executable, "-m", "aiovirt.sim", "--dir", str(Path(tmp) / "node"),
             "--domains", str(domains), "--seed", str(seed)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
        try:
            assert sim.stdout is not None
            uri = json.loads(sim.stdout.readline())["uri"]
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
            top = subprocess.Popen(
                [sys.executable, "-m", "aiovirt", "-c", uri, "top", "--interval", "0.5",
                 "--iterations", "4"],
                stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=_env(),
                start_new_session=True)
            os.close(slave)
            screen = pyte.Screen(COLS, ROWS)
            stream = pyte.ByteStream(screen)
            raw = b""
            frame: list[Text] | None = None
            deadline = time.monotonic() + limit
            try:
                while time.monotonic() < deadline:
                    ready, _, _ = select.select([master], [], [], 0.5)
                    if not ready:
                        if top.poll() is not None:
                            break
                        continue
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    raw += data
                    stream.feed(data)
                    # keep the last frame drawn whole, once CPU% has two samples behind it
                    if _frames(raw) >= 2 and b"q quit" in data:
                        frame = _screen_text(screen)
            finally:
                if top.poll() is None:
                    top.kill()
                top.wait()
                os.close(master)
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(30)
    if frame is None:
        raise SystemExit(f"aiovirsh top drew no complete frame; it printed:\n{raw.decode()!r}")
    console = Console(record=True, width=COLS, file=io.StringIO(), color_system="truecolor",
                      force_terminal=True)
    for line in frame:
        console.print(line, no_wrap=True, overflow="crop")
    out.parent.mkdir(parents=True, exist_ok=True)
    console.save_svg(str(out), title="aiovirsh top")
    return out


def main() -> None:
    """Write every picture into ``--out`` (default: docs/_generated)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_generated")
    args = parser.parse_args()
    sys.stdout.write(f"{capture_top(args.out / 'top.svg')}\n")


if __name__ == "__main__":
    main()
