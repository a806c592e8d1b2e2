"""``aiovirsh top``: a live dashboard of every domain, drawn with rich.

Each frame reads the connection's live domain table (``conn.domain_table()``, refreshed every
``--interval`` by one bulk call and at once by xenstore watches; a read costs no I/O), turns
the CPU-time deltas into CPU %, sorts, and draws only the rows the terminal can show, so a
frame costs the same for 50 domains as for 5,000. ``--once`` needs no live table: it reads
every domain twice, :data:`ONCE_INTERVAL` seconds apart unless ``--interval`` says otherwise
(CPU % needs a delta; xentop's single batch frame prints 0.0 for lack of one), and prints every
domain as plain text. A short fixed gap is what a one-shot top does (procps' ``top`` primes its
first frame the same way): enough for the rates to be real, short enough for a script.
Where the node's device statistics are readable, each refresh also reads every domain's disk
and network counters at once (``conn.device_stats()``) and shows their rates, as xentop does:
BLK is bytes read plus written per second, NET bytes received plus sent (the guest's view).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiovirt.cli.format import format_cpu_time, state_name, table, to_json
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.info import DomainInfo
from aiovirt.protocol.states import DomainState

if TYPE_CHECKING:
    # rich draws the live view only: --once and the JSON output never import it
    from rich.console import Group
    from rich.text import Text

    from aiovirt.connection import Connection
    from aiovirt.domain import Domain
    from aiovirt.events.table import DomainTable
    from aiovirt.protocol.devstats import DeviceStats

__all__ = ["LIVE_INTERVAL", "ONCE_INTERVAL", "SORT_KEYS", "DomainRow", "TopModel", "build_frame",
           "collect", "collect_devices", "run_top", "sort_rows", "text_snapshot"]

# The default --interval: between the live view's refreshes, and between --once's two samples.
LIVE_INTERVAL = 1.0
ONCE_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class DomainRow:
    """One line of the dashboard."""

    id: int
    name: str
    state: DomainState
    vcpus: int
    memory: int  # KiB
    max_mem: int  # KiB
    cpu_time: int  # ns
    cpu_percent: float | None  # None until two samples exist
    # bytes per second, None until two samples of the device counters exist
    blk_read: float | None = None
    blk_write: float | None = None
    net_rx: float | None = None
    net_tx: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the row as a JSON-ready dict."""
        return {"id": self.id, "name": self.name, "state": state_name(self.state),
                "vcpus": self.vcpus, "memory_kib": self.memory, "max_memory_kib": self.max_mem,
                "cpu_time_ns": self.cpu_time,
                "cpu_percent": None if self.cpu_percent is None else round(self.cpu_percent, 1),
                **{f"{key}_bytes_per_s": None if rate is None else round(rate)
                   for key, rate in (("blk_read", self.blk_read), ("blk_write", self.blk_write),
                                     ("net_rx", self.net_rx), ("net_tx", self.net_tx))}}

    @property
    def blk_rate(self) -> float | None:
        """Bytes read and written per second."""
        if self.blk_read is None or self.blk_write is None:
            return None
        return self.blk_read + self.blk_write

    @property
    def net_rate(self) -> float | None:
        """Bytes received and sent per second."""
        if self.net_rx is None or self.net_tx is None:
            return None
        return self.net_rx + self.net_tx


SORT_KEYS: dict[str, Any] = {
    "id": lambda r: r.id,
    "name": lambda r: r.name,
    "state": lambda r: (int(r.state), r.id),
    "cpu": lambda r: (-(r.cpu_percent or 0.0), r.id),
    "mem": lambda r: (-r.memory, r.id),
    "vcpus": lambda r: (-r.vcpus, r.id),
    "time": lambda r: (-r.cpu_time, r.id),
    "blk": lambda r: (-(r.blk_rate or 0.0), r.id),
    "net": lambda r: (-(r.net_rate or 0.0), r.id),
}
# Key presses in the live view.
_KEYS = {"i": "id", "n": "name", "s": "state", "c": "cpu", "m": "mem", "v": "vcpus", "t": "time",
         "b": "blk", "w": "net"}


