"""The simulated node's xenstore daemon: the wire protocol on unix sockets, over a XenStoreDB.

``XenStored(db, socket_path, ro_socket_path)`` serves the read-write socket (every connection is
dom0 and privileged, as with the real C daemon) and the read-only socket (Xen 3.0's
``socket_ro``: every mutating op is answered EACCES; reads, watches, transactions and
GET_DOMAIN_PATH are served). Each connection is an :class:`asyncio.Protocol` that decodes every
whole frame in a received chunk with the client's codec (``protocol/xs_wire``: frames,
arguments, error and watch-event payloads), answers them all, and writes the replies (and the
watch events they caused, queued before the reply as C does) in one ``transport.write``.

The sockets listen with a backlog of 1, as C's and oxenstored's do.

A connection that sends a frame announcing more than 4096 payload bytes is closed at once with
no reply to it (the requests before it are answered), as C does; one that disconnects mid-frame
is forgotten. Other clients are not affected.

Acting as a guest (sim only): the CONTROL command ``sim-as-domain\\0<domid>\\0`` turns the
connection into an unprivileged connection of domain ``domid`` (relative paths resolve to its
home, permissions apply, privileged ops get EACCES). There is no way back: CONTROL is
privileged. In-process code can do the same with ``db.connect(sink, domid=N)``.

Fault knobs (:class:`XsFaults`, ``XenStored.faults``): delay every write to clients, drop a
connection after it was answered K requests, never answer requests that match an op or path.

The read-only socket, ``sim-as-domain`` and the other ways this daemon still differs from the
real C one are written, with the reasons, in ``docs/simulator.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import stat
from collections.abc import Callable

from aiovirt.protocol.xs_wire import (
    ACK,
    HEADER,
    PAYLOAD_MAX,
    FrameDecoder,
    XsOp,
    encode,
    error_payload,
    one_arg,
    split_strings,
    watch_payload,
)
from aiovirt.sim.faults import XsFaults
from aiovirt.sim.store import Session, StoreError, Transaction, XenStoreDB

__all__ = ["XenStored", "XsFaults"]

log = logging.getLogger(__name__)

_pack = HEADER.pack

_OP_ERROR = int(XsOp.ERROR)
_OP_READ = int(XsOp.READ)
_OP_WATCH_EVENT = int(XsOp.WATCH_EVENT)
_E2BIG = error_payload("E2BIG")
# Both real daemons listen with a backlog of 1 (``ss -xl``): a non-blocking connect while one
# connection waits to be accepted fails with EAGAIN. asyncio's default of 100 would hide a
# client that does not wait for room, as aiovirt's once did not.
LISTEN_BACKLOG = 1

# Ops that are refused to unprivileged (guest) connections, as C's XS_FLAG_PRIV.
_PRIVILEGED_OPS = frozenset({XsOp.CONTROL, XsOp.INTRODUCE, XsOp.RELEASE,
                             XsOp.IS_DOMAIN_INTRODUCED, XsOp.RESUME, XsOp.SET_TARGET})
# Ops that ignore the header's tx_id (C's XS_FLAG_NOTID).
_NO_TX_OPS = frozenset({XsOp.WATCH, XsOp.UNWATCH})
# Ops the read-only socket refuses with EACCES.
_MUTATING_OPS = frozenset({XsOp.WRITE, XsOp.MKDIR, XsOp.RM, XsOp.SET_PERMS, XsOp.INTRODUCE,
                           XsOp.RELEASE, XsOp.RESUME, XsOp.SET_TARGET, XsOp.CONTROL})
_KNOWN_OPS = frozenset(range(0, 23)) - {XsOp.WATCH_EVENT, XsOp.ERROR, XsOp.RESTRICT}

# C 4.17's answer to CONTROL "help" (the list of its commands), byte for byte.
_CONTROL_HELP = (
    b"check\t\nlog\ton|off\nlive-update\t[-c <cmdline>] [-F] [-t <timeout>] <file>\n"
    b"    Default timeout is 60 seconds.\nlogfile\t<file>\nmemreport\t[<file>]\n"
    b"print\t<string>\nquota\t[set <name> <val>|<domid>]\nquota-soft\t[set <name> <val>]\n"
    b"help\t\n\0"
)
_CONTROL_QUOTA = (
    b"Quota settings:\n"
    b"nodes            :     1000 Nodes per domain\n"
    b"watches          :      128 Watches per domain\n"
    b"transactions     :       10 Transactions per domain\n"
    b"outstanding      :       20 Outstanding requests per domain\n"
    b"transaction-nodes:     1024 Max. number of accessed nodes per transaction\n"
    b"memory           :  2621440 Total Xenstore memory per domain (error level)\n"
    b"node-size        :     2048 Max. size of a node\n"
    b"path-max         :     2048 Max. length of a node path\n"
    b"permissions      :        5 Max. number of permissions per node\n\0"
)




class _XsProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: XenStored, read_only: bool) -> None:
        self._server = server
        self._db = server.db
        self._read_only = read_only
        self._transport: asyncio.Transport | None = None
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []
        self._queued_events: set[bytes] = set()
        self._answered = 0
        self._dirty = False
        self.session: Session | None = None

    # -------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self._server._closed:
            # Accepted just before close(): nobody will ever answer it, so say so at once.
            transport.abort()
            return
        self._transport = transport
        self.session = self._db.connect(self._on_event, read_only=self._read_only)
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self._db.disconnect(self.session)
        self._server._connections.discard(self)
        self._transport = None
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        session = self.session
        transport = self._transport
        if session is None or transport is None:
            return
        decoder = self._decoder
        messages = decoder.feed_frames(data)
        out = self._out
        nodes = self._db._nodes
        faults = self._server.faults
        armed = faults.armed
        privileged_fast = session.privileged and not armed
        for op, req_id, tx_id, payload in messages:
            # Fast path: privileged READ of an existing absolute path outside a transaction.
            # Its argument test is xs_wire.one_arg's, inlined (the call costs 10% of the READ
            # rate); anything else falls through to _handle, which uses one_arg itself.
            if op == _OP_READ and not tx_id and privileged_fast \
                    and payload.find(b"\0") == len(payload) - 1:
                node = nodes.get(payload[:-1].decode("utf-8", "surrogateescape"))
                if node is not None:
                    value = node.value
                    out.append(_pack(_OP_READ, req_id, 0, len(value)) + value)
                    continue
            if armed:
                if faults.drop_after is not None and self._answered >= faults.drop_after:
                    self._flush()
                    transport.abort()
                    return
                self._answered += 1
                if faults.stalls(op, payload):
                    continue
            self._handle(session, op, req_id, tx_id, payload)
        if decoder.error is not None:
            # As C does: the frames before the bad header are answered, then the socket closes.
            log.info("xenstored: closing a connection: %s", decoder.error.reason)
            self._flush()
            transport.abort()
            return
        self._flush()

    # -------------------------------------------------------------- output

    def _on_event(self, path: str, token: str) -> None:
        payload = watch_payload(path, token)
        if len(payload) > PAYLOAD_MAX:
            log.warning("xenstored: dropping a %d-byte watch event", len(payload))
            return
        if path[:1] != "@":
            # C drops an event identical to one still queued and not yet written.
            if payload in self._queued_events:
                return
            self._queued_events.add(payload)
        self._out.append(encode(_OP_WATCH_EVENT, 0, 0, payload))
        if not self._dirty:
            self._dirty = True
            self._server._mark_dirty(self)

    def _flush(self) -> None:
        self._dirty = False
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        self._queued_events.clear()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        delay = self._server.faults.delay
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._write_later, data)
        else:
            transport.write(data)

    def _write_later(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _reply(self, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
        if len(payload) > PAYLOAD_MAX:
            payload = _E2BIG
            op = _OP_ERROR
        # encode() without its length check (done above): the call costs 5% of a DIRECTORY.
        self._out.append(_pack(op, req_id, tx_id, len(payload)) + payload)

    def _error(self, req_id: int, tx_id: int, name: str) -> None:
        self._out.append(encode(_OP_ERROR, req_id, tx_id, error_payload(name)))

    # -------------------------------------------------------------- request handling

    def _handle(self, session: Session, op: int, req_id: int, tx_id: int,
                payload: bytes) -> None:
        try:
            if op not in _KNOWN_OPS:
                raise StoreError("ENOSYS", f"unknown op {op}")
            if op in _PRIVILEGED_OPS and not session.privileged:
                raise StoreError("EACCES", f"op {op} is privileged")
            tx = None if op in _NO_TX_OPS else self._db.transaction(session, tx_id)
            if self._read_only and op in _MUTATING_OPS:
                raise StoreError("EACCES", "read-only connection")
            handler = self._HANDLERS[op]
            reply, after = handler(self, session, tx, payload)
        except StoreError as exc:
            self._error(req_id, tx_id, exc.name)
            return
        except Exception:  # a bug must cost one request, never the daemon
            log.exception("xenstored: internal error on op %d", op)
            self._error(req_id, tx_id, "EIO")
            return
        self._reply(op, req_id, tx_id, reply)
        if after is not None:
            after()

    _Result = tuple[bytes, Callable[[], None] | None]

    def _do_read(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        path = one_arg(payload)
        if path is None:
            raise StoreError("ENOENT", "READ needs one argument")
        return self._db.op_read(session, tx, path), None

    def _do_directory(self, session: Session, tx: Transaction | None,
                      payload: bytes) -> _Result:
        path = one_arg(payload)
        if path is None:
            raise StoreError("ENOENT", "DIRECTORY needs one argument")
        return self._db.op_directory(session, tx, path), None

    def _do_directory_part(self, session: Session, tx: Transaction | None,
                           payload: bytes) -> _Result:
        if payload.count(b"\0") != 2:
            raise StoreError("EINVAL", "DIRECTORY_PART needs two arguments")
        path, offset = split_strings(payload)
        return self._db.op_directory_part(session, tx, path, offset), None

    def _do_get_perms(self, session: Session, tx: Transaction | None,
                      payload: bytes) -> _Result:
        path = one_arg(payload)
        if path is None:
            raise StoreError("ENOENT", "GET_PERMS needs one argument")
        return self._db.op_get_perms(session, tx, path), None

    def _do_write(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        cut = payload.find(b"\0")
        if cut < 0:
            raise StoreError("EINVAL", "WRITE without a path")
        path = payload[:cut].decode("utf-8", "surrogateescape")
        self._db.op_write(session, tx, path, payload[cut + 1:])
        return ACK, None

    def _do_mkdir(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        path = one_arg(payload)
        if path is None:
            raise StoreError("ENOMEM", "MKDIR needs one argument")
        self._db.op_mkdir(session, tx, path)
        return ACK, None

    def _do_rm(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        path = one_arg(payload)
        if path is None:
            raise StoreError("ENOMEM", "RM needs one argument")
        self._db.op_rm(session, tx, path)
        return ACK, None

    def _do_set_perms(self, session: Session, tx: Transaction | None,
                      payload: bytes) -> _Result:
        self._db.op_set_perms_wire(session, tx, split_strings(payload))
        return ACK, None

    def _do_watch(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        if payload.count(b"\0") != 2:
            raise StoreError("EINVAL", "WATCH needs a path and a token")
        path, token = split_strings(payload)
        return ACK, self._db.op_watch(session, path, token)

    def _do_unwatch(self, session: Session, tx: Transaction | None,
                    payload: bytes) -> _Result:
        if payload.count(b"\0") != 2:
            raise StoreError("EINVAL", "UNWATCH needs a path and a token")
        path, token = split_strings(payload)
        self._db.op_unwatch(session, path, token)
        return ACK, None

    def _do_transaction_start(self, session: Session, tx: Transaction | None,
                              payload: bytes) -> _Result:
        tx_id = self._db.op_transaction_start(session, tx)
        return f"{tx_id}\0".encode(), None

    def _do_transaction_end(self, session: Session, tx: Transaction | None,
                            payload: bytes) -> _Result:
        arg = one_arg(payload)
        if arg not in ("T", "F"):
            raise StoreError("EINVAL", "TRANSACTION_END takes T or F")
        self._db.op_transaction_end(session, tx, arg == "T")
        return ACK, None

    def _do_get_domain_path(self, session: Session, tx: Transaction | None,
                            payload: bytes) -> _Result:
        arg = one_arg(payload)
        if arg is None:
            raise StoreError("EINVAL", "GET_DOMAIN_PATH needs one argument")
        return self._db.op_get_domain_path(arg), None

    def _do_is_domain_introduced(self, session: Session, tx: Transaction | None,
                                 payload: bytes) -> _Result:
        arg = one_arg(payload)
        if arg is None:
            raise StoreError("EINVAL", "IS_DOMAIN_INTRODUCED needs one argument")
        return (b"T\0" if self._db.op_is_domain_introduced(session, arg) else b"F\0"), None

    def _do_introduce(self, session: Session, tx: Transaction | None,
                      payload: bytes) -> _Result:
        args = split_strings(payload)
        if len(args) < 3:
            raise StoreError("EINVAL", "INTRODUCE needs domid, gfn and event channel")
        self._db.op_introduce(session, args[0], args[2])
        return ACK, None

    def _do_release(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        arg = one_arg(payload)
        if arg is None:
            raise StoreError("EINVAL", "RELEASE needs one argument")
        self._db.op_release(session, arg)
        return ACK, None

    def _do_resume(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        arg = one_arg(payload)
        if arg is None:
            raise StoreError("EINVAL", "RESUME needs one argument")
        self._db.op_resume(session, arg)
        return ACK, None

    def _do_set_target(self, session: Session, tx: Transaction | None,
                       payload: bytes) -> _Result:
        args = split_strings(payload)
        if len(args) < 2:  # C reads the first two and ignores any more
            raise StoreError("EINVAL", "SET_TARGET needs two domids")
        self._db.op_set_target(session, args[0], args[1])
        return ACK, None

    def _do_reset_watches(self, session: Session, tx: Transaction | None,
                          payload: bytes) -> _Result:
        self._db.op_reset_watches(session)
        return ACK, None

    def _do_control(self, session: Session, tx: Transaction | None, payload: bytes) -> _Result:
        args = split_strings(payload)
        if not args:
            raise StoreError("EINVAL", "empty CONTROL")
        cmd, rest = args[0], args[1:]
        if cmd == "check" and not rest:
            return ACK, None
        if cmd == "help":
            return _CONTROL_HELP, None
        if cmd == "log" and rest and rest[0] in ("on", "off"):
            return ACK, None
        if cmd in ("print", "logfile") and len(rest) == 1:
            return ACK, None
        if cmd == "memreport":
            return ACK, None
        if cmd == "quota" and not rest:
            return _CONTROL_QUOTA, None
        if cmd == "sim-as-domain" and len(rest) == 1 and rest[0].isdigit():
            domid = int(rest[0])
            if domid > 0xFFFF:
                raise StoreError("EINVAL", f"bad domid {rest[0]}")
            session.set_identity(domid, privileged=domid == 0)
            session.target = self._db.target_of(domid)
            return ACK, None
        raise StoreError("EINVAL", f"unknown CONTROL command {cmd!r}")

    _HANDLERS: dict[int, Callable[[_XsProtocol, Session, Transaction | None, bytes], _Result]]


_XsProtocol._HANDLERS = {
    XsOp.CONTROL: _XsProtocol._do_control,
    XsOp.DIRECTORY: _XsProtocol._do_directory,
    XsOp.READ: _XsProtocol._do_read,
    XsOp.GET_PERMS: _XsProtocol._do_get_perms,
    XsOp.WATCH: _XsProtocol._do_watch,
    XsOp.UNWATCH: _XsProtocol._do_unwatch,
    XsOp.TRANSACTION_START: _XsProtocol._do_transaction_start,
    XsOp.TRANSACTION_END: _XsProtocol._do_transaction_end,
    XsOp.INTRODUCE: _XsProtocol._do_introduce,
    XsOp.RELEASE: _XsProtocol._do_release,
    XsOp.GET_DOMAIN_PATH: _XsProtocol._do_get_domain_path,
    XsOp.WRITE: _XsProtocol._do_write,
    XsOp.MKDIR: _XsProtocol._do_mkdir,
    XsOp.RM: _XsProtocol._do_rm,
    XsOp.SET_PERMS: _XsProtocol._do_set_perms,
    XsOp.IS_DOMAIN_INTRODUCED: _XsProtocol._do_is_domain_introduced,
    XsOp.RESUME: _XsProtocol._do_resume,
    XsOp.SET_TARGET: _XsProtocol._do_set_target,
    XsOp.RESET_WATCHES: _XsProtocol._do_reset_watches,
    XsOp.DIRECTORY_PART: _XsProtocol._do_directory_part,
}


class XenStored:
    """The xenstore daemon of the simulated node, serving ``db`` on two unix sockets.

    Use ``await start()`` / ``await close()`` or ``async with``. ``faults`` holds the
    :class:`XsFaults` knobs (shared with whoever passed them in).
    """

    def __init__(self, db: XenStoreDB, socket_path: str | os.PathLike[str],
                 ro_socket_path: str | os.PathLike[str] | None = None, *,
                 faults: XsFaults | None = None) -> None:
        self.db = db
        self.socket_path = os.fspath(socket_path)
        self.ro_socket_path = os.fspath(ro_socket_path) if ro_socket_path is not None else None
        self.faults = faults if faults is not None else XsFaults()
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[_XsProtocol] = set()
        self._dirty: list[_XsProtocol] = []
        self._flush_scheduled = False
        self._closed = False

    async def __aenter__(self) -> XenStored:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connection_count(self) -> int:
        """Return the number of clients connected now."""
        return len(self._connections)

    async def start(self) -> None:
        """Listen on the sockets (stale socket files are replaced)."""
        loop = asyncio.get_running_loop()
        self._closed = False
        try:
            for path, read_only in ((self.socket_path, False), (self.ro_socket_path, True)):
                if path is None:
                    continue
                _remove_stale_socket(path)
                server = await loop.create_unix_server(
                    functools.partial(_XsProtocol, self, read_only), path,
                    backlog=LISTEN_BACKLOG)
                self._servers.append(server)
                os.chmod(path, 0o600 if not read_only else 0o660)
        except BaseException:
            await self.close()
            raise
        log.info("xenstored listening on %s (read-only: %s)", self.socket_path,
                 self.ro_socket_path)

    async def close(self) -> None:
        """Stop listening, drop every client and remove the socket files."""
        self._closed = True
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for conn in list(self._connections):
            if conn._transport is not None:
                conn._transport.abort()
        for server in servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for path in (self.socket_path, self.ro_socket_path):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def _mark_dirty(self, conn: _XsProtocol) -> None:
        self._dirty.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._flush_dirty)
            except RuntimeError:  # db changed outside the loop: flush at once
                self._flush_dirty()

    def _flush_dirty(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            if conn._dirty:
                conn._flush()


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        os.unlink(path)
