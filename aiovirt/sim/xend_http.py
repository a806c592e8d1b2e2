"""The simulated xend's HTTP layer: xend's own hand-written HTTP/1.x server, on asyncio streams.

What it reproduces of ``xen/web/http.py`` and ``httpserver.py`` (3.0.x; see ``xend-http.md``
§1.2):

- a request line of three fields, or two (HTTP/0.9); anything else, or a version that is not
  ``HTTP/x.y``, is ``400 Bad request`` and the connection is closed. End of stream where a request
  line should be counts as a bad request line (xend wrote the 400 to the closed socket);
- at most 500 header lines, names case-insensitive, the last of a repeated header wins;
- a body only when ``Content-Length`` parses as an integer; more than 10000 bytes is ``413
  Request entity too large`` and the connection is closed without reading the body;
- the connection stays open only if the request said ``Connection: keep-alive`` (then the reply
  says so too); HTTP/1.1's default persistence is not honoured;
- every reply is ``HTTP/1.1``, with ``Content-length`` (except to HEAD), ``Expires: -1``,
  ``Pragma: no-cache``, ``Cache-control: no-cache``, no ``Date`` and no ``Server``.

How connections are served (``serving``):

- ``"serial"`` (xend 3.0.0-3.0.3): the accept loop serves each connection inline, for as long
  as it is kept alive; the next connection waits in the listen backlog (5) until then. A request
  for one of xend's thread ops (save, restore, migrate) hands its connection to a thread, and the
  accept loop goes on while that connection is served on its own;
- ``"threaded"`` (xend 3.0.4 and later): every accepted connection is served on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

__all__ = ["SERVINGS", "HttpListener", "HttpReply", "HttpRequest"]

SERVINGS = ("serial", "threaded")
BODY_LIMIT = 10000
MAX_HEADERS = 500
BACKLOG = 5
# The order xend 3.0.3's reply headers were observed in (a Python 2 dict's order).
HEADER_ORDER = ("Content-length", "Expires", "Location", "Connection", "Content-type",
                "Pragma", "Cache-control")
_NO_CACHE = {"Expires": "-1", "Pragma": "no-cache", "Cache-control": "no-cache"}


class _Abort(Exception):
    """End the connection after ``reply``, sent with ``Connection: keep-alive`` if so asked."""

    def __init__(self, reply: HttpReply, keep_alive: bool = False) -> None:
        super().__init__()
        self.reply = reply
        self.keep_alive = keep_alive


@dataclass
class HttpRequest:
    """One parsed request, as xend's request object saw it."""

    method: str
    uri: str
    headers: dict[str, str]  # lower-case names
    body: bytes | None
    keep_alive: bool
    answered: int  # replies already sent on this connection
    local_port: int  # the listener's port as xend knew it (8080 for the unix socket)
    handoff: Callable[[], None] = field(repr=False, default=lambda: None)

    @property
    def raw_path(self) -> str:
        """Return the request URI as sent (path and query)."""
        return self.uri

    @property
    def path(self) -> str:
        """Return the URI up to the first ``?``."""
        return self.uri.split("?", 1)[0]

    @property
    def query_string(self) -> str:
        """Return what follows the first ``?`` up to the next ``?`` (xend split on every ``?``)."""
        parts = self.uri.split("?")
        return parts[1] if len(parts) > 1 else ""

    def header(self, name: str) -> str | None:
        """Return the request header ``name`` (case-insensitive), or None."""
        return self.headers.get(name.lower())


@dataclass
class HttpReply:
    """What goes back: status, reason, headers (without the no-cache ones), body."""

    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    close: bool = False  # close the connection after this reply
    drop: bool = False  # abort the connection instead of answering


Handler = Callable[[HttpRequest], Awaitable[HttpReply]]


