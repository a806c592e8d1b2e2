"""The xend backend: xend's HTTP/S-expression interface over a unix socket or TCP.

HTTP is spoken here directly on asyncio streams, because how connections are held decides
whether a xend answers at all. xend 3.0.0-3.0.3 serve **one connection at a time** per listener
(``xend-http.md`` §1.2): the accept loop serves a connection inline for as long as it is kept
alive, and the next connection waits, unanswered, until that one closes. From 3.0.4 each
connection gets its own thread. So:

- until the server has shown it serves connections concurrently, a :class:`XendClient` uses
  **one connection at a time**, and concurrent calls queue for it in order. What shows it is
  ``GET /xend/node``'s ``xend_config_format``: 3 from xend 3.0.4 (the release that brought the
  per-connection threads), 4 from 3.1; 3.0.3 says 2 and earlier versions nothing. Then up to
  ``limit`` connections are used at once;
- against a serial xend a connection is **never held idle**: a request asks for
  ``Connection: keep-alive`` only when another call is already waiting for the connection, which
  it then gets; the last request of a burst asks for ``Connection: close``, so xend is free for
  its other clients (xm, another service) the moment the burst is done. Against a threaded xend
  idle connections are kept for :attr:`XendClient.idle_timeout` seconds;
- xend's thread ops (``save``, ``restore``, ``migrate``) hand their connection to a thread of
  their own in every version, so they run on a connection of their own too, and a save that
  takes minutes does not hold up the other calls.

A request's ``timeout`` covers its exchange (connect, send, whole reply), not its wait in the
queue; a kept-alive connection that turns out to be closed when reused is retried once for a
GET.

What makes xend answer in S-expressions: it renders SXP when the request's ``Accept`` contains
``application/sxp`` (or when User-Agent or Accept is missing); we send ``Accept:
application/sxp`` and no User-Agent. POST bodies are ``application/x-www-form-urlencoded``;
replies are read whole, whatever their size.

Errors, every xend version from 3.0.0 to 4.4 (see ``xend-http.md`` §1.4, §2.5): a status >= 300
is an error; so is a 200/201/202 whose body is ``(xend.err ...)`` (3.0.0-3.0.2, and thread ops
such as save and restore in later versions); a 404 on a domain's URL means no such domain (the
3.0.x and 3.4+ forms), as does a bodiless 500 on a domain's URL when the domain is not in the
node's list (3.1-3.3). Transport failures (OS errors, timeouts, a connection closed before the
reply) are translated into :class:`VirtError` in one place, :meth:`XendClient._translate`, which
names the endpoint.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol import sexpr
from aiovirt.protocol.sexpr import SExpr

__all__ = ["XendClient", "XendReply"]

log = logging.getLogger(__name__)

# Operations that xend runs in a thread and that may legitimately take minutes.
LONG_TIMEOUT = 600.0
# The ops xend hands to a thread of their own (the connection goes with them).
THREAD_OPS = frozenset({"save", "restore", "migrate"})
# xend_config_format from which xend serves every connection in a thread of its own (3.0.4).
THREADED_CONFIG_FORMAT = 3
_NO_SUCH_DOMAIN = re.compile(r"no such domain|no domain named|^<Fault 3:", re.IGNORECASE)
_NAME_IN_USE = re.compile(r"already in use|already exists", re.IGNORECASE)
_READ_LIMIT = 1 << 20


class XendReply(NamedTuple):
    """One xend answer: HTTP status, reason phrase, content type and the whole body."""

    status: int
    reason: str
    content_type: str
    body: bytes


class _Closed(Exception):
    """The server closed the connection before (all of) its reply."""

    def __init__(self, started: bool) -> None:
        super().__init__("closed")
        self.started = started  # some of the reply had arrived


class _Link:
    """One HTTP connection to xend."""

    __slots__ = ("idle_handle", "reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = 0  # exchanges completed on it
        self.idle_handle: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        self.writer.close()


def _xend_error_message(body: bytes) -> str | None:
    """Return the message of an ``(xend.err ...)`` body, or None if the body is not one."""
    text = body.strip()
    if not text.startswith(b"(xend.err"):
        return None
    try:
        value = sexpr.parse_all(text)[0]
    except (VirtError, IndexError):
        return text.decode("utf-8", "replace")
    if isinstance(value, list) and value and value[0] == "xend.err":
        parts = [p if isinstance(p, str) else sexpr.dumps(p) for p in value[1:]]
        return " ".join(parts) or "unspecified xend error"
    return None


def _body_text(body: bytes, limit: int = 300) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


async def _read_reply(reader: asyncio.StreamReader, method: str) -> tuple[XendReply, bool]:
    """Read one reply; return it and whether the connection may carry another request."""
    line = await reader.readline()
    if not line:
        raise _Closed(False)
    if not line.endswith(b"\n"):
        raise _Closed(True)
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {_body_text(line, 80)!r}")
    version, status, reason = parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if not raw.endswith(b"\n"):
            raise _Closed(True)
        if raw in (b"\r\n", b"\n"):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    persistent = "close" not in headers.get("connection", "").lower() and (
        version != "HTTP/1.0" or "keep-alive" in headers.get("connection", "").lower())
    body = b""
    try:
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(chunks)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
            persistent = False
    except asyncio.IncompleteReadError as exc:
        raise _Closed(True) from exc
    # xend closes after these whatever the request asked (3.0.x-4.x: 400, 413, and the 500 of
    # an exception while resolving the path)
    if status in (400, 413) or (status == 500 and reason == "Internal server error"):
        persistent = False
    return XendReply(status, reason, headers.get("content-type", ""), body), persistent


async def _unix_connect(path: str) -> socket.socket:
    """Return a socket connected to ``path``, waiting while the listener's backlog is full.

    A unix socket's non-blocking ``connect`` fails with EAGAIN when the listen backlog is full
    (xend's is 5); asyncio would then wait for writability and take the socket for connected
    although it is not. So the connect is asked again, a little later each time, until it
    succeeds (the caller's timeout bounds the wait).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    delay = 0.0005
    try:
        while True:
            try:
                sock.connect(path)
                return sock
            except (BlockingIOError, InterruptedError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
    except BaseException:
        sock.close()
        raise


class XendClient:
    """A client of one xend endpoint (``unix:PATH`` or ``http://host:port/``).

    ``async with XendClient(endpoint) as xend:``; or ``await XendClient.open(endpoint)`` which
    also checks that xend answers (and learns from its node record how many connections it
    serves at once). Each method is one xend operation and returns the parsed S-expression
    (``None`` for an empty body). ``limit`` bounds the connections used at once against a xend
    that serves connections concurrently (3.0.4+; earlier ones get one); ``timeout`` each
    request's exchange (seconds).
    """

    idle_timeout = 15.0

    def __init__(self, endpoint: str, *, limit: int = 32, timeout: float = 30.0,
                 connect_timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.limit = max(1, limit)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.requests = 0
        self.connections = 0  # opened so far
        self.threaded = False  # the server showed it serves connections concurrently
        self.config_format: int | None = None  # its xend_config_format, once seen
        if endpoint.startswith("unix:"):
            self._socket_path: str | None = endpoint[len("unix:"):]
            self._host, self._port = "localhost", 0
            self._host_header = "localhost"
        else:
            self._socket_path = None
            parts = urlsplit(endpoint)
            self._host = parts.hostname or "localhost"
            self._port = parts.port or 80
            self._host_header = parts.netloc or self._host
        self._busy = 0  # slots taken (a slot: the right to one connection to xend)
        self._waiters: collections.deque[asyncio.Future[_Link | None]] = collections.deque()
        self._idle: list[_Link] = []
        self._links: set[_Link] = set()  # every open connection
        self._closed = False

    def __repr__(self) -> str:
        return f"<XendClient {self.endpoint}>"

    @property
    def where(self) -> str:
        """Return the endpoint as it appears in error messages."""
        return f"xend at {self.endpoint}"

    @property
    def capacity(self) -> int:
        """Return how many connections this client uses at once (1 until xend shows more)."""
        return self.limit if self.threaded else 1

    @property
    def open_connections(self) -> int:
        """Return how many connections to xend are open now (in use or idle)."""
        return len(self._links)

    @classmethod
    async def open(cls, endpoint: str, **kwargs: Any) -> XendClient:
        """Return a client of ``endpoint`` once xend has answered one request there.

        Raises ``NO_CONNECT`` naming the endpoint when nothing answers.
        """
        client = cls(endpoint, **kwargs)
        try:
            await client.probe()
        except BaseException:
            await client.close()
            raise
        return client

    async def __aenter__(self) -> XendClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection; later requests fail with ``INVALID_CONN``."""
        self._closed = True
        self._idle = []
        for link in list(self._links):
            self._drop(link)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(self._closed_error())
        await asyncio.sleep(0)  # let the transports report their closing

    @property
    def closed(self) -> bool:
        """Return True once :meth:`close` was called."""
        return self._closed

    def _closed_error(self) -> VirtError:
        return VirtError(ErrorNumber.INVALID_CONN, ErrorDomain.XEND,
                         f"closed client of {self.where}")

    # -- what the server can take ----------------------------------------------------------

    def learn(self, node: SExpr | None) -> None:
        """Take from xend's node record (``GET /xend/node``) how it serves connections."""
        fmt = sexpr.lookup(node, "node/xend_config_format") if isinstance(node, list) else None
        try:
            self.config_format = int(fmt) if fmt is not None else None
        except ValueError:
            self.config_format = None
        threaded = (self.config_format or 0) >= THREADED_CONFIG_FORMAT
        if threaded != self.threaded:
            log.debug("%s serves connections %s", self.where,
                      "concurrently" if threaded else "one at a time")
        self.threaded = threaded
        while self._waiters and self._busy < self.capacity:
            fut = self._waiters.popleft()
            if not fut.done():
                self._busy += 1
                fut.set_result(self._take_idle())

    # -- the queue of calls for the connections ---------------------------------------------

    async def _slot(self) -> _Link | None:
        """Wait for a slot; return the kept-alive connection that comes with it, if any."""
        if self._closed:
            raise self._closed_error()
        if self._busy < self.capacity and not self._waiters:
            self._busy += 1
            return self._take_idle()
        fut: asyncio.Future[_Link | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(fut.result(), reusable=True)  # it came as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def _release(self, link: _Link | None, *, reusable: bool) -> None:
        """Give the slot (and ``link``, if it may carry another request) to the next call."""
        if link is not None and (not reusable or self._closed):
            self._drop(link)
            link = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(link)
                return
        self._busy -= 1
        if link is None:
            return
        if self.threaded and self._busy < self.capacity:
            self._park(link)
        else:
            self._drop(link)  # a serial xend must not be held by an idle connection

    def _take_idle(self) -> _Link | None:
        if not self._idle:
            return None
        link = self._idle.pop()
        if link.idle_handle is not None:
            link.idle_handle.cancel()
            link.idle_handle = None
        return link

    def _park(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        link.idle_handle = loop.call_later(self.idle_timeout, self._expire, link)
        self._idle.append(link)

    def _expire(self, link: _Link) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(link)
        link.idle_handle = None
        self._drop(link)

    def _drop(self, link: _Link) -> None:
        self._links.discard(link)
        link.close()

    async def _connect(self) -> _Link:
        if self._socket_path is not None:
            reader, writer = await asyncio.open_unix_connection(
                sock=await _unix_connect(self._socket_path), limit=_READ_LIMIT)
        else:
            reader, writer = await asyncio.open_connection(self._host, self._port,
                                                           limit=_READ_LIMIT)
        self.connections += 1
        link = _Link(reader, writer)
        self._links.add(link)
        if self._closed:  # closed while connecting
            self._drop(link)
            raise self._closed_error()
        return link

    # -- the one seam where transport failures become VirtError ---------------------------

    @contextmanager
    def _translate(self, what: str, timeout: float, phase: list[str]) -> Iterator[None]:
        try:
            yield
        except VirtError:
            raise
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            hint = ""
            if not self.threaded:
                hint = (" (a xend before 3.0.4 serves one connection at a time: another "
                        "client may be holding it)")
            where = "connecting to" if phase[0] == "connect" else "on"
            raise VirtError(ErrorNumber.OPERATION_TIMEOUT, ErrorDomain.XEND,
                            f"{what} {where} {self.where}: no answer within {timeout:g} s"
                            f"{hint}") from exc
        except _Closed as exc:
            raise VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                            f"{self.where} closed the connection during {what}") from exc
        except OSError as exc:
            if phase[0] == "connect":
                raise VirtError(ErrorNumber.NO_CONNECT, ErrorDomain.XEND,
                                f"Xen Daemon at {self.endpoint} ({exc})") from exc
            if isinstance(exc, ConnectionError):
                raise VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                                f"{self.where} closed the connection during {what} "
                                f"({exc.strerror or exc})") from exc
            raise VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                            f"failed to talk to {self.where} during {what}: "
                            f"{type(exc).__name__}: {exc}") from exc
        except (ValueError, asyncio.LimitOverrunError) as exc:
            raise VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                            f"{self.where} answered {what} with something that is not HTTP: "
                            f"{exc}") from exc

    def _request_bytes(self, method: str, target: str, body: bytes | None,
                       keep_alive: bool) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}",
                 "Accept: application/sxp", "Accept-Encoding: identity",
                 f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        if body is not None:
            lines.append("Content-Type: application/x-www-form-urlencoded")
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + (body or b"")

    async def _over(self, link: _Link, request: bytes, method: str) -> tuple[XendReply, bool]:
        link.writer.write(request)
        await link.writer.drain()
        reply, persistent = await _read_reply(link.reader, method)
        link.used += 1
        return reply, persistent

    async def _exchange(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                        form: Mapping[str, str] | None = None,
                        time_limit: float | None = None) -> XendReply:
        """Send one request and return xend's whole reply; transport errors become VirtError."""
        target = path + ("?" + urlencode(query) if query else "")
        what = f"{method} {path}"
        op = form.get("op") if form else None
        if op:
            what = f"{method} {path} op={op}"
        limit = self.timeout if time_limit is None else time_limit
        body = urlencode(form or {}).encode("ascii") if method == "POST" else None
        if op in THREAD_OPS:
            return await self._exchange_alone(method, target, body, what, limit)
        link = await self._slot()
        reusable = False
        phase = ["send"]
        try:
            with self._translate(what, limit, phase):
                async with asyncio.timeout(limit):
                    self.requests += 1
                    if link is not None:
                        try:
                            keep = self.threaded or bool(self._waiters)
                            reply, persistent = await self._over(
                                link, self._request_bytes(method, target, body, keep), method)
                            reusable = keep and persistent
                            return reply
                        except (_Closed, ConnectionError) as exc:
                            # a kept-alive connection that was closed meanwhile: a GET is
                            # asked again on a new one
                            self._drop(link)
                            link = None
                            started = isinstance(exc, _Closed) and exc.started
                            if method != "GET" or started:
                                raise
                    phase[0] = "connect"
                    link = await self._connect()
                    phase[0] = "send"
                    keep = self.threaded or bool(self._waiters)
                    reply, persistent = await self._over(
                        link, self._request_bytes(method, target, body, keep), method)
                    reusable = keep and persistent
                    return reply
        finally:
            self._release(link, reusable=reusable)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange_alone(self, method: str, target: str, body: bytes | None, what: str,
                              limit: float) -> XendReply:
        """Run one of xend's thread ops on a connection of its own, outside the queue."""
        if self._closed:
            raise self._closed_error()
        phase = ["connect"]
        link: _Link | None = None
        try:
            with self._translate(what, limit, phase):
                async with asyncio.timeout(limit):
                    self.requests += 1
                    link = await self._connect()
                    phase[0] = "send"
                    reply, _ = await self._over(
                        link, self._request_bytes(method, target, body, False), method)
                    return reply
        finally:
            if link is not None:
                self._drop(link)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- status and body conventions ------------------------------------------------------

    async def _call(self, method: str, path: str, *, domain: str | None = None,
                    query: Mapping[str, str] | None = None,
                    form: Mapping[str, str] | None = None,
                    time_limit: float | None = None) -> SExpr | None:
        reply = await self._exchange(method, path, query=query, form=form, time_limit=time_limit)
        op = form.get("op") if form else None
        what = f"{method} {path}" + (f" op={op}" if op else "")
        failed = ErrorNumber.GET_FAILED if method == "GET" else ErrorNumber.POST_FAILED
        message = _xend_error_message(reply.body)
        if reply.status >= 300 or message is not None:
            if domain is not None and await self._means_no_domain(reply, message, domain):
                raise VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.XEND,
                                f"no domain {domain!r} on {self.where}",
                                int1=reply.status)
            if message is None:
                message = _body_text(reply.body) or reply.reason or "no message"
            code = failed
            if _NAME_IN_USE.search(message):
                code = ErrorNumber.DOM_EXIST
            info = f"{message} ({what} on {self.where}, HTTP {reply.status})"
            if code == ErrorNumber.DOM_EXIST:
                info = f"{message} ({what} on {self.where})"
            raise VirtError(code, ErrorDomain.XEND, info, int1=reply.status)
        text = reply.body.strip()
        if not text:
            return None
        try:
            return sexpr.parse_all(text)[0]
        except VirtError as exc:
            raise VirtError(ErrorNumber.PARSE_FAILED, ErrorDomain.SEXPR,
                            f"reply to {what} from {self.where}: {exc} "
                            f"(body starts {_body_text(text, 80)!r})") from exc

    async def _means_no_domain(self, reply: XendReply, message: str | None,
                               domain: str) -> bool:
        if reply.status == 404:
            return True
        if message is not None and _NO_SUCH_DOMAIN.search(message):
            return True
        if reply.status == 500 and not reply.body.strip():
            # xend 3.1-3.3 answer an unknown domain with a bodiless 500: ask the list.
            try:
                names = await self.list_domains_detail()
            except VirtError:
                return False
            for rec in names:
                if sexpr.lookup(rec, "domain/name") == domain:
                    return False
                if sexpr.lookup(rec, "domain/domid") == domain:
                    return False
            return True
        return False

    @staticmethod
    def _domain_path(domain: str | int) -> str:
        return "/xend/domain/" + quote(str(domain), safe="")

    # -- operations ------------------------------------------------------------------------

    async def probe(self) -> None:
        """Check that xend answers HTTP at all (any status will do); learn how it serves."""
        reply = await self._exchange("GET", "/xend/node/", time_limit=min(self.timeout, 10.0))
        if reply.status == 200:
            with contextlib.suppress(VirtError, IndexError):
                self.learn(sexpr.parse_all(reply.body.strip())[0])

    async def node(self) -> SExpr:
        """Return ``GET /xend/node/``: ``(node (system ...) (nr_cpus ...) ...)``."""
        value = self._required(await self._call("GET", "/xend/node/"), "GET /xend/node/")
        self.learn(value)
        return value

    async def list_domain_names(self) -> list[str]:
        """Return the names of the node's domains (``GET /xend/domain``)."""
        value = await self._call("GET", "/xend/domain", query={"state": "all"})
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        return [v for v in value if isinstance(v, str)]

    async def list_domains_detail(self) -> list[SExpr]:
        """Return every domain's full S-expression in one request (``?detail=1``)."""
        # xend 3.0.4+ lists only running domains unless asked for all (paused ones too);
        # earlier versions ignore the parameter.
        value = await self._call("GET", "/xend/domain", query={"detail": "1", "state": "all"})
        if not isinstance(value, list):
            return []
        if value and value[0] == "domain":  # a node with a single domain, written bare
            return [value]
        return [v for v in value if isinstance(v, list) and v and v[0] == "domain"]

    async def domain(self, domain: str | int) -> SExpr:
        """Return one domain's S-expression (``GET /xend/domain/<name-or-id>?detail=1``)."""
        path = self._domain_path(domain)
        value = await self._call("GET", path, domain=str(domain), query={"detail": "1"})
        return self._required(value, f"GET {path}")

    def _required(self, value: SExpr | None, what: str) -> SExpr:
        if value is None:
            raise VirtError(ErrorNumber.GET_FAILED, ErrorDomain.XEND,
                            f"empty reply to {what} from {self.where}")
        return value

    async def domain_op(self, domain: str | int, op: str, *, time_limit: float | None = None,
                        **fields: str | int) -> SExpr | None:
        """POST ``op`` with ``fields`` to one domain and return the reply body, if any."""
        form = {"op": op, **{k: str(v) for k, v in fields.items()}}
        return await self._call("POST", self._domain_path(domain), domain=str(domain),
                                form=form, time_limit=time_limit)

    async def create(self, config: SExpr | str) -> SExpr | None:
        """Create a domain (left paused) from an S-expression config; return its sxpr."""
        text = config if isinstance(config, str) else sexpr.dumps(config)
        return await self._call("POST", "/xend/domain/", form={"op": "create", "config": text},
                                time_limit=max(self.timeout, 120.0))

    async def restore(self, path: str) -> None:
        """Restore a domain from the save file ``path`` (a path on the xend host)."""
        await self._call("POST", "/xend/domain/", form={"op": "restore", "file": path},
                         time_limit=LONG_TIMEOUT)

    async def pause(self, domain: str | int) -> None:
        """Pause the domain."""
        await self.domain_op(domain, "pause")

    async def unpause(self, domain: str | int) -> None:
        """Unpause the domain."""
        await self.domain_op(domain, "unpause")

    async def shutdown(self, domain: str | int, reason: str = "poweroff") -> None:
        """Ask the domain to shut down (``reason``: poweroff, reboot, halt, suspend)."""
        await self.domain_op(domain, "shutdown", reason=reason)

    async def destroy(self, domain: str | int) -> None:
        """Destroy the domain at once."""
        await self.domain_op(domain, "destroy")

    async def wait_for_devices(self, domain: str | int) -> None:
        """Wait until every device of a new domain is connected."""
        await self.domain_op(domain, "wait_for_devices", time_limit=max(self.timeout, 120.0))

    async def save(self, domain: str | int, path: str) -> None:
        """Save the domain to ``path`` (on the xend host); the domain then goes away."""
        await self.domain_op(domain, "save", file=path, time_limit=LONG_TIMEOUT)

    async def set_max_memory(self, domain: str | int, kib: int) -> None:
        """Set the domain's maximum memory (xend takes whole MiB: rounded up)."""
        await self.domain_op(domain, "maxmem_set", memory=math.ceil(kib / 1024))

    async def set_memory_target(self, domain: str | int, kib: int) -> None:
        """Set the domain's balloon target (xend takes whole MiB: rounded up)."""
        await self.domain_op(domain, "mem_target_set", target=math.ceil(kib / 1024))
