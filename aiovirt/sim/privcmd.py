"""The simulated node's hypercall endpoint: the server end of :mod:`aiovirt.protocol.privcmd`.

A real dom0 talks to the hypervisor through ioctls on ``/proc/xen/privcmd``. The simulated node
offers the same few operations on a unix socket (``DIR/privcmd``): fixed 24-byte requests, one
reply each, answered in order per connection, any number of connections at once. The hypervisor
backend's ``sim`` driver makes one blocking round trip per call, as a hypercall would.

Payloads not described by the protocol module are defined here and in the client
(:mod:`aiovirt.backends.privcmd_sim`) alike: XEN_VERSION answers ``result = major << 16 | minor``
(what the real ``xen_version`` hypercall returns) with the extra version string as UTF-8 payload;
PHYSINFO answers one :data:`~aiovirt.protocol.privcmd.PHYSINFO` struct.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from aiovirt.protocol.privcmd import (
    DOMAIN_INFO,
    MAX_BATCH,
    PHYSINFO,
    REPLY,
    REQUEST,
    DomainInfoRecord,
    PhysInfo,
    PrivcmdOp,
)

log = logging.getLogger(__name__)

__all__ = ["HypervisorModel", "PrivcmdServer"]


class HypervisorModel(Protocol):
    """What the endpoint needs from the node: the hypervisor's view of its domains.

    Failing operations raise ``OSError`` with Xen's errno (``ESRCH`` for a missing domain,
    ``EINVAL`` where Xen refuses); the endpoint answers ``-errno``.
    """

    def info_records(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of domains with id >= ``first_domid``, in order."""
        ...

    def hv_pause(self, domid: int) -> None:
        """Pause domain ``domid``."""
        ...

    def hv_unpause(self, domid: int) -> None:
        """Unpause domain ``domid``."""
        ...

    def hv_destroy(self, domid: int) -> None:
        """Destroy domain ``domid``."""
        ...

    def hv_set_max_mem(self, domid: int, kib: int) -> None:
        """Set the memory limit of domain ``domid`` to ``kib`` KiB."""
        ...

    def xen_version(self) -> tuple[int, int, str]:
        """Return ``(major, minor, extra)``, e.g. ``(3, 0, ".2")``."""
        ...

    def physinfo(self) -> PhysInfo:
        """Return the node's physical description."""
        ...



class PrivcmdServer:
    """The hypercall endpoint of a simulated node, served on a unix socket at ``path``.

    ``stats`` counts the requests answered, per :class:`PrivcmdOp` (tests and benchmarks read
    ``stats[PrivcmdOp.GETDOMAININFOLIST]`` to see how many batch calls a client made).
    Use ``async with PrivcmdServer(model, path):`` or :meth:`start` / :meth:`close`.
    """

    def __init__(self, model: HypervisorModel, path: str | os.PathLike[str]) -> None:
        self.model = model
        self.path = os.fspath(path)
        self.stats: Counter[PrivcmdOp] = Counter()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._inode: tuple[int, int] | None = None
        self._ops: dict[int, Callable[[int, int, int], tuple[int, bytes]]] = {
            PrivcmdOp.GETDOMAININFOLIST: self._getdomaininfolist,
            PrivcmdOp.PAUSEDOMAIN: self._pause,
            PrivcmdOp.UNPAUSEDOMAIN: self._unpause,
            PrivcmdOp.DESTROYDOMAIN: self._destroy,
            PrivcmdOp.SETDOMAINMAXMEM: self._setmaxmem,
            PrivcmdOp.XEN_VERSION: self._version,
            PrivcmdOp.PHYSINFO: self._physinfo,
        }

    async def __aenter__(self) -> PrivcmdServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on :attr:`path` (a stale socket there is replaced; any other file is kept)."""
        if self._server is not None:
            return
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        log.debug("privcmd endpoint listening on %s", self.path)

    async def close(self) -> None:
        """Stop listening, drop every connection and remove the socket file."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        # Remove the socket file only if it is still ours (not a successor's).
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    request = await reader.readexactly(REQUEST.size)
                except asyncio.IncompleteReadError:
                    return
                op, seq, domid, count, value = REQUEST.unpack(request)
                result, payload = self._dispatch(op, domid, count, value)
                writer.write(REPLY.pack(op, seq, result, len(payload)) + payload)
                await writer.drain()
        except ConnectionError:
            pass  # the client went away; a cancellation (close) propagates
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _dispatch(self, op: int, domid: int, count: int, value: int) -> tuple[int, bytes]:
        handler = self._ops.get(op)
        if handler is None:
            return -errno.ENOSYS, b""
        self.stats[PrivcmdOp(op)] += 1
        try:
            return handler(domid, count, value)
        except OSError as exc:
            code = exc.errno if exc.errno else errno.EIO
            return -code, b""
        except Exception:
            log.exception("privcmd %s for domain %d failed in the model", PrivcmdOp(op).name, domid)
            return -errno.EIO, b""

    def _getdomaininfolist(self, first: int, count: int, _value: int) -> tuple[int, bytes]:
        records = self.model.info_records(first, min(count, MAX_BATCH))
        pack = DOMAIN_INFO.pack
        return len(records), b"".join([pack(*rec) for rec in records])

    def _pause(self, domid: int, _count: int, _value: int) -> tuple[int, bytes]:
        self.model.hv_pause(domid)
        return 0, b""

    def _unpause(self, domid: int, _count: int, _value: int) -> tuple[int, bytes]:
        self.model.hv_unpause(domid)
        return 0, b""

    def _destroy(self, domid: int, _count: int, _value: int) -> tuple[int, bytes]:
        self.model.hv_destroy(domid)
        return 0, b""

    def _setmaxmem(self, domid: int, _count: int, kib: int) -> tuple[int, bytes]:
        self.model.hv_set_max_mem(domid, kib)
        return 0, b""

    def _version(self, _domid: int, _count: int, _value: int) -> tuple[int, bytes]:
        major, minor, extra = self.model.xen_version()
        return ((major & 0xFFFF) << 16) | (minor & 0xFFFF), extra.encode()

    def _physinfo(self, _domid: int, _count: int, _value: int) -> tuple[int, bytes]:
        return 0, PHYSINFO.pack(*self.model.physinfo())
