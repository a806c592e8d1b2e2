"""The xenstore client: one unix-socket connection, pipelined, with watches and transactions.

Shape (the xenstore-rs model, without its head-of-line flaw):

- One :class:`asyncio.Protocol` (``_Link``) owns the socket. Every request gets a unique
  ``req_id`` and a future in ``_Link.pending``; the protocol's ``data_received`` is the single
  reader, it demultiplexes watch events (told apart **by type**, never by ``req_id``) from
  replies (matched **by req_id**, in whatever order they come).
- Requests queued during one loop turn leave in a single ``transport.write``.
- Each watch owns a bounded queue. The reader only appends to it, so a slow watch consumer
  never delays replies or other watches (see :class:`Watch` for the overflow policy).
- A caller cancelled while it awaits a reply leaves its entry in ``pending``: the reply is read
  and dropped when it comes, so nobody ever reads another caller's reply. A cancelled
  TRANSACTION_START ends the transaction the daemon opened; a cancelled WATCH is unwatched.
- Timeouts cost no timer per request: one timer per connection, armed at the earliest deadline.
- When the socket dies every waiter fails at once. With ``reconnect=True`` the client dials
  again with backoff, re-registers its watches, and each watch then yields an event flagged
  ``reconnected`` so its consumer re-reads. Transactions of the old connection fail; their
  ids are never reused on the new one.
"""

# Calls take ``timeout=``: it is served by the connection's one deadline timer (no timer per
# call) and raises VirtError OPERATION_TIMEOUT; asyncio.timeout() around a call works too.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import errno as _errno
import itertools
import logging
import os
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.xs_wire import (
    ERROR_NAMES,
    HEADER,
    PAYLOAD_MAX,
    FrameDecoder,
    Perm,
    PermAccess,
    XsOp,
    XsWireError,
    errno_of,
    error_name,
    format_perms,
    parse_perms,
    parse_watch_event,
    split_strings,
    validate_path,
    watch_payload,
)

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "Perm",
    "PermAccess",
    "Watch",
    "WatchEvent",
    "XenStoreClient",
    "XenStoreError",
    "XenStoreTransaction",
    "connect",
    "default_socket_path",
]

log = logging.getLogger(__name__)

DEFAULT_SOCKET_PATH = "/var/run/xenstored/socket"
DEFAULT_TIMEOUT = 10.0
DEFAULT_WATCH_QUEUE = 1024
DEFAULT_TX_RETRIES = 100

_T = TypeVar("_T")
_pack = HEADER.pack
_OP_NAMES = {int(op): op.name for op in XsOp}
# The op codes as plain ints in module globals: as fast as literals on the hot paths.
_OP_DIRECTORY = int(XsOp.DIRECTORY)
_OP_READ = int(XsOp.READ)
_OP_GET_PERMS = int(XsOp.GET_PERMS)
_OP_WATCH = int(XsOp.WATCH)
_OP_UNWATCH = int(XsOp.UNWATCH)
_OP_TRANSACTION_START = int(XsOp.TRANSACTION_START)
_OP_TRANSACTION_END = int(XsOp.TRANSACTION_END)
_OP_GET_DOMAIN_PATH = int(XsOp.GET_DOMAIN_PATH)
_OP_WRITE = int(XsOp.WRITE)
_OP_MKDIR = int(XsOp.MKDIR)
_OP_RM = int(XsOp.RM)
_OP_SET_PERMS = int(XsOp.SET_PERMS)
_OP_WATCH_EVENT = int(XsOp.WATCH_EVENT)
_OP_ERROR = int(XsOp.ERROR)
_OP_DIRECTORY_PART = int(XsOp.DIRECTORY_PART)
_UINT32_MAX = 0xFFFF_FFFF
_new_tuple = tuple.__new__
# Paths already validated and encoded (``path\0``); bounded so odd workloads cannot grow it.
_PATH_CACHE_MAX = 8192
# The largest reply accepted. C never sends more than 4096 bytes (E2BIG instead), but
# oxenstored sends a long DIRECTORY listing whole (measured: 105,000 bytes for 1,000 children
# with 104-character names) and has no DIRECTORY_PART to fetch it in parts.
_REPLY_MAX = 4 << 20
_NEVER = float("inf")
# Backoff between connect attempts while the daemon's listen backlog is full (seconds).
_CONNECT_RETRY_FIRST = 0.0005
_CONNECT_RETRY_MAX = 0.02

# Daemon errno names -> libvirt codes. Everything not listed is OPERATION_FAILED.
_CODE_OF_ERRNO: dict[str, ErrorNumber] = {
    "EACCES": ErrorNumber.OPERATION_DENIED,
    "EPERM": ErrorNumber.OPERATION_DENIED,
    "EROFS": ErrorNumber.OPERATION_DENIED,
    "EINVAL": ErrorNumber.INVALID_ARG,
}


def default_socket_path(read_only: bool = False) -> str:
    """Return the socket libxenstore would open: ``$XENSTORED_PATH``, ``$XENSTORED_RUNDIR/socket``
    or ``/var/run/xenstored/socket``, with ``_ro`` appended when ``read_only``."""
    path = os.environ.get("XENSTORED_PATH")
    if not path:
        rundir = os.environ.get("XENSTORED_RUNDIR")
        path = os.path.join(rundir, "socket") if rundir else DEFAULT_SOCKET_PATH
    return path + "_ro" if read_only else path


