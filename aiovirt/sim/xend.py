"""The simulated node's xend: the HTTP/S-expression interface of xend 3.0.x, on asyncio streams.

Served on a unix socket (``DIR/xend-socket``) and on TCP (127.0.0.1), one resource tree for both:
``/``, ``/xend``, ``/xend/node`` (+ ``dmesg``, ``log``), ``/xend/vnet``, ``/xend/domain`` (names,
``?detail=1``, POST ``op=create|list|restore``) and ``/xend/domain/<name-or-id>`` (GET its sxpr,
POST ``op=pause|unpause|shutdown|destroy|save|migrate|rename|sysrq|wait_for_devices|maxmem_set|
mem_target_set|set_vcpus|vcpuinfo|pincpu|devices|domain_sched_credit_get|..._set``), with xend's
status codes and reason phrases, ``(xend.err '...')`` bodies, its content negotiation (S-expressions
iff the request has no User-Agent, or no Accept, or an Accept containing ``application/sxp``;
otherwise a small HTML page) and its header names (``Content-length``, ``Content-type``,
``Pragma``, ``Cache-control``, ``Expires``; no ``Date``, no ``Server``).

``error_style`` switches between the conventions of xend versions:

- ``"3.0.3"`` (default): a failing synchronous op answers ``500 Request failed: <op>``; the thread
  ops (save, restore, migrate) answer 202/200 with the ``(xend.err ...)`` body; an unknown domain
  is ``404`` ``No such domain X``; ``maxmem_set`` only sets the hypervisor's limit (the sxpr keeps
  the configured maxmem); the node says ``(xend_config_format 2)``; one connection is served at a
  time per listener;
- ``"3.0.2"``: failing ops keep the status they had set (200, or 202 for accept-style ops) and
  carry the ``(xend.err ...)`` body; no ``xend_config_format``; otherwise as 3.0.3;
- ``"3.0.4"``: as 3.0.3, unknown domain ``No domain named 'X'.``; ``maxmem_set`` also updates
  the configured maxmem; ``(xend_config_format 3)``; every connection is served on its own;
- ``"3.4"``: as 3.0.4, unknown domain ``<Fault 3: 'X'>``, ``(xend_config_format 4)``.

``serving`` (``SimNode(xend_serving=...)``, ``python -m aiovirt.sim --xend-serving``) overrides the
version's way of serving connections: ``"serial"`` or ``"threaded"`` (see
:mod:`aiovirt.sim.xend_http`).

Where this xend still differs from the real one, and why, is written in ``docs/simulator.md``.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import errno
import html
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, unquote

from aiovirt.protocol.sexpr import SExpr, dumps
from aiovirt.sim.config import py_int
from aiovirt.sim.domain import SimDomain
from aiovirt.sim.errors import NoSuchDomain, SimError
from aiovirt.sim.xend_http import SERVINGS, HttpListener, HttpReply, HttpRequest
from aiovirt.sim.xend_views import domain_sxpr

if TYPE_CHECKING:
    from collections import Counter

    from aiovirt.sim.faults import Faults
    from aiovirt.sim.store import XenStoreDB

log = logging.getLogger(__name__)

__all__ = ["ERROR_STYLES", "SERVINGS", "XendServer", "serving_of", "wants_sxp"]

ERROR_STYLES = ("3.0.2", "3.0.3", "3.0.4", "3.4")
SXP = "application/sxp"
# How each version served connections: 3.0.4 gave every accepted connection its own thread.
_SERVING = {"3.0.2": "serial", "3.0.3": "serial", "3.0.4": "threaded", "3.4": "threaded"}
# What GET /xend/node says of xend itself: absent before 3.0.3, 2 in 3.0.3, 3 in 3.0.4, 4 in 3.1+.
_CONFIG_FORMAT = {"3.0.2": None, "3.0.3": "2", "3.0.4": "3", "3.4": "4"}


def serving_of(error_style: str) -> str:
    """Return how xend of this version served its connections: ``serial`` or ``threaded``."""
    return _SERVING[error_style]


def wants_sxp(user_agent: str | None, accept: str | None) -> bool:
    """Return True if xend would answer S-expressions to a request with these headers."""
    return not user_agent or not accept or SXP in accept


class _Reply:
    """What a resource answers, before content negotiation and header shaping."""

    def __init__(self, status: int = 200, reason: str = "OK", value: SExpr | None = None, *,
                 text: str | None = None, content_type: str | None = None,
                 location: str | None = None, drop: bool = False) -> None:
        self.status = status
        self.reason = reason
        self.value = value
        self.text = text
        self.content_type = content_type
        self.location = location
        self.drop = drop


@dataclass(frozen=True)
class _Op:
    """One POST op of a resource: its handler, success status, and error convention."""

    run: Callable[[SimDomain | None, dict[str, list[str]]], Awaitable[SExpr | None]]
    status: int = 200
    reason: str = "OK"
    thread: bool = False  # xend ran it in a thread: errors keep the success status
    location: str | None = None  # "up": url/..; "name": url/<new domain name>


def _arg(args: dict[str, list[str]], name: str) -> str:
    values = args.get(name)
    if not values:
        raise SimError(f"Missing parameter: {name}")
    return values[0]


def _int_arg(args: dict[str, list[str]], name: str) -> int:
    return py_int(_arg(args, name))


class XendModel(Protocol):
    """What xend's HTTP interface needs from the node it serves (:class:`SimNode` is one).

    Written here, so the server does not import the node that starts it.
    """

    counters: Counter[str]
    faults: Faults
    db: XenStoreDB

    @property
    def domains(self) -> list[SimDomain]: ...
    def find(self, ref: int | str) -> SimDomain | None: ...
    def node_sxpr(self) -> list[SExpr]: ...
    def vcpu_sxpr(self, ref: int | str) -> list[SExpr]: ...
    def create(self, config: str | bytes | SExpr) -> SimDomain: ...
    async def restore(self, path: str | os.PathLike[str]) -> SimDomain: ...
    async def save(self, ref: int | str, path: str | os.PathLike[str]) -> None: ...
    def pause(self, ref: int | str) -> None: ...
    def unpause(self, ref: int | str) -> None: ...
    def request_shutdown(self, ref: int | str, reason: str = "poweroff") -> None: ...
    def destroy(self, ref: int | str) -> None: ...
    def rename(self, ref: int | str, name: str) -> None: ...
    def sysrq(self, ref: int | str, key: int) -> None: ...
    def set_memory_target(self, ref: int | str, kib: int) -> None: ...
    def set_max_memory(self, ref: int | str, kib: int) -> None: ...
    def set_configured_max_memory(self, ref: int | str, kib: int) -> None: ...
    def set_vcpus(self, ref: int | str, count: int) -> None: ...


class XendServer:
    """xend's HTTP interface for a :class:`~aiovirt.sim.node.SimNode`.

    ``error_style`` is the xend version whose conventions to follow; ``serving`` how connections
    are served (``"serial"``: one at a time per listener, as 3.0.0-3.0.3; ``"threaded"``: each
    on its own, as 3.0.4+); None takes the version's own.
    """

    def __init__(self, node: XendModel, unix_path: str | os.PathLike[str] | None, *,
                 host: str = "127.0.0.1", port: int | None = 0,
                 error_style: str = "3.0.3", serving: str | None = None) -> None:
        if error_style not in ERROR_STYLES:
            raise ValueError(f"error_style must be one of {ERROR_STYLES}, not {error_style!r}")
        if serving is not None and serving not in SERVINGS:
            raise ValueError(f"serving must be one of {SERVINGS}, not {serving!r}")
        self.node = node
        self.unix_path = os.fspath(unix_path) if unix_path is not None else None
        self.host = host
        self.port = port or 0
        self._want_tcp = port is not None
        self.error_style = error_style
        self.serving = serving or serving_of(error_style)
        self._listeners: list[HttpListener] = []
        self._domain_ops: dict[str, _Op] = {
            "pause": _Op(self._op_pause),
            "unpause": _Op(self._op_unpause),
            "shutdown": _Op(self._op_shutdown, 202, "Accepted", location="up"),
            "destroy": _Op(self._op_destroy, 202, "Accepted", location="up"),
            "save": _Op(self._op_save, 202, "Accepted", thread=True, location="up"),
            "migrate": _Op(self._op_migrate, thread=True),
            "rename": _Op(self._op_rename, 202, "Accepted", location="up"),
            "sysrq": _Op(self._op_sysrq, 202, "Accepted", location="up"),
            "wait_for_devices": _Op(self._op_wait_for_devices, 202, "Accepted", location="up"),
            "maxmem_set": _Op(self._op_maxmem_set),
            "mem_target_set": _Op(self._op_mem_target_set),
            "set_vcpus": _Op(self._op_set_vcpus),
            "vcpuinfo": _Op(self._op_vcpuinfo),
            "pincpu": _Op(self._op_pincpu),
            "devices": _Op(self._op_devices),
            "domain_sched_credit_get": _Op(self._op_credit_get),
            "domain_sched_credit_set": _Op(self._op_credit_set),
        }
        self._domain_dir_ops: dict[str, _Op] = {
            "create": _Op(self._op_create, 201, "created", location="name"),
            "list": _Op(self._op_list),
            "restore": _Op(self._op_restore, 201, "Created", thread=True, location="name"),
        }
        self._node_ops: dict[str, _Op] = {
            "shutdown": _Op(self._op_zero),
            "reboot": _Op(self._op_zero),
        }
        self._dmesg_ops: dict[str, _Op] = {"clear": _Op(self._op_none)}

    # -- server lifecycle --------------------------------------------------------------------
    async def __aenter__(self) -> XendServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        """Return how many connections the listeners have accepted so far."""
        return sum(listener.connections for listener in self._listeners)

    async def start(self) -> None:
        """Start listening on the unix socket and on TCP ``host:port`` (0: a free port)."""
        try:
            if self.unix_path is not None:
                unix = HttpListener(self._handle, serving=self.serving, unix_path=self.unix_path)
                self._listeners.append(unix)
                await unix.start()
            if self._want_tcp:
                tcp = HttpListener(self._handle, serving=self.serving, host=self.host,
                                   port=self.port)
                self._listeners.append(tcp)
                await tcp.start()
                self.port = tcp.port
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening and end every connection (stalled requests are released first)."""
        self.node.faults.xend.release_stalls()
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            await listener.close()

    # -- HTTP plumbing -----------------------------------------------------------------------
    def _args(self, request: HttpRequest) -> dict[str, list[str]]:
        args: dict[str, list[str]] = _parse_qs(request.query_string, keep_blank=False)
        if request.method != "POST" or request.body is None:
            return args
        # cgi.parse_header: the media type is compared as sent (not lower-cased)
        ctype = (request.header("Content-Type") or "").partition(";")[0]
        ctype = ctype.strip()
        body: dict[str, list[str]] = {}
        if ctype == "application/x-www-form-urlencoded":
            body = _parse_qs(request.body.decode("utf-8", "surrogateescape"), keep_blank=True)
        elif ctype == "multipart/form-data":
            body = _multipart(request.body, request.header("Content-Type") or "")
        args.update(body)
        return args

    @staticmethod
    def _url(request: HttpRequest) -> str:
        """Return the request's URL as xend's ``prePathURL`` built it (Host name, own port)."""
        host = (request.header("Host") or "localhost").split(":")[0]
        port = request.local_port
        netloc = host if port == 80 else f"{host}:{port}"
        path = request.path.rstrip("/")
        return f"http://{netloc}{path}"

    async def _handle(self, request: HttpRequest) -> HttpReply:
        node = self.node
        node.counters["xend.requests"] += 1
        method = request.method
        if method not in ("GET", "HEAD", "POST"):
            node.counters[f"xend.method.{method}"] += 1
            return self._respond(request, _Reply(
                501, "Not implemented", text=f"Request method not supported ({method})",
                content_type="text/plain"), extra={"Accept": "GET,HEAD,POST"})
        segments = [unquote(s) for s in request.path.split("/") if s]
        args = self._args(request)
        ops = args.get("op")
        op_name = self._op_name(method, segments, ops)
        node.counters[f"xend.{op_name}"] += 1

        faults = node.faults.xend
        if faults.drops(request.answered):
            return self._drop()
        delay = faults.delay_for(op_name)
        if delay > 0:
            await asyncio.sleep(delay)
        if faults.stalls(op_name):
            await faults.wait_stall()
            return self._drop()
        if faults.fails(op_name):
            reply = _Reply(500, f"Request failed: {op_name}", ["xend.err", faults.fail_message],
                           content_type=SXP)
        else:
            try:
                reply = await self._route(request, segments, args)
            except Exception:
                # xend answered an unexpected failure this way and closed the connection
                log.exception("simulated xend failed on %s %s", method, request.raw_path)
                return HttpReply(500, "Internal server error", close=True)
        if reply.drop:
            return self._drop()
        return self._respond(request, reply)

    @staticmethod
    def _op_name(method: str, segments: list[str], ops: list[str] | None) -> str:
        if method == "POST" or (ops and ops[0] == "vcpuinfo"):
            if ops and len(ops) == 1:
                return ops[0]
        if len(segments) < 2 or segments[0] != "xend":
            return "ls"
        if segments[1] == "domain":
            return "list" if len(segments) == 2 else "domain"
        return segments[1]

    def _drop(self) -> HttpReply:
        self.node.counters["xend.dropped"] += 1
        return HttpReply(0, "", drop=True)

    def _respond(self, request: HttpRequest, reply: _Reply,
                 extra: dict[str, str] | None = None) -> HttpReply:
        headers: dict[str, str] = {}
        body = b""
        if reply.text is not None:
            body = reply.text.encode("utf-8", "surrogateescape")
            headers["Content-type"] = reply.content_type or "text/plain"
        elif reply.value is not None:
            if wants_sxp(request.header("User-Agent"), request.header("Accept")):
                body = dumps(reply.value).encode("utf-8", "surrogateescape")
                headers["Content-type"] = SXP
            else:
                body = self._html(request, reply.value).encode("utf-8", "surrogateescape")
                headers["Content-type"] = "text/html"
        elif reply.content_type is not None:
            headers["Content-type"] = reply.content_type
        if reply.location is not None:
            headers["Location"] = reply.location
        if extra:
            headers.update(extra)
        return HttpReply(reply.status, reply.reason, headers, body)

    def _html(self, request: HttpRequest, value: SExpr) -> str:
        path = request.path
        title = html.escape(path)
        items = ""
        if isinstance(value, list) and value and value[0] == "ls":
            base = path.rstrip("/")
            items = "<ul>" + "".join(
                f'<li><a href="{html.escape(base)}/{html.escape(str(v))}">'
                f"{html.escape(str(v))}</a></li>" for v in value[1:] if v) + "</ul>"
        elif (isinstance(value, list) and path.rstrip("/") == "/xend/domain"
              and all(isinstance(v, str) for v in value)):
            items = "<ul>" + "".join(
                f'<li><a href="/xend/domain/{html.escape(str(v))}">{html.escape(str(v))}</a></li>'
                for v in value) + "</ul>"
        return (f"<html><head><title>Xend {title}</title></head><body><h1>Xend {title}</h1>"
                f"{items}<pre>{html.escape(dumps(value))}</pre></body></html>")

    # -- routing -----------------------------------------------------------------------------
    async def _route(self, request: HttpRequest, segs: list[str],
                     args: dict[str, list[str]]) -> _Reply:
        get = request.method in ("GET", "HEAD")
        if not segs:
            return _Reply(value=["ls", ""]) if get else await self._perform(request, {}, None,
                                                                                args)
        if segs[0] != "xend":
            return self._not_found(segs[0])
        if len(segs) == 1:
            if get:
                return _Reply(value=["ls", "", "node", "domain", "vnet"])
            return await self._perform(request, {}, None, args)
        child, rest = segs[1], segs[2:]
        if child == "node":
            return await self._route_node(request, rest, args, get)
        if child == "vnet":
            if rest:
                return _Reply(404, "Not found", text=f"No such vnet {rest[0]}")
            return _Reply(value=[]) if get else await self._perform(request, {}, None, args)
        if child == "domain":
            if not rest:
                if get:
                    return _Reply(value=self._domain_list(args))
                return await self._perform(request, self._domain_dir_ops, None, args)
            dom = self.node.find(rest[0])
            if dom is None:
                return self._no_such_domain(rest[0])
            if len(rest) > 1:
                return self._not_found(rest[1])
            ops = args.get("op")
            if get and not (ops and ops[0] == "vcpuinfo"):
                return _Reply(value=domain_sxpr(dom, time.monotonic(), time.time()))
            return await self._perform(request, self._domain_ops, dom, args)
        return self._not_found(child)

    async def _route_node(self, request: HttpRequest, rest: list[str],
                          args: dict[str, list[str]], get: bool) -> _Reply:
        if not rest:
            if get:
                return _Reply(value=self._node_sxpr())
            return await self._perform(request, self._node_ops, None, args)
        if len(rest) == 1 and rest[0] == "dmesg":
            if get:
                return _Reply(text=_DMESG, content_type="text/plain")
            return await self._perform(request, self._dmesg_ops, None, args)
        if len(rest) == 1 and rest[0] == "log":
            if get:
                return _Reply(text="", content_type="text/plain")
            return await self._perform(request, {}, None, args)
        return self._not_found(rest[0])

    @staticmethod
    def _not_found(segment: str) -> _Reply:
        return _Reply(404, "Not found", text=f"Not found: {segment}")

    def _node_sxpr(self) -> SExpr:
        """Return the node's sxpr with this version's ``xend_config_format`` (if any)."""
        fmt = _CONFIG_FORMAT[self.error_style]
        out: list[SExpr] = []
        for item in self.node.node_sxpr():
            if isinstance(item, list) and item and item[0] == "xend_config_format":
                if fmt is None:
                    continue
                item = ["xend_config_format", fmt]
            out.append(item)
        return out

    def _no_such_domain(self, ref: str) -> _Reply:
        if self.error_style == "3.0.4":
            text = f"No domain named '{ref}'."
        elif self.error_style == "3.4":
            text = f"<Fault 3: {ref!r}>"
        else:
            text = f"No such domain {ref}"
        return _Reply(404, "Not found", text=text)

    def _domain_list(self, args: dict[str, list[str]]) -> SExpr:
        node = self.node
        if args.get("detail") == ["1"]:
            now, wall = time.monotonic(), time.time()
            return [domain_sxpr(d, now, wall) for d in node.domains]
        names = sorted((d.name for d in node.domains), key=lambda n: n.encode())
        return list[SExpr](names)

    async def _perform(self, request: HttpRequest, ops: dict[str, _Op],
                       dom: SimDomain | None, args: dict[str, list[str]]) -> _Reply:
        values = args.get("op")
        if values is None or len(values) != 1:
            return _Reply(406, "Invalid request", content_type=SXP)
        name = values[0]
        op = ops.get(name)
        if op is None:
            text = f"Operation not implemented: {name}"
            return _Reply(501, text, text=text, content_type=SXP)
        if op.thread:
            request.handoff()  # xend ran it in a thread: the accept loop goes on meanwhile
        try:
            value = await op.run(dom, args)
        except NoSuchDomain as exc:
            return self._error(name, op, str(exc))
        except SimError as exc:
            return self._error(name, op, str(exc))
        reply = _Reply(op.status, op.reason, value)
        if op.location == "up":
            reply.location = self._url(request) + "/.."
        elif op.location == "name" and isinstance(value, list):
            reply.location = f"{self._url(request)}/{_name_of(value)}"
            if op.status == 201 and op.reason == "Created":  # restore: empty body
                reply.value = None
        return reply

    def _error(self, name: str, op: _Op, message: str) -> _Reply:
        body: SExpr = ["xend.err", message]
        if op.thread:
            status, reason = (202, "Accepted") if op.status == 202 else (200, "OK")
            return _Reply(status, reason, body, content_type=SXP)
        if self.error_style == "3.0.2":
            status, reason = (202, "Accepted") if op.status == 202 else (200, "OK")
            return _Reply(status, reason, body, content_type=SXP)
        return _Reply(500, f"Request failed: {name}", body, content_type=SXP)

    # -- ops -------------------------------------------------------------------------------
    @staticmethod
    def _dom(dom: SimDomain | None) -> SimDomain:
        assert dom is not None
        return dom

    async def _op_pause(self, dom: SimDomain | None, args: dict[str, list[str]]) -> SExpr | None:
        self.node.pause(self._dom(dom).domid)
        return None

    async def _op_unpause(self, dom: SimDomain | None,
                          args: dict[str, list[str]]) -> SExpr | None:
        self.node.unpause(self._dom(dom).domid)
        return None

    async def _op_shutdown(self, dom: SimDomain | None,
                           args: dict[str, list[str]]) -> SExpr | None:
        reasons = args.get("reason")
        if not reasons:
            raise SimError("'reason'")  # xend 3.0.3 let the KeyError through
        self.node.request_shutdown(self._dom(dom).domid, reasons[0])
        return None

    async def _op_destroy(self, dom: SimDomain | None,
                          args: dict[str, list[str]]) -> SExpr | None:
        self.node.destroy(self._dom(dom).domid)
        return None

    async def _op_save(self, dom: SimDomain | None, args: dict[str, list[str]]) -> SExpr | None:
        path = _arg(args, "file")
        await self.node.save(self._dom(dom).domid, path)
        return None

    async def _op_migrate(self, dom: SimDomain | None,
                          args: dict[str, list[str]]) -> SExpr | None:
        destination = _arg(args, "destination")
        for name in ("live", "resource", "port"):
            _int_arg(args, name)
        raise SimError(f"can't connect: {destination}: Connection refused")

    async def _op_rename(self, dom: SimDomain | None,
                         args: dict[str, list[str]]) -> SExpr | None:
        self.node.rename(self._dom(dom).domid, _arg(args, "name"))
        return None

    async def _op_sysrq(self, dom: SimDomain | None, args: dict[str, list[str]]) -> SExpr | None:
        self.node.sysrq(self._dom(dom).domid, _int_arg(args, "key"))
        return None

    async def _op_wait_for_devices(self, dom: SimDomain | None,
                                   args: dict[str, list[str]]) -> SExpr | None:
        self._dom(dom)
        return None

    async def _op_maxmem_set(self, dom: SimDomain | None,
                             args: dict[str, list[str]]) -> SExpr | None:
        d = self._dom(dom)
        mib = _int_arg(args, "memory")
        if self.error_style in ("3.0.2", "3.0.3"):
            # xc.domain_setmaxmem(domid, mib * 1024) and nothing else: the sxpr's maxmem (the
            # configured one) stays as it was
            kib = mib * 1024
            if not -(1 << 31) <= kib < 1 << 31:  # PyArg_ParseTuple "i"
                raise SimError("signed integer is greater than maximum" if kib > 0
                               else "signed integer is less than minimum")
            self._hypervisor_max(d, kib % (1 << 32))  # a C unsigned int from here on
            return "0"
        # 3.0.4+: setMemoryMaximum updates the configuration, then the hypervisor (3.4 puts
        # the configuration back when the hypervisor refuses)
        if self.error_style == "3.0.4" and mib <= 0:
            raise SimError("Invalid memory size")
        if self.error_style == "3.4":
            if mib * 1024 < d.memory_kib:
                raise SimError("memory_dynamic_max must be less than or equal to "
                               "memory_static_max")
            if mib <= 0:
                raise SimError("memory_static_max must be greater than zero")
        old = d.maxmem_kib
        self.node.set_configured_max_memory(d.domid, mib * 1024)
        try:
            self._hypervisor_max(d, mib * 1024)
        except SimError:
            if self.error_style == "3.4":
                self.node.set_configured_max_memory(d.domid, old)
            raise
        return "0"

    def _hypervisor_max(self, dom: SimDomain, kib: int) -> None:
        """Call the hypervisor's max_mem as xend's xc binding did; its errno as xc.error."""
        try:
            self.node.set_max_memory(dom.domid, kib)
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise SimError(f"({code}, {os.strerror(code)!r})") from exc

    async def _op_mem_target_set(self, dom: SimDomain | None,
                                 args: dict[str, list[str]]) -> SExpr | None:
        self.node.set_memory_target(self._dom(dom).domid, _int_arg(args, "target") * 1024)
        return None

    async def _op_set_vcpus(self, dom: SimDomain | None,
                            args: dict[str, list[str]]) -> SExpr | None:
        self.node.set_vcpus(self._dom(dom).domid, _int_arg(args, "vcpus"))
        return None

    async def _op_vcpuinfo(self, dom: SimDomain | None,
                           args: dict[str, list[str]]) -> SExpr | None:
        return self.node.vcpu_sxpr(self._dom(dom).domid)

    async def _op_pincpu(self, dom: SimDomain | None, args: dict[str, list[str]]) -> SExpr | None:
        _arg(args, "vcpu")
        _arg(args, "cpumap")
        self._dom(dom)
        return "0"

    async def _op_devices(self, dom: SimDomain | None,
                          args: dict[str, list[str]]) -> SExpr | None:
        d = self._dom(dom)
        cls = _arg(args, "type")
        db = self.node.db
        base = f"{d.home}/device/{cls}"
        out: list[SExpr] = []
        if db.exists(base):
            for devid in db.directory(base):
                entries: list[SExpr] = []
                for key in db.directory(f"{base}/{devid}"):
                    value = db.read(f"{base}/{devid}/{key}")
                    entries.append([key, value.decode("utf-8", "surrogateescape")])
                out.append([devid, entries])
        return out

    async def _op_credit_get(self, dom: SimDomain | None,
                             args: dict[str, list[str]]) -> SExpr | None:
        self._dom(dom)
        return "{'cap': 0, 'weight': 256}"

    async def _op_credit_set(self, dom: SimDomain | None,
                             args: dict[str, list[str]]) -> SExpr | None:
        weight = _int_arg(args, "weight")
        if not 1 <= weight <= 65535:
            raise SimError(f"Invalid weight: {weight}")
        self._dom(dom)
        return "0"

    async def _op_create(self, dom: SimDomain | None,
                         args: dict[str, list[str]]) -> SExpr | None:
        config = args.get("config")
        if not config:
            raise SimError("Invalid configuration: no config given")
        new = self.node.create(config[0])
        return domain_sxpr(new, time.monotonic(), time.time(), merged=False)

    async def _op_list(self, dom: SimDomain | None, args: dict[str, list[str]]) -> SExpr | None:
        return self._domain_list({"detail": ["1"]})

    async def _op_restore(self, dom: SimDomain | None,
                          args: dict[str, list[str]]) -> SExpr | None:
        new = await self.node.restore(_arg(args, "file"))
        return domain_sxpr(new, time.monotonic(), time.time())

    async def _op_zero(self, dom: SimDomain | None, args: dict[str, list[str]]) -> SExpr | None:
        return "0"

    async def _op_none(self, dom: SimDomain | None, args: dict[str, list[str]]) -> SExpr | None:
        return None


def _parse_qs(text: str, *, keep_blank: bool) -> dict[str, list[str]]:
    """Parse a query or form body as Python 2's ``cgi.parse_qs``: ``&`` and ``;`` both split."""
    return parse_qs(text.replace(";", "&"), keep_blank_values=keep_blank)


def _multipart(body: bytes, content_type: str) -> dict[str, list[str]]:
    """Return the fields of a ``multipart/form-data`` body (what cgi.parse_multipart gave)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
    fields: dict[str, list[str]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields.setdefault(name, []).append(data.decode("utf-8", "surrogateescape"))
    return fields


def _name_of(sxpr: list[SExpr]) -> str:
    for item in sxpr[1:]:
        if isinstance(item, list) and len(item) > 1 and item[0] == "name":
            return str(item[1])
    return ""


_DMESG = (
    " __  __            _____  ___   _____\n"
    " \\ \\/ /___ _ __   |___ / / _ \\ |___ /\n"
    "(XEN) Xen version 3.0.3-0 (simulated) (gcc version 4.1.1)\n"
    "(XEN) Command line: dom0_mem=2048M\n"
    "(XEN) Scheduling domain 0.\n"
)
