"""The xend backend: xend's HTTP/S-expression interface over a unix socket or TCP (aiohttp).

One :class:`XendClient` owns one ``aiohttp.ClientSession`` whose connector keeps a bounded pool
of keep-alive connections, so concurrent calls run concurrently (up to the pool size) without
paying a connect per request as libvirt 0.0.6 did.

What makes xend answer in S-expressions: it renders SXP when the request's ``Accept`` contains
``application/sxp`` (or when User-Agent or Accept is missing); we send ``Accept:
application/sxp`` and no User-Agent. xend keeps a connection open only when the request says
``Connection: keep-alive`` (HTTP/1.1 persistence is not assumed), so we say it. POST bodies are
``application/x-www-form-urlencoded``; replies are read whole, whatever their size.

Errors, every xend version from 3.0.0 to 4.4 (see ``xend-http.md`` §1.4, §2.5): a status >= 300
is an error; so is a 200/201/202 whose body is ``(xend.err ...)`` (3.0.0-3.0.2, and thread ops
such as save and restore in later versions); a 404 on a domain's URL means no such domain (the
3.0.x and 3.4+ forms), as does a bodiless 500 on a domain's URL when the domain is not in the
node's list (3.1-3.3). Transport failures (aiohttp and OS errors, timeouts) are translated into
:class:`VirtError` in one place, :meth:`XendClient._exchange`, which names the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol import sexpr
from aiovirt.protocol.sexpr import SExpr

__all__ = ["XendClient", "XendReply"]

log = logging.getLogger(__name__)

# Operations that xend runs in a thread and that may legitimately take minutes.
LONG_TIMEOUT = 600.0
_NO_SUCH_DOMAIN = re.compile(r"no such domain|no domain named|^<Fault 3:", re.IGNORECASE)
_NAME_IN_USE = re.compile(r"already in use|already exists", re.IGNORECASE)


class XendReply(NamedTuple):
    """One xend answer: HTTP status, reason phrase, content type and the whole body."""

    status: int
    reason: str
    content_type: str
    body: bytes


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


class XendClient:
    """A client of one xend endpoint (``unix:PATH`` or ``http://host:port/``).

    ``async with XendClient(endpoint) as xend:``; or ``await XendClient.open(endpoint)`` which
    also checks that xend answers. Each method is one xend operation and returns the parsed
    S-expression (``None`` for an empty body). ``limit`` bounds the pooled connections,
    ``timeout`` each request (seconds).
    """

    def __init__(self, endpoint: str, *, limit: int = 32, timeout: float = 30.0,
                 connect_timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.limit = limit
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.requests = 0
        if endpoint.startswith("unix:"):
            self._socket_path: str | None = endpoint[len("unix:"):]
            self._base = "http://localhost"
        else:
            self._socket_path = None
            self._base = endpoint.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<XendClient {self.endpoint}>"

    @property
    def where(self) -> str:
        """Return the endpoint as it appears in error messages."""
        return f"xend at {self.endpoint}"

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
        """Close the pooled connections; later requests fail with ``INVALID_CONN``."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @property
    def closed(self) -> bool:
        """Return True once :meth:`close` was called."""
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise VirtError(ErrorNumber.INVALID_CONN, ErrorDomain.XEND,
                            f"closed client of {self.where}")
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self._socket_path is not None:
                connector = aiohttp.UnixConnector(
                    path=self._socket_path, limit=self.limit, keepalive_timeout=30.0)
            else:
                connector = aiohttp.TCPConnector(
                    limit=self.limit, limit_per_host=self.limit, keepalive_timeout=30.0,
                    family=socket.AF_UNSPEC, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout,
                                              sock_connect=self.connect_timeout),
                headers={
                    "Accept": "application/sxp",
                    "Accept-Encoding": "identity",
                    "Connection": "keep-alive",
                },
                skip_auto_headers=("User-Agent",),
                auto_decompress=False,
                raise_for_status=False,
            )
        return self._session

    # -- the one seam where transport failures become VirtError ---------------------------

    @contextmanager
    def _translate(self, what: str, timeout: float) -> Iterator[None]:
        try:
            yield
        except VirtError:
            raise
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientConnectorError, ConnectionRefusedError,
                FileNotFoundError) as exc:
            reason = getattr(exc, "os_error", None) or exc
            raise VirtError(ErrorNumber.NO_CONNECT, ErrorDomain.XEND,
                            f"Xen Daemon at {self.endpoint} ({reason})") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise VirtError(ErrorNumber.OPERATION_TIMEOUT, ErrorDomain.XEND,
                            f"{what} on {self.where}: no answer within {timeout:g} s") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                            f"{self.where} closed the connection during {what}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                            f"failed to talk to {self.where} during {what}: "
                            f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                        form: Mapping[str, str] | None = None,
                        time_limit: float | None = None) -> XendReply:
        """Send one request and return xend's whole reply; transport errors become VirtError."""
        url = self._base + path
        if query:
            url += "?" + urlencode(query)
        what = f"{method} {path}"
        if form and "op" in form:
            what = f"{method} {path} op={form['op']}"
        limit = self.timeout if time_limit is None else time_limit
        session = self._get_session()
        data = None
        headers = None
        if method == "POST":
            data = urlencode(form or {}).encode("ascii")
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        self.requests += 1
        with self._translate(what, limit):
            async with session.request(
                method, URL(url, encoded=True), data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=limit, sock_connect=self.connect_timeout),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                return XendReply(resp.status, resp.reason or "",
                                 resp.headers.get("Content-Type", ""), body)
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
        """Check that xend answers HTTP at all (any status will do)."""
        await self._exchange("GET", "/xend/node/", time_limit=min(self.timeout, 10.0))

    async def node(self) -> SExpr:
        """Return ``GET /xend/node/``: ``(node (system ...) (nr_cpus ...) ...)``."""
        return self._required(await self._call("GET", "/xend/node/"), "GET /xend/node/")

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