class XenStoreError(VirtError):
    """A xenstore failure: libvirt's fields plus what the daemon said and about which path.

    ``errno_name`` is the daemon's error name (``"ENOENT"``, ``"EAGAIN"``, ...) or None when
    the failure was not the daemon's answer (connection lost, timeout, bad argument);
    ``int1`` holds the matching errno number. ``path`` is the path the request named, ``op``
    the request's type name.
    """

    errno_name: str | None
    path: str | None
    op: str | None

    def __init__(
        self,
        code: ErrorNumber | int,
        info: str,
        *,
        errno_name: str | None = None,
        path: str | None = None,
        op: str | None = None,
    ) -> None:
        errnum = getattr(_errno, errno_name, 0) if errno_name else 0
        super().__init__(code, ErrorDomain.XENSTORE, info, str3=path, int1=errnum)
        self.errno_name = errno_name
        self.path = path
        self.op = op


def _daemon_error(op: int, path: str | None, payload: bytes) -> XenStoreError:
    name = error_name(payload)
    opname = _OP_NAMES.get(op, str(op))
    code = _CODE_OF_ERRNO.get(name, ErrorNumber.OPERATION_FAILED)
    # A name outside xs_wire.h's table (oxenstored's EQUOTA) means EINVAL, as for libxenstore.
    known = name in ERROR_NAMES
    detail = f" ({os.strerror(errno_of(name))})" if known else " (unknown error name)"
    if name == "E2BIG" and op == _OP_WRITE:
        # oxenstored refuses values over 2048 bytes, even from dom0 (C takes up to 4095).
        detail += ": the daemon refuses a value this large"
    where = f" {path}" if path else ""
    return XenStoreError(code, f"xenstore {opname}{where}: {name}{detail}",
                         errno_name=name, path=path, op=opname)


def _invalid(reason: str, path: str | None = None, op: str | None = None) -> XenStoreError:
    return XenStoreError(ErrorNumber.INVALID_ARG, reason, path=path, op=op)


class WatchEvent(NamedTuple):
    """One watch event: ``path`` changed (or may have); ``token`` names the watch.

    ``overflowed`` means the consumer fell behind and queued events were dropped;
    ``reconnected`` means the connection was re-established and events may have been missed.
    Either way (see :attr:`resync`) the consumer should re-read everything it watches.
    """

    path: str
    token: str
    overflowed: bool = False
    reconnected: bool = False

    @property
    def resync(self) -> bool:
        """Return True when this event stands for an unknown number of missed changes."""
        return self.overflowed or self.reconnected


# One entry of _Link.pending: the waiting future (None when nobody waits), the request's op,
# the path it named, its deadline, and what to do with a reply nobody is waiting for.
class _Pending(NamedTuple):
    fut: asyncio.Future[bytes] | None
    op: int
    path: str | None
    deadline: float
    orphan: Callable[[int, bytes], None] | None


