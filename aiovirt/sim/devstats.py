"""The simulated node's device statistics files: sysfs block backends and ``/proc/net/dev``.

A real dom0 shows each guest's block backend as
``/sys/bus/xen-backend/devices/vbd-<domid>-<devnum>/statistics/{rd_req,rd_sect,...}`` and each
network backend as a ``vif<domid>.<n>`` line of ``/proc/net/dev``; ``xentop`` and libvirt read
them there. :class:`SimDeviceStats` writes the same files under ``DIR/xen-root`` (so a client reads
them with the same code, given that root), and rewrites them every :attr:`interval` seconds:

- counters grow while a guest runs, at steady per-device rates drawn from its UUID, and stand
  still while it is paused, shut down or dying (they follow the guest's own run time);
- a guest's backends appear once it exists and vanish with it, as blkback/netback devices do;
- a counter never goes backwards across restarts of the node process on the same directory:
  the values found on disk at start are carried on (a real dom0's counters live in the kernel,
  which outlives any daemon).

Each file is replaced atomically (written aside, then renamed), so a reader never sees a
half-written counter. The writes run in a worker thread, off the node's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiovirt.protocol.devstats import (
    PROC_NET_DEV,
    VBD_DEVICES_DIR,
    VifCounters,
    blkdev_number,
    format_proc_net_dev,
    parse_counter,
    parse_proc_net_dev,
    parse_vbd_dirname,
    vbd_dirname,
    vif_name,
)

if TYPE_CHECKING:
    from aiovirt.sim.domain import SimDomain


class _Node(Protocol):
    """What the files are written from: the node's domains (a SimNode)."""

    @property
    def domains(self) -> list[SimDomain]: ...

__all__ = ["DEVICE_STATS_LIMIT", "XEN_ROOT", "SimDeviceStats"]

# The node's private root for what a dom0 keeps under / (the one Xen's tools see with
# --xen-tools): the statistics files are under DIR/xen-root/sys/... and DIR/xen-root/proc/...
XEN_ROOT = "xen-root"
# A node started with more guests serves no statistics files unless asked (device_stats=True,
# --device-stats): seven inodes per guest make a big node slow to start and to remove.
DEVICE_STATS_LIMIT = 1024

log = logging.getLogger(__name__)

_SIZES = (8, 8, 16, 32, 64, 128)  # sectors per request
# The counters written: the five xentop and libvirt read (blkback also keeps f_req, ds_req).
_FILES = ("oo_req", "rd_req", "wr_req", "rd_sect", "wr_sect")


class _Rates:
    """One device's steady rates per second of guest run time, drawn from its identity."""

    __slots__ = ("a", "b", "c", "d", "e", "f")

    def __init__(self, key: str) -> None:
        rng = random.Random(key)
        self.a = rng.uniform(5.0, 60.0)     # read requests / s   | packets the guest sends / s
        self.b = rng.choice(_SIZES)         # sectors per read    | (bytes per packet sent)
        self.c = rng.uniform(2.0, 40.0)     # write requests / s  | packets the guest gets / s
        self.d = rng.choice(_SIZES)         # sectors per write   | (bytes per packet got)
        self.e = rng.uniform(100.0, 1400.0)  # bytes per packet the guest sends
        self.f = rng.uniform(100.0, 1400.0)  # bytes per packet the guest receives


