"""The ``sim`` hypervisor driver: blocking round trips to a simulated node's ``DIR/privcmd``.

Every call is one request and one reply on a unix socket, made from a worker thread of the
hypervisor executor, so it blocks like a hypercall. Each worker thread keeps its own socket, so
calls from different threads run in parallel; a socket that fails is dropped and the next call
from that thread connects again. Hypercall failures come back as ``OSError(errno)``, exactly as
a ``-1``/``errno`` return of libxenctrl would.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import threading

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.privcmd import (
    MAX_BATCH,
    PHYSINFO,
    REPLY,
    REQUEST,
    DomainInfoRecord,
    PhysInfo,
    PrivcmdOp,
    decode_domain_infos,
)

__all__ = ["SimPrivcmdDriver"]


class SimPrivcmdDriver:
    """A blocking, thread-safe client of the simulated hypercall endpoint at ``path``."""

    name = "sim"

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._seq = itertools.count(1)
        self._closed = False

    @classmethod
    def open(cls, path: str, timeout: float | None = 30.0) -> SimPrivcmdDriver:
        """Return a driver for the endpoint at ``path``, after checking that it answers.

        Raises :class:`VirtError` ``NO_XEN`` naming the path when nothing listens there.
        """
        driver = cls(path, timeout)
        try:
            driver.version()
        except OSError as exc:
            driver.close()
            raise VirtError(
                ErrorNumber.NO_XEN, ErrorDomain.XEN,
                f"{path} (simulated hypervisor endpoint): {exc.strerror or exc}",
                int1=exc.errno or 0,
            ) from exc
        return driver

    def close(self) -> None:
        """Close every socket; later calls fail with ``EBADF``."""
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            sock.close()

    def _socket(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is not None:
            return sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        with self._lock:
            if self._closed:
                sock.close()
                raise OSError(errno.EBADF, "the hypervisor driver is closed")
            self._sockets.add(sock)
        self._local.sock = sock
        return sock

    def _drop(self, sock: socket.socket) -> None:
        self._local.sock = None
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _call(self, op: PrivcmdOp, domid: int = 0, count: int = 0, value: int = 0
              ) -> tuple[int, bytes]:
        """Make one round trip; return ``(result, payload)`` or raise ``OSError(errno)``."""
        if self._closed:
            raise OSError(errno.EBADF, "the hypervisor driver is closed")
        sock = self._socket()
        seq = next(self._seq) & 0xFFFFFFFF
        try:
            sock.sendall(REQUEST.pack(op, seq, domid, count, value))
            r_op, r_seq, result, length = REPLY.unpack(_recv_exactly(sock, REPLY.size))
            payload = _recv_exactly(sock, length) if length else b""
            if r_op != op or r_seq != seq:
                raise ConnectionError(
                    errno.EPROTO,
                    f"reply {r_op}/{r_seq} does not answer request {int(op)}/{seq} on {self.path}",
                )
        except BaseException:
            # A half-read reply would be read by the next caller: never reuse this socket.
            self._drop(sock)
            raise
        if result < 0:
            raise OSError(-result, os.strerror(-result))
        return result, payload

    def getinfolist(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of the domains with id >= ``first_domid``."""
        count, payload = self._call(
            PrivcmdOp.GETDOMAININFOLIST, first_domid, min(max_count, MAX_BATCH)
        )
        try:
            return decode_domain_infos(payload, count)
        except ValueError as exc:
            raise OSError(errno.EPROTO, f"{exc} from {self.path}") from exc

    def pause(self, domid: int) -> None:
        """Pause domain ``domid``."""
        self._call(PrivcmdOp.PAUSEDOMAIN, domid)

    def unpause(self, domid: int) -> None:
        """Unpause domain ``domid``."""
        self._call(PrivcmdOp.UNPAUSEDOMAIN, domid)

    def destroy(self, domid: int) -> None:
        """Destroy domain ``domid``."""
        self._call(PrivcmdOp.DESTROYDOMAIN, domid)

    def set_max_mem(self, domid: int, kib: int) -> None:
        """Set the memory limit of domain ``domid`` to ``kib`` KiB."""
        self._call(PrivcmdOp.SETDOMAINMAXMEM, domid, 0, kib)

    def version(self) -> tuple[int, int, str]:
        """Return the hypervisor's ``(major, minor, extra)`` version."""
        result, payload = self._call(PrivcmdOp.XEN_VERSION)
        return result >> 16, result & 0xFFFF, payload.decode(errors="replace")

    def physinfo(self) -> PhysInfo:
        """Return the node's physical description."""
        _, payload = self._call(PrivcmdOp.PHYSINFO)
        if len(payload) < PHYSINFO.size:
            raise OSError(errno.EPROTO, f"short PHYSINFO reply from {self.path}")
        return PhysInfo(*PHYSINFO.unpack_from(payload))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Return exactly ``size`` bytes from ``sock`` (``ConnectionResetError`` at end of stream)."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionResetError(
                errno.ECONNRESET, "the hypervisor endpoint closed the connection"
            )
        got += n
    return bytes(buf)