class TopModel:
    """Turns successive samples into rows with CPU % from the cpu_time deltas."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, str], tuple[int, float]] = {}
        self.sampled_at = 0.0  # the time of the last samples
        self._last_dev: dict[tuple[int, str], tuple[tuple[int, int, int, int], float]] = {}

    def update(self, samples: Sequence[tuple[Domain, DomainInfo]], now: float,
               devices: dict[Domain, DeviceStats] | None = None,
               devices_at: float | None = None) -> list[DomainRow]:
        """Return the rows for ``samples`` taken at ``now`` (a monotonic time, seconds).

        ``devices`` (each domain's device counters, read with the samples, at ``devices_at``
        if that differs from ``now``) gives the rows their disk and network rates.
        """
        last, last_dev = self._last, self._last_dev
        fresh: dict[tuple[int, str], tuple[int, float]] = {}
        fresh_dev: dict[tuple[int, str], tuple[tuple[int, int, int, int], float]] = {}
        dev_now = now if devices_at is None else devices_at
        rows = []
        for dom, info in samples:
            key = (dom.id, dom.name)
            cpu_time = info.cpu_time
            fresh[key] = (cpu_time, now)
            before = last.get(key)
            percent = None
            if before is not None and now > before[1]:
                percent = max(0.0, (cpu_time - before[0]) / ((now - before[1]) * 1e7))
            rates: tuple[float | None, ...] = (None, None, None, None)
            stats = devices.get(dom) if devices is not None else None
            if stats is not None:
                totals = (sum(b.rd_bytes for b in stats.block.values()),
                          sum(b.wr_bytes for b in stats.block.values()),
                          sum(i.rx_bytes for i in stats.interfaces.values()),
                          sum(i.tx_bytes for i in stats.interfaces.values()))
                fresh_dev[key] = (totals, dev_now)
                seen = last_dev.get(key)
                if seen is not None and dev_now > seen[1]:
                    span = dev_now - seen[1]
                    rates = tuple(max(0.0, (t - b) / span)
                                  for t, b in zip(totals, seen[0], strict=True))
            # built once, rates included: copying a frozen row (dataclasses.replace) costs more
            rows.append(DomainRow(dom.id, dom.name, info.state, info.nr_virt_cpu, info.memory,
                                  info.max_mem, cpu_time, percent, *rates))
        self._last = fresh
        self.sampled_at = now
        if devices is not None:
            self._last_dev = fresh_dev
        return rows


def sort_rows(rows: list[DomainRow], key: str, reverse: bool = False) -> list[DomainRow]:
    """Return ``rows`` sorted by ``key`` (one of :data:`SORT_KEYS`)."""
    return sorted(rows, key=SORT_KEYS[key], reverse=reverse)


async def collect(conn: Connection) -> list[tuple[Domain, DomainInfo]]:
    """Return ``(domain, info)`` for every running domain in one refresh; vanished ones skipped."""
    return await conn.domain_infos()


async def collect_devices(conn: Connection,
                          domains: Sequence[Domain]) -> dict[Domain, DeviceStats] | None:
    """Return every domain's device counters in one read, None where the node has none."""
    if "devstats" in conn.unavailable:
        return None
    return dict(await conn.device_stats(domains))


def _summary(rows: Sequence[DomainRow], node_cpus: int | None = None) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        word = state_name(row.state)
        counts[word] = counts.get(word, 0) + 1
    parts = ", ".join(f"{n} {word}" for word, n in sorted(counts.items(), key=lambda p: -p[1]))
    total_mem = sum(r.memory for r in rows)
    total_cpu = sum(r.cpu_percent or 0.0 for r in rows)
    # CPU% is per CPU (100% = one CPU busy), so the sum is read against the node's whole
    cpu = f"CPU {total_cpu:.1f}%"
    if node_cpus:
        cpu += f" of {node_cpus * 100}% ({node_cpus} CPUs)"
    return f"{len(rows)} domains ({parts})   memory {total_mem // 1024} MiB   {cpu}"


_STATE_STYLE = {
    DomainState.RUNNING: "green", DomainState.BLOCKED: "green", DomainState.PAUSED: "yellow",
    DomainState.SHUTDOWN: "magenta", DomainState.SHUTOFF: "dim", DomainState.CRASHED: "bold red",
}


# Lines a frame spends outside the rows: the header, the column titles, the summary and the
# key help. They are kept whatever the terminal's height; rows get what is left.
_FRAME_LINES = 4
# The NAME column is as wide as the longest name it shows, within these bounds.
_NAME_MIN, _NAME_MAX = 4, 40