def encode_reply(request_method: str, keep_alive: bool, reply: HttpReply) -> bytes:
    """Return the bytes of ``reply`` as xend wrote them."""
    found = dict(reply.headers)
    found.update(_NO_CACHE)
    if request_method == "HEAD":
        found.pop("Content-length", None)
    else:
        found["Content-length"] = str(len(reply.body))
    if keep_alive:
        found["Connection"] = "keep-alive"
    lines = [f"HTTP/1.1 {reply.status} {reply.reason}"]
    lines += [f"{name}: {found.pop(name)}" for name in HEADER_ORDER if name in found]
    lines += [f"{name.capitalize()}: {value}" for name, value in found.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head if request_method == "HEAD" else head + reply.body


def _bad_request() -> HttpReply:
    return HttpReply(400, "Bad request")


async def read_request(reader: asyncio.StreamReader, answered: int,
                       local_port: int) -> tuple[HttpRequest, bool]:
    """Read one request; raise :class:`_Abort` with xend's error reply for a bad one.

    Returns the request and whether its connection asked to be kept alive.
    """
    line = await reader.readline()
    fields = line.decode("latin-1").split()
    if len(fields) == 3:
        method, uri, version = fields
    elif len(fields) == 2:
        (method, uri), version = fields, "HTTP/0.9"
    else:
        raise _Abort(_bad_request())
    numbers = version[len("HTTP/"):].split(".") if version.startswith("HTTP/") else []
    if len(numbers) != 2 or not all(n.strip().lstrip("+-").isdigit() for n in numbers):
        raise _Abort(_bad_request())
    headers: dict[str, str] = {}
    last: str | None = None
    count = 0
    while True:
        if count >= MAX_HEADERS:
            raise _Abort(_bad_request())
        raw = await reader.readline()
        count += 1
        if raw in (b"\r\n", b"\n", b""):
            break
        text = raw.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and last is not None:
            headers[last] += " " + text.strip()
            continue
        name, sep, value = text.partition(":")
        if sep and name.strip():
            last = name.strip().lower()
            headers[last] = value.strip()
    mode = headers.get("connection", "").lower()
    keep_alive = mode == "keep-alive"
    body: bytes | None = None
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        length = None
    if length is not None:
        if length > BODY_LIMIT:
            # the reply carries the request's keep-alive, then xend closed the socket anyway
            raise _Abort(HttpReply(413, "Request entity too large"), keep_alive) from None
        if length < 0:  # Python's file.read(-n) reads to the end of the stream
            body = await reader.read()
        else:
            try:
                body = await reader.readexactly(length)
            except asyncio.IncompleteReadError as exc:
                body = exc.partial
    request = HttpRequest(method, uri, headers, body, keep_alive, answered, local_port)
    return request, keep_alive


class HttpListener:
    """One listening socket (unix path or TCP host:port) served xend's way."""

    def __init__(self, handler: Handler, *, serving: str, unix_path: str | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if serving not in SERVINGS:
            raise ValueError(f"serving must be one of {SERVINGS}, not {serving!r}")
        self.handler = handler
        self.serving = serving
        self.unix_path = unix_path
        self.host = host
        self.port = port
        self.connections = 0  # accepted so far
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._serving: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def local_port(self) -> int:
        """Return the port xend put in its URLs: the TCP port, or 8080 for the unix socket."""
        return 8080 if self.unix_path is not None else self.port

    async def start(self) -> None:
        """Bind, listen (backlog 5, as xend) and start accepting."""
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(self.unix_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
            except BaseException:
                sock.close()
                raise
            self.port = int(sock.getsockname()[1])
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self._sock = sock
        self._accepting = asyncio.get_running_loop().create_task(
            self._accept_loop(sock), name=f"xend accept {self.unix_path or self.port}")

    async def close(self) -> None:
        """Stop accepting, end every connection and wait for their tasks."""
        task, self._accepting = self._accepting, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._serving)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. EMFILE: xend's accept loop would have died
                log.warning("simulated xend: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self.connections += 1
            released = asyncio.Event()
            task = loop.create_task(self._serve(conn, released))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
            if self.serving == "serial":
                await released.wait()

    async def _serve(self, conn: socket.socket, released: asyncio.Event) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=1 << 20)
        except BaseException:
            conn.close()
            released.set()
            raise
        self._writers.add(writer)
        try:
            await self._requests(reader, writer, released.set)
        except (ConnectionError, OSError):
            pass  # the peer went away; xend printed the exception and closed
        except ValueError:  # a line longer than the stream's limit (1 MiB): give up on it
            log.info("simulated xend: closing a connection that sent an over-long line")
        finally:
            self._writers.discard(writer)
            writer.close()
            released.set()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        handoff: Callable[[], None]) -> None:
        answered = 0
        while True:
            keep_alive = False
            try:
                request, keep_alive = await read_request(reader, answered, self.local_port)
            except _Abort as abort:
                writer.write(encode_reply("GET", abort.keep_alive, abort.reply))
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
                return
            request.handoff = handoff
            reply = await self.handler(request)
            if reply.drop:
                writer.transport.abort()
                return
            writer.write(encode_reply(request.method, keep_alive, reply))
            await writer.drain()
            answered += 1
            if reply.close or not keep_alive:
                return