class _Link(asyncio.Protocol):
    """One socket connection: the single reader, the write batcher, the pending replies."""

    def __init__(self, client: XenStoreClient) -> None:
        self.client = client
        self.loop = client._loop
        self.transport: asyncio.Transport | None = None
        # Lenient on input: oxenstored sends over-size DIRECTORY replies rather than E2BIG.
        self.decoder = FrameDecoder(max_payload=_REPLY_MAX)
        self.pending: dict[int, _Pending] = {}
        self.next_id = 1
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = _NEVER  # when `timer` fires
        self.error: XenStoreError | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        decoder = self.decoder
        messages = decoder.feed_frames(data)
        pending = self.pending
        for op, req_id, _tx_id, payload in messages:
            if op == _OP_WATCH_EVENT:
                self.client._on_watch_event(payload)
                continue
            entry = pending.pop(req_id, None)
            if entry is None:
                log.warning("xenstore %s: dropped a reply to unknown req_id %d (type %d)",
                            self.client.path, req_id, op)
                continue
            fut = entry.fut
            if fut is None or fut.done():
                if entry.orphan is not None and op == entry.op:
                    entry.orphan(req_id, payload)
                continue
            if op == entry.op:
                fut.set_result(payload)
            elif op == _OP_ERROR:
                fut.set_exception(_daemon_error(entry.op, entry.path, payload))
            else:
                fut.set_exception(XenStoreError(
                    ErrorNumber.RPC,
                    f"xenstore at {self.client.path} answered {_OP_NAMES.get(entry.op)} "
                    f"with a message of type {_OP_NAMES.get(op, op)}",
                    path=entry.path, op=_OP_NAMES.get(entry.op)))
        if decoder.error is not None:
            exc = decoder.error
            log.error("xenstore %s sent a malformed frame: %s", self.client.path, exc)
            self.fail(XenStoreError(ErrorNumber.RPC, f"xenstore at {self.client.path}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self.fail(XenStoreError(
            ErrorNumber.NO_XENSTORE,
            f"{self.client.path}: connection lost{reason}"))
        if not self.lost.done():
            self.lost.set_result(None)

    # -- requests ---------------------------------------------------------------------------
    def submit(self, op: int, payload: bytes, tx_id: int, path: str | None, timeout: float,
               orphan: Callable[[int, bytes], None] | None = None) -> asyncio.Future[bytes]:
        """Queue one request; return the future of its reply.

        ``orphan(req_id, payload)`` handles a successful reply that arrives after the waiter
        gave up (cancelled or timed out).
        """
        fut: asyncio.Future[bytes] = self.loop.create_future()
        self._enqueue(fut, op, payload, tx_id, path, timeout, orphan)
        return fut

    def send_nowait(self, op: int, payload: bytes, tx_id: int, path: str | None) -> None:
        """Queue one request whose reply is read and dropped (works in a cancelled task)."""
        if not self.closed:
            self._enqueue(None, op, payload, tx_id, path, DEFAULT_TIMEOUT, None)

    def _enqueue(self, fut: asyncio.Future[bytes] | None, op: int, payload: bytes, tx_id: int,
                 path: str | None, timeout: float,
                 orphan: Callable[[int, bytes], None] | None) -> None:
        if self.closed:
            assert self.error is not None
            raise self.error.copy()
        pending = self.pending
        # Unique among the requests in flight, wrapping at 2^32. 0 is skipped: libxenstore
        # uses it for everything, so a stray 0 never matches one of ours.
        req_id = self.next_id
        while req_id in pending:
            req_id = req_id + 1 if req_id < _UINT32_MAX else 1
        self.next_id = req_id + 1 if req_id < _UINT32_MAX else 1
        deadline = self.loop.time() + timeout
        pending[req_id] = _new_tuple(_Pending, (fut, op, path, deadline, orphan))
        out = self.out
        out.append(_pack(op, req_id, tx_id, len(payload)))
        out.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        if deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = deadline
            self.timer = self.loop.call_at(deadline, self._expire)

    def flush(self) -> None:
        """Write every queued request in one write."""
        self.flush_scheduled = False
        if not self.out or self.closed or self.transport is None:
            self.out.clear()
            return
        data = b"".join(self.out)
        self.out.clear()
        self.transport.write(data)

    def _expire(self) -> None:
        """Fail every request past its deadline; re-arm for the earliest one left."""
        self.timer = None
        self.timer_at = _NEVER
        now = self.loop.time()
        earliest: float | None = None
        for req_id, entry in self.pending.items():
            fut = entry.fut
            if fut is None or fut.done():
                continue
            if entry.deadline <= now:
                # The entry stays: its late reply is read and dropped.
                fut.set_exception(XenStoreError(
                    ErrorNumber.OPERATION_TIMEOUT,
                    f"xenstore {_OP_NAMES.get(entry.op)}"
                    f"{' ' + entry.path if entry.path else ''} at {self.client.path} "
                    f"(no reply to req_id {req_id})",
                    path=entry.path, op=_OP_NAMES.get(entry.op)))
            elif earliest is None or entry.deadline < earliest:
                earliest = entry.deadline
        if earliest is not None and not self.closed:
            self.timer_at = earliest
            self.timer = self.loop.call_at(earliest, self._expire)

    def fail(self, error: XenStoreError, *, graceful: bool = False) -> None:
        """Mark the link dead and fail every waiter with ``error`` (idempotent).

        ``graceful`` closes the socket after writing what is queued; otherwise it is aborted.
        """
        if self.closed:
            return
        self.closed = True
        self.error = error
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_at = _NEVER
        self.out.clear()
        pending, self.pending = self.pending, {}
        for entry in pending.values():
            if entry.fut is not None and not entry.fut.done():
                entry.fut.set_exception(XenStoreError(
                    error.code,
                    f"{error.str2}; {_OP_NAMES.get(entry.op)}"
                    f"{' ' + entry.path if entry.path else ''} got no reply",
                    errno_name=error.errno_name, path=entry.path, op=_OP_NAMES.get(entry.op)))
        if self.transport is not None:
            if graceful:
                self.transport.close()
            else:
                self.transport.abort()
        self.client._on_link_failed(self)