def _line(text: str | Text, style: str = "") -> Text:
    from rich.text import Text

    line = text if isinstance(text, Text) else Text(text, style=style)
    line.no_wrap = True
    line.overflow = "ellipsis"
    return line


def build_frame(rows: Sequence[DomainRow], *, uri: str, sort: str, reverse: bool,
                interval: float, height: int, clock: str | None = None,
                node_cpus: int | None = None) -> Group:
    """Return one dashboard frame: a header and as many sorted rows as fit in ``height``.

    The header and the two footer lines are always drawn, each on one line (cut with an
    ellipsis on a narrow terminal), so a small terminal loses rows, never the frame's edges.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    ordered = sort_rows(list(rows), sort, reverse)
    visible = max(0, height - _FRAME_LINES)
    shown = ordered[:visible]
    header = _line(Text.assemble(
        ("aiovirsh top", "bold"), "  ", clock or time.strftime("%H:%M:%S"),
        f"  every {interval:g}s  sort: {sort}", " (reversed)" if reverse else "", f"  {uri}",
    ))
    name_width = min(_NAME_MAX, max([_NAME_MIN, *(len(r.name) for r in shown)]))
    grid = Table(box=None, expand=False, pad_edge=False, show_edge=False, header_style="bold")
    grid.add_column("ID", justify="right", no_wrap=True)
    grid.add_column("NAME", no_wrap=True, overflow="ellipsis", min_width=name_width,
                    max_width=name_width)
    grid.add_column("STATE", no_wrap=True)
    grid.add_column("VCPUS", justify="right", no_wrap=True)
    grid.add_column("MEM(MiB)", justify="right", no_wrap=True)
    grid.add_column("MAXMEM(MiB)", justify="right", no_wrap=True)
    grid.add_column("CPU%", justify="right", no_wrap=True)
    grid.add_column("CPU TIME", justify="right", no_wrap=True)
    grid.add_column("BLK(KiB/s)", justify="right", no_wrap=True)
    grid.add_column("NET(KiB/s)", justify="right", no_wrap=True)
    for row in shown:
        grid.add_row(
            str(row.id), row.name,
            Text(state_name(row.state), style=_STATE_STYLE.get(row.state, "")),
            str(row.vcpus), str(row.memory // 1024), str(row.max_mem // 1024),
            "-" if row.cpu_percent is None else f"{row.cpu_percent:.1f}",
            format_cpu_time(row.cpu_time), _kib_rate(row.blk_rate), _kib_rate(row.net_rate),
        )
    hidden = len(ordered) - len(shown)
    summary = _line(_summary(rows, node_cpus) + (f"   ({hidden} more below)" if hidden else ""),
                    "dim")
    keys = _line("keys: c cpu  m mem  n name  i id  s state  v vcpus  t time  b blk  w net  "
                 "r reverse  q quit", "dim")
    return Group(header, grid, summary, keys)


def text_snapshot(rows: Sequence[DomainRow], sort: str, reverse: bool,
                  node_cpus: int | None = None) -> str:
    """Return every row as a plain aligned table (``top --once``)."""
    ordered = sort_rows(list(rows), sort, reverse)
    body = table(
        ("Id", "Name", "State", "VCPUs", "Memory(KiB)", "MaxMem(KiB)", "CPU%", "CPU time",
         "Blk(KiB/s)", "Net(KiB/s)"),
        ((r.id, r.name, state_name(r.state), r.vcpus, r.memory, r.max_mem,
          "-" if r.cpu_percent is None else f"{r.cpu_percent:.1f}", format_cpu_time(r.cpu_time),
          _kib_rate(r.blk_rate), _kib_rate(r.net_rate))
         for r in ordered),
        right=(True, False, False, True, True, True, True, True, True, True),
    )
    return body + "\n\n" + _summary(rows, node_cpus)


def _kib_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate / 1024:.1f}"


async def _sample(table: DomainTable[Domain], model: TopModel, after: float,
                  limit: float) -> list[DomainRow]:
    """Return the rows of the table's first refresh after ``after`` (its confirmed_at)."""
    with contextlib.suppress(VirtError):  # a late refresh: draw the rows as they are
        await table.wait_for(lambda t: t.confirmed_at > after, timeout=limit)
    samples = [(e.domain, DomainInfo(e.state, e.max_memory, e.memory, e.vcpus, e.cpu_time))
               for e in table.values()]
    devices = None
    if samples:  # the device counters, read at once for every domain the table holds
        devices = await collect_devices(samples[0][0].connection, [d for d, _ in samples])
    return model.update(samples, table.confirmed_at, devices)


