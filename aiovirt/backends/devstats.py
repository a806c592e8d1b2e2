"""Reads a dom0's block and network statistics files, off the event loop.

:class:`DeviceStatsReader` reads, under a root directory (``/`` on a real dom0, the simulated
node's ``DIR/root``), the block backends' ``sys/bus/xen-backend/devices/vbd-*/statistics/``
counters and ``proc/net/dev``, where Xen's ``xentop`` reads them. Every read is blocking file
I/O, so it runs in a worker thread (anyio's, bounded by the reader's own capacity limiter);
the event loop only awaits. :meth:`DeviceStatsReader.snapshot` reads everything at once and is
coalesced: callers that ask while a snapshot is forming share it, and no caller gets a snapshot
that started before its call. The text is decoded by :mod:`aiovirt.protocol.devstats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.devstats import (
    PROC_NET_DEV,
    VBD_DEVICES_DIR,
    BlockStats,
    InterfaceStats,
    block_stats,
    parse_counter,
    parse_proc_net_dev,
    parse_vbd_dirname,
    parse_vif_name,
    vbd_dirname,
)

__all__ = ["DeviceSnapshot", "DeviceStatsReader"]

log = logging.getLogger(__name__)

# The counters libvirt's block statistics need (of the ones blkback keeps).
_WANTED = ("rd_req", "rd_sect", "wr_req", "wr_sect", "oo_req")
_READ_SIZE = 64  # a counter is at most 20 digits and a newline


@dataclass(frozen=True)
class DeviceSnapshot:
    """Every device's counters at one moment: ``block[domid][devnum]``, ``net[domid][name]``.

    Network counters are the guest's view (see :mod:`aiovirt.protocol.devstats`).
    """

    block: dict[int, dict[int, BlockStats]] = field(default_factory=dict)
    net: dict[int, dict[str, InterfaceStats]] = field(default_factory=dict)


def _system_error(path: str, exc: OSError) -> VirtError:
    return VirtError(ErrorNumber.SYSTEM_ERROR, ErrorDomain.STATS_LINUX,
                     f"cannot read {path}: {exc.strerror or exc}")


def _read_counters(stats_dir: str, dir_fd: int | None = None) -> BlockStats | None:
    """Return the block statistics in ``stats_dir`` (None: the device is not there).

    ``stats_dir`` is relative to the directory open as ``dir_fd``, if given: the bulk read
    opens each counter by its path under the backends' directory, three system calls a
    counter, rather than opening each device's directory as well.
    """
    values: dict[str, int] = {}
    for name in _WANTED:
        path = f"{stats_dir}/{name}"
        try:
            fd = os.open(path, os.O_RDONLY, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            continue  # the device went away, or an older blkback lacks this counter
        try:
            text = os.read(fd, _READ_SIZE)
        finally:
            os.close(fd)
        values[name] = parse_counter(text, path)
    if not values:
        return None
    return block_stats(values)


def _read_net(path: str, domid: int | None = None) -> dict[int, dict[str, InterfaceStats]]:
    """Return the vifs' guest-view counters by domid (only ``domid``'s, if given)."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    if domid is not None:  # one domain's lines only: no need to parse every guest's
        prefix = f"vif{domid}.".encode()
        text = b"\n".join(line for line in text.split(b"\n")
                          if line.lstrip().startswith(prefix))
    out: dict[int, dict[str, InterfaceStats]] = {}
    for name, counters in parse_proc_net_dev(text).items():
        ids = parse_vif_name(name)
        if ids is not None:
            out.setdefault(ids[0], {})[name] = counters.guest_view()
    return out