class _Ops:
    """The store operations, shared by the client (no transaction) and transactions."""

    _read_only: bool
    _paths: dict[str, bytes]

    def _call(self, op: int, payload: bytes, path: str | None,
              timeout: float | None) -> Awaitable[bytes]:
        """Send a request; return what to await for its reply payload.

        Synchronous on purpose: the common case returns the reply's future itself, so a call
        costs one coroutine (the public method), not two.
        """
        raise NotImplementedError

    def _path(self, path: str, opname: str) -> bytes:
        try:
            return self._paths[path]
        except (KeyError, TypeError):
            pass
        try:
            validate_path(path)
        except XsWireError as exc:
            raise _invalid(f"{exc.reason} (xenstore {opname})", path if isinstance(path, str)
                           else None, opname) from exc
        encoded = path.encode("ascii") + b"\0"
        if len(self._paths) >= _PATH_CACHE_MAX:
            self._paths.clear()
        self._paths[path] = encoded
        return encoded

    def _writable(self, opname: str, path: str) -> None:
        if self._read_only:
            raise XenStoreError(ErrorNumber.OPERATION_DENIED,
                                f"xenstore {opname} {path} on a read-only connection",
                                path=path, op=opname)

    async def read(self, path: str, *, timeout: float | None = None) -> bytes:
        """Return the value of ``path`` (raw bytes; ENOENT raises :class:`XenStoreError`)."""
        return await self._call(_OP_READ, self._path(path, "READ"), path, timeout)

    async def write(self, path: str, value: bytes | str, *,
                    timeout: float | None = None) -> None:
        """Set the value of ``path`` (a str is encoded as UTF-8), creating missing parents."""
        self._writable("WRITE", path)
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        payload = self._path(path, "WRITE") + data
        if len(payload) > PAYLOAD_MAX:
            raise _invalid(f"a {len(data)}-byte value for xenstore path {path} is too large "
                           f"(path and value may hold at most {PAYLOAD_MAX - 1} bytes)",
                           path, "WRITE")
        await self._call(_OP_WRITE, payload, path, timeout)

    async def mkdir(self, path: str, *, timeout: float | None = None) -> None:
        """Create ``path`` (and missing parents) with an empty value; existing is fine."""
        self._writable("MKDIR", path)
        await self._call(_OP_MKDIR, self._path(path, "MKDIR"), path, timeout)

    async def rm(self, path: str, *, timeout: float | None = None) -> None:
        """Remove ``path`` and everything under it (a missing node with a parent is fine)."""
        self._writable("RM", path)
        await self._call(_OP_RM, self._path(path, "RM"), path, timeout)

    async def exists(self, path: str, *, timeout: float | None = None) -> bool:
        """Return whether ``path`` exists (as ``xenstore-exists`` decides: READ succeeds)."""
        try:
            await self._call(_OP_READ, self._path(path, "READ"), path, timeout)
        except XenStoreError as err:
            if err.errno_name == "ENOENT":
                return False
            raise
        return True

    async def directory(self, path: str, *, timeout: float | None = None) -> list[str]:
        """Return the names of the children of ``path`` (in the daemon's order).

        A listing too long for one reply (E2BIG) is fetched in parts with DIRECTORY_PART,
        restarting if the node changes meanwhile, as libxenstore does.
        """
        encoded = self._path(path, "DIRECTORY")
        try:
            return split_strings(await self._call(_OP_DIRECTORY, encoded, path, timeout))
        except XenStoreError as err:
            if err.errno_name != "E2BIG":
                raise
        return await self._directory_part(path, encoded, timeout)

    async def _directory_part(self, path: str, encoded: bytes,
                              timeout: float | None) -> list[str]:
        for _attempt in range(100):
            offset = 0
            generation: bytes | None = None
            chunks: list[bytes] = []
            while True:
                payload = encoded + str(offset).encode("ascii") + b"\0"
                try:
                    reply = await self._call(_OP_DIRECTORY_PART, payload, path, timeout)
                except XenStoreError as err:
                    if err.errno_name == "ENOSYS":
                        raise XenStoreError(
                            ErrorNumber.OPERATION_FAILED,
                            f"xenstore DIRECTORY {path}: E2BIG (listing too long, and the "
                            "daemon has no DIRECTORY_PART)",
                            errno_name="E2BIG", path=path, op="DIRECTORY") from err
                    raise
                gen, sep, chunk = reply.partition(b"\0")
                if not sep:
                    raise XenStoreError(ErrorNumber.RPC,
                                        f"xenstore DIRECTORY_PART {path}: malformed reply",
                                        path=path, op="DIRECTORY_PART")
                if generation is None:
                    generation = gen
                elif gen != generation:
                    break  # the node changed between chunks: start again
                if chunk.endswith(b"\0\0") or chunk in (b"", b"\0"):
                    chunks.append(chunk[:-1] if chunk else chunk)
                    return split_strings(b"".join(chunks))
                chunks.append(chunk)
                offset += len(chunk)
        raise XenStoreError(ErrorNumber.OPERATION_FAILED,
                            f"xenstore DIRECTORY {path}: the listing kept changing",
                            errno_name="EAGAIN", path=path, op="DIRECTORY")

    async def get_perms(self, path: str, *, timeout: float | None = None) -> list[Perm]:
        """Return the permission list of ``path``; the first entry names the owner."""
        reply = await self._call(_OP_GET_PERMS, self._path(path, "GET_PERMS"), path, timeout)
        try:
            return parse_perms(reply)
        except XsWireError as exc:
            raise XenStoreError(ErrorNumber.RPC,
                                f"xenstore GET_PERMS {path}: bad reply {reply!r}: {exc.reason}",
                                path=path, op="GET_PERMS") from exc

    async def set_perms(self, path: str, perms: Sequence[Perm | tuple[int, PermAccess]], *,
                        timeout: float | None = None) -> None:
        """Set the permission list of ``path``: the first entry's domid owns the node, its
        access is the default for domains not listed after it."""
        self._writable("SET_PERMS", path)
        try:
            entries = [p if isinstance(p, Perm) else Perm(int(p[0]), PermAccess(p[1]))
                       for p in perms]
            tail = format_perms(entries)
        except (XsWireError, ValueError, TypeError, IndexError) as exc:
            raise _invalid(f"bad permission list {perms!r} for xenstore path {path}: {exc}",
                           path, "SET_PERMS") from exc
        payload = self._path(path, "SET_PERMS") + tail
        if len(payload) > PAYLOAD_MAX:
            raise _invalid(f"permission list for {path} is too long", path, "SET_PERMS")
        await self._call(_OP_SET_PERMS, payload, path, timeout)