async def run_top(conn: Connection, args: argparse.Namespace, *, as_json: bool) -> None:
    """Run the dashboard (or print one snapshot with ``--once``)."""
    interval = args.interval
    if interval is None:
        interval = ONCE_INTERVAL if args.once else LIVE_INTERVAL
    if interval <= 0:
        raise VirtError(ErrorNumber.INVALID_ARG,
                        info=f"--interval must be more than 0, not {interval}")
    node_cpus = await _node_cpus(conn)
    if args.once:
        rows = await _once(conn, interval)
        if as_json:
            ordered = sort_rows(rows, args.sort, args.reverse)
            print(to_json({"domains": [r.as_dict() for r in ordered], "node_cpus": node_cpus,
                           "interval": interval, "summary": _summary(rows, node_cpus)}),
                  flush=True)
        else:
            print(text_snapshot(rows, args.sort, args.reverse, node_cpus), flush=True)
        return
    uri = args.connect or "xen:///"
    async with conn.domain_table(interval=interval) as domains:
        await _live(domains, args, TopModel(), uri, node_cpus, interval)


async def _once(conn: Connection, interval: float) -> list[DomainRow]:
    """Return the rows of two bulk reads ``interval`` seconds apart (the rates need both)."""
    model = TopModel()
    first = time.monotonic()
    await _read(conn, model)
    await asyncio.sleep(max(0.0, first + interval - time.monotonic()))
    return await _read(conn, model)


async def _read(conn: Connection, model: TopModel) -> list[DomainRow]:
    """Return the rows of one bulk read of every domain's info and device counters."""
    at = time.monotonic()
    samples = await collect(conn)
    devices_at = time.monotonic()
    devices = await collect_devices(conn, [d for d, _ in samples]) if samples else None
    return model.update(samples, at, devices, devices_at)


async def _node_cpus(conn: Connection) -> int | None:
    """Return the node's CPU count, the scale of the CPU% total (None if the node won't say)."""
    try:
        return (await conn.node_info()).cpus
    except VirtError:
        return None


async def _live(domains: DomainTable[Domain], args: argparse.Namespace, model: TopModel,
                uri: str, node_cpus: int | None, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    sort, reverse = args.sort, args.reverse
    keys: asyncio.Queue[str] = asyncio.Queue()
    refreshes = 0
    with _keyboard(keys), Live(console=console, screen=True, auto_refresh=False,
                               redirect_stdout=False, redirect_stderr=False) as live:
        rows: list[DomainRow] = []
        next_sample = 0.0
        while args.iterations is None or refreshes < args.iterations:
            now = time.monotonic()
            if now >= next_sample:
                rows = await _sample(domains, model, model.sampled_at, 2 * interval + 5.0)
                next_sample = now + interval
                refreshes += 1
            live.update(build_frame(rows, uri=uri, sort=sort, reverse=reverse,
                                    interval=interval, height=console.size.height,
                                    node_cpus=node_cpus),
                        refresh=True)
            if args.iterations is not None and refreshes >= args.iterations:
                break
            try:
                async with asyncio.timeout(max(0.0, next_sample - time.monotonic())):
                    key = await keys.get()
            except TimeoutError:
                continue
            if key in ("q", "\x03"):
                break
            if key == "r":
                reverse = not reverse
            elif key in _KEYS:
                sort = _KEYS[key]


@contextlib.contextmanager
def _keyboard(queue: asyncio.Queue[str]) -> Iterator[None]:
    """Feed single key presses from a terminal stdin into ``queue`` (no-op otherwise)."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def readable() -> None:
        with contextlib.suppress(OSError):
            for ch in os.read(fd, 32).decode(errors="ignore"):
                queue.put_nowait(ch.lower())

    try:
        tty.setcbreak(fd)
        loop.add_reader(fd, readable)
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