class SimDeviceStats:
    """Writes the node's statistics files under ``root``; owned and closed by the node."""

    def __init__(self, node: _Node, root: str | os.PathLike[str],
                 interval: float | None = 1.0) -> None:
        """Serve ``node``'s device counters under ``root``, rewritten every ``interval`` s
        (None: only when :meth:`refresh` is called)."""
        self.node = node
        self.root = Path(root)
        self.interval = interval
        self._devices = self.root / VBD_DEVICES_DIR
        self._net = self.root / PROC_NET_DEV
        self._active: dict[tuple[int, str], float] = {}  # (domid, uuid) -> run seconds
        self._last = time.monotonic()
        self._rates: dict[str, _Rates] = {}
        self._written: dict[str, str] = {}  # path -> text last written
        self._dirs: set[str] = set()  # vbd directories present
        self._carry: dict[str, int] = {}  # path -> value found on disk at start
        self._net_carry: dict[str, VifCounters] = {}
        self._offsets: dict[str, int] = {}  # path -> what to add to carry on from a restart
        self._net_offsets: dict[str, tuple[int, ...]] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.refreshes = 0
        # At most this many counter files are rewritten per periodic refresh (a new backend's
        # are always written at once), so a node of thousands of guests does not spend its
        # CPUs on them: its counters then move every few intervals, in turn.
        self.max_writes = 2000
        self._cursor = 0

    @property
    def devices_dir(self) -> Path:
        """Return the directory holding the ``vbd-<domid>-<devnum>`` backends."""
        return self._devices

    @property
    def proc_net_dev(self) -> Path:
        """Return the path of the node's ``/proc/net/dev``."""
        return self._net

    async def start(self) -> None:
        """Write every file once and start rewriting them every :attr:`interval` seconds."""
        await asyncio.to_thread(self._load_previous)
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="aiovirt sim device statistics")

    async def close(self) -> None:
        """Stop rewriting (the files stay, as a kernel's counters outlive the daemons)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval if self.interval else 3600.0)
            if self.interval:
                try:
                    await self.refresh(full=False)
                except OSError as exc:
                    log.warning("cannot write the device statistics under %s: %s",
                                self.root, exc)

    async def refresh(self, *, full: bool = True) -> None:
        """Bring the files up to date now (the counters as of this moment).

        ``full=False`` (the periodic rewrite) rewrites at most :attr:`max_writes` counter
        files, taking the backends in turn.
        """
        async with self._lock:
            writes, net_text, dirs = self._compute()
            await asyncio.to_thread(self._write, writes, net_text, dirs, full)
            self.refreshes += 1

    # -- the counters ------------------------------------------------------------------------

    def _rates_of(self, key: str) -> _Rates:
        rates = self._rates.get(key)
        if rates is None:
            rates = self._rates[key] = _Rates(key)
        return rates

    def _run_seconds(self, now: float, wall: float) -> dict[int, float]:
        """Advance each guest's run time to ``now``; return it by domid."""
        elapsed = max(0.0, now - self._last)
        self._last = now
        out: dict[int, float] = {}
        active: dict[tuple[int, str], float] = {}
        for dom in self.node.domains:
            if dom.domid == 0:
                continue
            key = (dom.domid, str(dom.uuid))
            seconds = self._active.get(key)
            if seconds is None:
                # a guest found running at start has run since its start time
                start = dom.start_time if dom.start_time is not None else wall
                seconds = max(0.0, wall - start) if dom.consuming else 0.0
            elif dom.consuming:
                seconds += elapsed
            active[key] = seconds
            out[dom.domid] = seconds
        self._active = active
        return out

    def _compute(self) -> tuple[dict[str, str], str, set[str]]:
        now, wall = time.monotonic(), time.time()
        run = self._run_seconds(now, wall)
        writes: dict[str, str] = {}
        dirs: set[str] = set()
        net_lines: list[tuple[str, VifCounters]] = []
        carry = self._carry
        for dom in self.node.domains:
            seconds = run.get(dom.domid)
            if seconds is None:
                continue
            for vbd in dom.vbds:
                self._vbd_files(dom, vbd.devid, vbd.dev, seconds, writes, dirs)
            for vif in dom.vifs:
                name = vif.vifname or vif_name(dom.domid, vif.devid)
                net_lines.append((name, self._vif_counters(dom, vif.devid, seconds)))
        if carry or self._net_carry:
            # the first write after a restart: counters go on from where the files were
            for path, text in writes.items():
                floor = carry.get(path)
                if floor is not None and int(text) < floor:
                    self._offsets[path] = floor - int(text)
            for name, counters in net_lines:
                old = self._net_carry.get(name)
                if old is not None:
                    self._net_offsets[name] = tuple(
                        max(0, o - n) for o, n in zip(old, counters, strict=True))
            self._carry, self._net_carry = {}, {}
        for path, offset in self._offsets.items():
            value = writes.get(path)
            if value is not None:
                writes[path] = f"{int(value) + offset}\n"
        if self._net_offsets:
            net_lines = [(name, _plus(counters, self._net_offsets.get(name)))
                         for name, counters in net_lines]
        total = sum(run.values())
        # dom0's own interfaces, which every reader must skip
        dom0 = [("lo", VifCounters(*_scaled(total, 0.5, 600.0), 0, 0, 0, 0, 0, 0,
                                   *_scaled(total, 0.5, 600.0), 0, 0, 0, 0, 0, 0)),
                ("eth0", VifCounters(*_scaled(total, 9.0, 1200.0), 0, 0, 0, 0, 0, 0,
                                     *_scaled(total, 7.0, 1100.0), 0, 0, 0, 0, 0, 0))]
        return writes, format_proc_net_dev(dom0 + net_lines), dirs

    def _vbd_files(self, dom: SimDomain, devid: int, dev: str, seconds: float,
                   writes: dict[str, str], dirs: set[str]) -> None:
        try:
            devnum = blkdev_number(dev)
        except Exception:
            devnum = devid
        directory = str(self._devices / vbd_dirname(dom.domid, devnum))
        dirs.add(directory)
        r = self._rates_of(f"{dom.uuid}-vbd-{devnum}")
        rd_req = int(seconds * r.a)
        wr_req = int(seconds * r.c)
        values = (rd_req // 4000, rd_req, wr_req, rd_req * r.b, wr_req * r.d)
        stats = directory + "/statistics/"
        for name, value in zip(_FILES, values, strict=True):
            writes[stats + name] = f"{value}\n"

    def _vif_counters(self, dom: SimDomain, devid: int, seconds: float) -> VifCounters:
        r = self._rates_of(f"{dom.uuid}-vif-{devid}")
        sent = int(seconds * r.a)  # by the guest: the vif receives them
        got = int(seconds * r.c)  # by the guest: the vif transmits them
        return VifCounters(int(sent * r.e), sent, 0, 0, 0, 0, 0, 0,
                           int(got * r.f), got, 0, got // 20000, 0, 0, 0, 0)

    # -- the files ---------------------------------------------------------------------------

    def _load_previous(self) -> None:
        """Remember the counters a previous run of the node left, to carry them on."""
        carry: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._devices):
                if parse_vbd_dirname(entry.name) is None:
                    continue
                stats = os.path.join(entry.path, "statistics")
                for name in _FILES:
                    path = os.path.join(stats, name)
                    try:
                        with open(path, "rb") as f:
                            carry[path] = parse_counter(f.read(), path)
                    except Exception:  # unreadable or not a counter: start afresh
                        continue
                self._dirs.add(entry.path)
        self._carry = carry
        with contextlib.suppress(FileNotFoundError):
            self._net_carry = parse_proc_net_dev(self._net.read_bytes())

    def _write(self, writes: dict[str, str], net_text: str, dirs: set[str],
               full: bool = True) -> None:
        written = self._written
        for directory in self._dirs - dirs:
            shutil.rmtree(directory, ignore_errors=True)
            for name in _FILES:
                written.pop(f"{directory}/statistics/{name}", None)
        fresh = dirs - self._dirs
        for directory in fresh:
            os.makedirs(directory + "/statistics", exist_ok=True)
            for name in _FILES:  # nobody reads a new backend yet: no need to write aside
                path = f"{directory}/statistics/{name}"
                text = writes[path]
                with open(path, "w", encoding="ascii") as f:
                    f.write(text)
                written[path] = text
        kept = sorted(dirs - fresh)
        if not full and kept and len(kept) * len(_FILES) > self.max_writes:
            turn = max(1, self.max_writes // len(_FILES))
            start = self._cursor % len(kept)
            kept = (kept + kept)[start:start + turn]
            self._cursor = start + turn
        self._dirs = dirs
        for directory in kept:
            for name in _FILES:
                path = f"{directory}/statistics/{name}"
                text = writes[path]
                if written.get(path) != text:
                    _replace(path, text)
                    written[path] = text
        self._net.parent.mkdir(parents=True, exist_ok=True)
        if written.get(str(self._net)) != net_text:
            _replace(str(self._net), net_text)
            written[str(self._net)] = net_text


def _plus(counters: VifCounters, offsets: tuple[int, ...] | None) -> VifCounters:
    if offsets is None:
        return counters
    return VifCounters._make(c + o for c, o in zip(counters, offsets, strict=True))


def _scaled(seconds: float, per_second: float, packet_bytes: float) -> tuple[int, int]:
    packets = int(seconds * per_second)
    return int(packets * packet_bytes), packets


def _replace(path: str, text: str) -> None:
    tmp = path + ".new"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)