class XenStoreTransaction(_Ops):
    """A xenstore transaction: the store operations, applied together or not at all.

    Use ``async with xs.transaction() as t:``; a clean exit commits (a conflict raises
    :class:`XenStoreError` with ``errno_name == "EAGAIN"``: start over), an exception or a
    cancellation aborts. On the C daemon a transaction is not a snapshot: a node is read live
    the first time the transaction touches it; the commit fails if any touched node changed.
    """

    def __init__(self, client: XenStoreClient, timeout: float | None = None) -> None:
        self._client = client
        self._read_only = client._read_only
        self._paths = client._paths
        self._timeout = client.timeout if timeout is None else timeout
        self._link: _Link | None = None
        self.tx_id = 0
        self._ended = False

    def _call(self, op: int, payload: bytes, path: str | None,
              timeout: float | None) -> Awaitable[bytes]:
        link = self._link
        if self._ended or link is None:
            state = "ended" if self._ended else "not started"
            raise XenStoreError(ErrorNumber.OPERATION_INVALID,
                                f"xenstore transaction {self.tx_id} is {state}",
                                path=path, op=_OP_NAMES.get(op))
        if link.closed:
            self._ended = True
            raise XenStoreError(ErrorNumber.NO_XENSTORE,
                                f"{self._client.path}: transaction {self.tx_id} was lost with "
                                "its connection (nothing of it was applied)",
                                path=path, op=_OP_NAMES.get(op))
        return link.submit(op, payload, self.tx_id, path,
                           self._timeout if timeout is None else timeout)

    async def start(self) -> XenStoreTransaction:
        """Open the transaction on the daemon; return self."""
        if self._link is not None:
            raise XenStoreError(ErrorNumber.OPERATION_INVALID,
                                "xenstore transaction already started")
        link = await self._client._ready_link(self._timeout)
        fut = link.submit(_OP_TRANSACTION_START, b"\0", 0, None, self._timeout,
                          orphan=_end_orphan(link))
        try:
            reply = await fut
        except asyncio.CancelledError:
            # The reply may have been taken off the wire just before the cancellation landed.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                _end_orphan(link)(0, fut.result())
            raise
        try:
            self.tx_id = int(reply.rstrip(b"\0").decode("ascii"), 0)
        except ValueError as exc:
            _end_orphan(link)(0, reply)
            raise XenStoreError(ErrorNumber.RPC, f"xenstore TRANSACTION_START: bad id {reply!r}",
                                op="TRANSACTION_START") from exc
        self._link = link
        return self

    async def commit(self) -> None:
        """Commit; raise :class:`XenStoreError` (``errno_name`` EAGAIN) on a conflict."""
        await self._end(b"T\0")

    async def abort(self) -> None:
        """Abort: nothing of the transaction is applied."""
        await self._end(b"F\0")

    async def _end(self, how: bytes) -> None:
        if self._ended:
            raise XenStoreError(ErrorNumber.OPERATION_INVALID,
                                f"xenstore transaction {self.tx_id} already ended")
        try:
            await self._call(_OP_TRANSACTION_END, how, None, None)
        finally:
            self._ended = True  # after END the id is gone, whatever the answer

    def _abort_nowait(self) -> None:
        """Queue the abort without waiting (works in a cancelled task); the reply is dropped."""
        if self._ended or self._link is None:
            return
        self._ended = True
        if not self._link.closed:
            self._link.send_nowait(_OP_TRANSACTION_END, b"F\0", self.tx_id, None)

    async def __aenter__(self) -> XenStoreTransaction:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                await self.commit()
            except asyncio.CancelledError:
                self._abort_nowait()  # no-op if END already went out
                raise
        else:
            self._abort_nowait()


def _end_orphan(link: _Link) -> Callable[[int, bytes], None]:
    """Return the handler that aborts a transaction its starter no longer waits for."""

    def end(_req_id: int, payload: bytes) -> None:
        try:
            tx_id = int(payload.rstrip(b"\0").decode("ascii"), 0)
        except ValueError:
            return
        if tx_id:
            link.send_nowait(_OP_TRANSACTION_END, b"F\0", tx_id, None)

    return end