class DeviceStatsReader:
    """The statistics files of one dom0, read under ``root`` in worker threads.

    ``async with DeviceStatsReader("/") as reader``; :meth:`close` waits for its reads.
    """

    def __init__(self, root: str | os.PathLike[str] = "/", *, threads: int = 2) -> None:
        """Read under ``root``, at most ``threads`` blocking reads at once."""
        self.root = os.fspath(root)
        self._devices = os.path.join(self.root, VBD_DEVICES_DIR)
        self._net = os.path.join(self.root, PROC_NET_DEV)
        self._limiter = anyio.CapacityLimiter(threads)
        self._forming: asyncio.Future[DeviceSnapshot] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.snapshots = 0  # how many full reads ran (the coalescing's measure)

    def __repr__(self) -> str:
        return f"<DeviceStatsReader root={self.root!r}>"

    async def __aenter__(self) -> DeviceStatsReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop serving: a forming snapshot fails, the running one is awaited."""
        self._closed = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        forming, self._forming = self._forming, None
        if forming is not None and not forming.done():
            forming.set_exception(self._closed_error())

    def _closed_error(self) -> VirtError:
        return VirtError(ErrorNumber.INVALID_CONN, ErrorDomain.STATS_LINUX,
                         f"the statistics reader of {self.root!r} is closed")

    async def _run(self, func: object, *args: object) -> object:
        if self._closed:
            raise self._closed_error()
        try:
            return await anyio.to_thread.run_sync(func, *args,  # type: ignore[arg-type]
                                                  limiter=self._limiter)
        except PermissionError as exc:
            raise _system_error(exc.filename or self.root, exc) from exc
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise VirtError(ErrorNumber.NO_SUPPORT, ErrorDomain.STATS_LINUX,
                                f"no device statistics under {self.root!r}: "
                                f"{exc.strerror}") from exc
            raise _system_error(exc.filename or self.root, exc) from exc

    # -- one device ---------------------------------------------------------------------------

    async def block_stats(self, domid: int, devnum: int) -> BlockStats | None:
        """Return the counters of domain ``domid``'s block backend ``devnum``, None if absent."""
        stats_dir = os.path.join(self._devices, vbd_dirname(domid, devnum), "statistics")
        result = await self._run(_read_counters, stats_dir)
        assert result is None or isinstance(result, BlockStats)
        return result

    async def interface_stats(self, domid: int) -> dict[str, InterfaceStats]:
        """Return the guest-view counters of domain ``domid``'s vifs, by name."""
        result = await self._run(_read_net, self._net, domid)
        assert isinstance(result, dict)
        found: dict[str, InterfaceStats] = result.get(domid, {})
        return found

    # -- every device at once -----------------------------------------------------------------

    async def snapshot(self) -> DeviceSnapshot:
        """Return every device's counters, from one read shared with concurrent callers."""
        if self._closed:
            raise self._closed_error()
        loop = asyncio.get_running_loop()
        fut = self._forming
        if fut is None:
            fut = self._forming = loop.create_future()
            if self._runner is None:
                self._runner = loop.create_task(self._serve(),
                                                name=f"aiovirt device stats ({self.root})")
        # Cancelling one caller leaves the shared read to the others.
        return await asyncio.shield(fut)

    async def _serve(self) -> None:
        try:
            while self._forming is not None:
                fut, self._forming = self._forming, None
                try:
                    snap = await self._run(self._read_all)
                except asyncio.CancelledError:
                    if not fut.done():
                        fut.set_exception(self._closed_error())
                    raise
                except BaseException as exc:  # each waiter sees the error
                    if not fut.done():
                        fut.set_exception(exc)
                    fut.exception()  # retrieved: no "never retrieved" warning if none waits
                else:
                    if not fut.done():
                        fut.set_result(snap)  # type: ignore[arg-type]
        finally:
            self._runner = None

    def _read_all(self) -> DeviceSnapshot:
        self.snapshots += 1
        block: dict[int, dict[int, BlockStats]] = {}
        try:
            dfd = os.open(self._devices, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            dfd = None
        if dfd is not None:
            try:
                for name in os.listdir(dfd):
                    ids = parse_vbd_dirname(name)
                    if ids is None:
                        continue
                    stats = _read_counters(f"{name}/statistics", dfd)
                    if stats is not None:  # None: it went away while we listed
                        block.setdefault(ids[0], {})[ids[1]] = stats
            finally:
                os.close(dfd)
        return DeviceSnapshot(block, _read_net(self._net))