class Watch:
    """The events of one watch: an async iterator of :class:`WatchEvent`, first the initial one.

    Overflow policy (coalesce): events wait in a bounded queue (``maxsize``). When an event
    arrives and the queue is full, the whole backlog is dropped and replaced by one event with
    ``overflowed=True`` and ``path`` = the watched path, meaning "changes were missed: re-read
    everything under the watch". Until the consumer takes that event, later events fold into
    it too (the re-read it asks for covers them). So memory stays bounded, the connection's
    reader never waits for a slow consumer, and no event is lost without the consumer being
    told. ``overflows`` counts the episodes.

    After a reconnect the watch is registered again and yields an event with
    ``reconnected=True``. Iteration ends when the watch or the client is closed; it raises
    :class:`XenStoreError` if the connection is lost for good.
    """

    def __init__(self, client: XenStoreClient, path: str, token: str, maxsize: int) -> None:
        self.path = path
        self.token = token
        self.maxsize = max(2, maxsize)
        self.overflows = 0
        self._client = client
        self._queue: deque[WatchEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._active = False  # registered on the daemon (re-registered after a reconnect)
        self._error: XenStoreError | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _deliver(self, event: WatchEvent) -> None:
        queue = self._queue
        if queue and queue[0].overflowed:
            return  # folded into the pending overflow event
        if len(queue) >= self.maxsize:
            queue.clear()
            self.overflows += 1
            log.warning("xenstore watch %s (token %s): the consumer fell behind by %d events; "
                        "they are replaced by one overflow event", self.path, self.token,
                        self.maxsize)
            event = WatchEvent(self.path, self.token, overflowed=True)
        queue.append(event)
        self._wake()

    def _finish(self, error: XenStoreError | None = None) -> None:
        self._closed = True
        if error is not None and self._error is None:
            self._error = error
        self._wake()

    def pending(self) -> int:
        """Return how many events are queued and not yet consumed."""
        return len(self._queue)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        queue = self._queue
        while not queue:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._client._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return queue.popleft()

    async def get(self, timeout: float | None = None) -> WatchEvent:
        """Return the next event, waiting at most ``timeout`` seconds (TimeoutError after)."""
        async with asyncio.timeout(timeout):
            try:
                return await self.__anext__()
            except StopAsyncIteration:
                raise XenStoreError(ErrorNumber.OPERATION_INVALID,
                                    f"xenstore watch {self.path} is closed",
                                    path=self.path) from None


class _WatchContext:
    """``async with xs.watch(path) as events``: registers on enter, unwatches on exit."""

    def __init__(self, client: XenStoreClient, path: str, token: str | None,
                 maxsize: int) -> None:
        self._client = client
        self._path = path
        self._token = token
        self._maxsize = maxsize
        self._watch: Watch | None = None

    async def __aenter__(self) -> Watch:
        self._watch = await self._client._add_watch(self._path, self._token, self._maxsize)
        return self._watch

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._watch is not None:
            self._client._remove_watch(self._watch)


class XenStoreClient(_Ops):
    """A connection to xenstored: store operations, watches and transactions, pipelined.

    Any number of tasks may call it at once. Every public call takes an optional ``timeout``
    (seconds; default the client's ``timeout``). Failures raise :class:`XenStoreError`.
    Create it with :func:`connect`.
    """

    def __init__(self, path: str, *, read_only: bool = False, reconnect: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, watch_queue: int = DEFAULT_WATCH_QUEUE,
                 ) -> None:
        self.path = path
        self.timeout = timeout
        self.reconnect = reconnect
        self.watch_queue = watch_queue
        self._read_only = read_only
        self._paths: dict[str, bytes] = {}
        self._loop = asyncio.get_running_loop()
        self._link: _Link | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._closed_error: XenStoreError | None = None
        self._watches: dict[str, Watch] = {}
        self._tokens = itertools.count(1)
        self._reconnect_task: asyncio.Task[None] | None = None
        self._changed: asyncio.Future[None] | None = None
        #: How many times a lost connection was re-established (``reconnect=True``).
        self.reconnects = 0
        #: How many attempts to re-establish a lost connection have failed so far.
        self.dial_failures = 0

    @property
    def read_only(self) -> bool:
        """Return whether state-changing calls are refused before any I/O."""
        return self._read_only

    @property
    def connected(self) -> bool:
        """Return whether the socket is up right now."""
        return self._link is not None and not self._link.closed

    async def wait_changed(self, timeout: float | None = None) -> None:
        """Wait for the connection's next change: lost, re-established, a failed attempt to
        re-establish it (:attr:`dial_failures`), or closed. ``timeout`` raises TimeoutError.

        For code that watches the connection's health, e.g.
        ``while not xs.connected: await xs.wait_changed()``.
        """
        if self._changed is None or self._changed.done():
            self._changed = self._loop.create_future()
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._changed)

    def _notify_changed(self) -> None:
        fut, self._changed = self._changed, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- connection -------------------------------------------------------------------------
    async def _dial(self) -> _Link:
        try:
            async with asyncio.timeout(self.timeout):
                sock = await _connect_unix(self.path)
                try:
                    _transport, link = await self._loop.create_unix_connection(
                        lambda: _Link(self), sock=sock)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise XenStoreError(ErrorNumber.NO_XENSTORE,
                                f"{self.path}: connecting timed out after {self.timeout} s",
                                path=self.path) from exc
        except OSError as exc:
            name = _errno.errorcode.get(exc.errno or 0)
            raise XenStoreError(ErrorNumber.NO_XENSTORE,
                                f"{self.path}: {exc.strerror or exc}",
                                errno_name=name, path=self.path) from exc
        return link

    async def _open(self) -> None:
        self._link = await self._dial()
        self._ready.set()

    def _on_link_failed(self, link: _Link) -> None:
        if self._link is not link:
            return
        self._link = None
        self._ready.clear()
        self._notify_changed()
        if self._closing:
            return
        error = link.error
        if self.reconnect:
            log.warning("xenstore %s: %s; reconnecting", self.path, error)
            self._reconnect_task = self._loop.create_task(self._reconnect_loop())
        else:
            self._closed_error = error
            self._ready.set()  # wake request waiters so they fail
            for watch in list(self._watches.values()):
                watch._finish(error)
            self._watches.clear()

    async def _reconnect_loop(self) -> None:
        delay = 0.01
        while not self._closing:
            try:
                link = await self._dial()
            except XenStoreError as err:
                log.debug("xenstore reconnect failed: %s (next try in %.2f s)", err, delay)
                self.dial_failures += 1
                self._notify_changed()
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
                continue
            try:
                await self._rewatch(link)
            except XenStoreError as err:
                log.warning("xenstore %s: re-registering watches failed: %s", self.path, err)
                link.fail(err)
                continue
            if link.closed:
                continue
            self._link = link
            self.reconnects += 1
            self._notify_changed()
            log.info("xenstore %s: reconnected", self.path)
            for watch in self._watches.values():
                if watch._active:
                    watch._deliver(WatchEvent(watch.path, watch.token, reconnected=True))
            self._ready.set()
            return

    async def _rewatch(self, link: _Link) -> None:
        futs = []
        for watch in [w for w in self._watches.values() if w._active]:
            futs.append(link.submit(_OP_WATCH, watch_payload(watch.path, watch.token), 0,
                                    watch.path, self.timeout))
        for fut in futs:
            await fut

    async def _ready_link(self, timeout: float | None) -> _Link:
        link = self._link
        if link is not None and not link.closed:
            return link
        async with asyncio.timeout(self.timeout if timeout is None else timeout):
            while True:
                if self._closed_error is not None:
                    raise self._closed_error.copy()
                link = self._link
                if link is not None and not link.closed:
                    return link
                await self._ready.wait()

    def _call(self, op: int, payload: bytes, path: str | None,
              timeout: float | None) -> Awaitable[bytes]:
        link = self._link
        if link is not None and not link.closed:
            return link.submit(op, payload, 0, path, self.timeout if timeout is None else timeout)
        return self._call_when_connected(op, payload, path, timeout)

    async def _call_when_connected(self, op: int, payload: bytes, path: str | None,
                                   timeout: float | None) -> bytes:
        try:
            link = await self._ready_link(timeout)
        except TimeoutError as exc:
            raise XenStoreError(
                ErrorNumber.NO_XENSTORE,
                f"{self.path}: not connected (waited for reconnection)",
                path=path, op=_OP_NAMES.get(op)) from exc
        return await link.submit(op, payload, 0, path,
                                 self.timeout if timeout is None else timeout)

    async def close(self) -> None:
        """Close the connection: waiters fail, watches end, background work stops."""
        if self._closing:
            return
        self._closing = True
        self._closed_error = XenStoreError(ErrorNumber.NO_XENSTORE,
                                           f"{self.path}: the connection was closed")
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for watch in list(self._watches.values()):
            watch._finish()
        self._watches.clear()
        link, self._link = self._link, None
        self._ready.set()
        self._notify_changed()
        if link is not None:
            link.flush()
            link.fail(self._closed_error, graceful=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(link.lost)

    async def __aenter__(self) -> XenStoreClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- operations that exist only outside transactions -----------------------------------
    async def get_domain_path(self, domid: int, *, timeout: float | None = None) -> str:
        """Return the home path of domain ``domid`` (``/local/domain/<domid>``)."""
        if not isinstance(domid, int) or not 0 <= domid < 0x10000:
            raise _invalid(f"domain id {domid!r} is not between 0 and 65535",
                           op="GET_DOMAIN_PATH")
        reply = await self._call(_OP_GET_DOMAIN_PATH, b"%d\0" % domid, None, timeout)
        return reply.rstrip(b"\0").decode("ascii", "replace")

    def transaction(self, *, timeout: float | None = None) -> XenStoreTransaction:
        """Return a transaction for ``async with`` (commit on a clean exit, else abort)."""
        return XenStoreTransaction(self, timeout)

    async def run_transaction(
        self,
        fn: Callable[[XenStoreTransaction], Awaitable[_T]],
        *,
        retries: int = DEFAULT_TX_RETRIES,
        timeout: float | None = None,
    ) -> _T:
        """Run ``await fn(t)`` in a transaction and commit; on a conflict start over.

        A conflict is EAGAIN from the commit, or EIO from an RM inside the transaction: the C
        daemon answers that when the subtree changed outside since the transaction saw it
        (a commit would then fail with EAGAIN anyway).
        ``fn`` must do all its reads and writes through ``t`` and must be safe to run again.
        After ``retries`` conflicts the last error is raised. Returns ``fn``'s result.
        """
        attempt = 0
        while True:
            try:
                async with self.transaction(timeout=timeout) as t:
                    result = await fn(t)
                return result
            except XenStoreError as err:
                conflict = err.errno_name == "EAGAIN" or (err.errno_name == "EIO"
                                                          and err.op == "RM")
                if not conflict or attempt >= retries:
                    raise
            attempt += 1
            # Jittered backoff keeps N contending tasks from colliding in lock step.
            await asyncio.sleep(random.random() * min(0.0005 * (1 << min(attempt, 6)), 0.03))

    # -- watches ----------------------------------------------------------------------------
    def watch(self, path: str, token: str | None = None, *,
              maxsize: int | None = None) -> _WatchContext:
        """Return an async context manager that watches ``path`` (or ``@introduceDomain`` /
        ``@releaseDomain``) and yields a :class:`Watch`, the async iterator of its events.

        The first event is the daemon's initial one. ``token`` defaults to a unique string;
        two watches on one client may not share a token. ``maxsize`` bounds the event queue
        (default: the client's ``watch_queue``); see :class:`Watch` for what overflow does.
        """
        return _WatchContext(self, path, token,
                             self.watch_queue if maxsize is None else maxsize)

    async def _add_watch(self, path: str, token: str | None, maxsize: int) -> Watch:
        try:
            validate_path(path, allow_special=True)
        except XsWireError as exc:
            raise _invalid(f"{exc.reason} (xenstore WATCH)", path, "WATCH") from exc
        if token is None:
            token = f"aiovirt-{id(self):x}-{next(self._tokens)}"
        elif not isinstance(token, str) or not token or "\0" in token:
            raise _invalid(f"watch token {token!r} must be a non-empty string without NUL",
                           path, "WATCH")
        if token in self._watches:
            raise _invalid(f"watch token {token!r} is already in use on this connection",
                           path, "WATCH")
        try:
            payload = watch_payload(path, token)
        except XsWireError as exc:
            raise _invalid(f"{exc.reason} (xenstore WATCH)", path, "WATCH") from exc
        if len(payload) > PAYLOAD_MAX:
            raise _invalid("watch path and token are too long", path, "WATCH")
        watch = Watch(self, path, token, maxsize)
        # Registered before the request goes out: the initial event follows the reply.
        self._watches[token] = watch
        link: _Link | None = None
        try:
            link = await self._ready_link(None)
            await link.submit(_OP_WATCH, payload, 0, path, self.timeout)
            watch._active = True
        except BaseException:
            if self._watches.get(token) is watch:
                del self._watches[token]
            watch._finish()
            if link is not None and not link.closed:
                # The WATCH may still succeed after we stopped waiting: undo it, in order.
                link.send_nowait(_OP_UNWATCH, payload, 0, path)
            raise
        return watch

    def _remove_watch(self, watch: Watch) -> None:
        if self._watches.get(watch.token) is not watch:
            watch._finish()
            return
        del self._watches[watch.token]
        watch._finish()
        link = self._link
        if link is not None and not link.closed:
            # Fire and forget: requests are processed in order, so any later WATCH with the
            # same path and token is handled after this UNWATCH; works in a cancelled task.
            link.send_nowait(_OP_UNWATCH, watch_payload(watch.path, watch.token), 0, watch.path)

    def _on_watch_event(self, payload: bytes) -> None:
        event = parse_watch_event(payload)
        if event is None:
            log.warning("xenstore %s: malformed watch event %r", self.path, payload)
            return
        path, token = event
        watch = self._watches.get(token)
        if watch is None:
            return  # an event queued before our UNWATCH was processed
        watch._deliver(WatchEvent(path, token))


async def _connect_unix(path: str) -> socket.socket:
    """Return a unix socket connected to ``path``, waiting for room in the listener's backlog.

    libxenstore connects with a blocking ``connect()``, which waits while the daemon's backlog
    is full (C xenstored listens with a backlog of 1). A non-blocking ``connect()`` fails with
    EAGAIN instead, and asyncio's ``sock_connect`` takes that for "in progress": it waits for
    the socket to be writable, reads ``SO_ERROR`` 0 and hands back a socket that was never
    connected (the first read then fails with EINVAL). The kernel offers no event for "room in
    the backlog", so EAGAIN is retried with a short backoff; the caller bounds the time.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        delay = _CONNECT_RETRY_FIRST
        while True:
            try:
                sock.connect(path)
            except BlockingIOError:  # EAGAIN: the backlog is full; the socket is unconnected
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, _CONNECT_RETRY_MAX)
                continue
            return sock
    except BaseException:
        sock.close()
        raise


class _Connector:
    """What :func:`connect` returns: await it, or use it with ``async with``."""

    def __init__(self, path: str, kwargs: dict[str, Any]) -> None:
        self._path = path
        self._kwargs = kwargs
        self._client: XenStoreClient | None = None

    async def _connect(self) -> XenStoreClient:
        client = XenStoreClient(self._path, **self._kwargs)
        await client._open()
        return client

    def __await__(self) -> Generator[Any, None, XenStoreClient]:
        return self._connect().__await__()

    async def __aenter__(self) -> XenStoreClient:
        self._client = await self._connect()
        return self._client

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: bool = False,
    reconnect: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    watch_queue: int = DEFAULT_WATCH_QUEUE,
) -> _Connector:
    """Connect to xenstored; ``await`` the result, or use it with ``async with``.

    ``path`` is used as given; None picks the socket libxenstore would (see
    :func:`default_socket_path`; the ``_ro`` socket when ``read_only``). With ``read_only``
    every state-changing call raises OPERATION_DENIED before any I/O. With ``reconnect`` a
    lost connection is re-dialled with backoff (watches re-registered); otherwise it stays
    failed. ``timeout`` bounds connecting and, by default, every call. An unreachable socket
    raises :class:`XenStoreError` NO_XENSTORE naming the path.
    """
    resolved = os.fspath(path) if path is not None else default_socket_path(read_only)
    return _Connector(resolved, {"read_only": read_only, "reconnect": reconnect,
                                 "timeout": timeout, "watch_queue": watch_queue})


