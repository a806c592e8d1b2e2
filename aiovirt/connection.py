"""Connections to a Xen node and the domains on it: the public face of aiovirt.

``conn = await aiovirt.open(uri)`` (or ``async with aiovirt.open(uri) as conn``) opens up to
three backends, each optional: xend (HTTP), xenstore and the hypervisor. The connection owns
them and their background work, guards every call (closed, read-only, a domain that has gone,
Domain-0) and reports errors; which backend answers each call is decided by its router
(:mod:`aiovirt.routing`, whose :mod:`table <aiovirt.routing.table>` lists the routes).

:class:`Domain` lives here with :class:`Connection` because each refers to the other: a
connection returns domains, a domain names its connection.

A read-only connection never opens the hypervisor or the read-write xenstore socket, and every
state-changing call raises ``OPERATION_DENIED`` before any I/O. Domain-0 refuses the lifecycle
actions with ``OPERATION_INVALID``, whichever backend would have carried them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from aiovirt.backends.hypervisor import Hypervisor
from aiovirt.backends.xend import XendClient
from aiovirt.backends.xenstore import XenStoreClient, connect, default_socket_path
from aiovirt.errors import ErrorDomain, ErrorHandler, ErrorNumber, VirtError, report, reporting
from aiovirt.events import DEFAULT_QUEUE_SIZE, EventStream, check_interval
from aiovirt.events.source import EventSource
from aiovirt.events.table import DEFAULT_CHANGES_QUEUE, DomainTable
from aiovirt.info import DomainInfo, NodeInfo
from aiovirt.protocol.devstats import BlockStats, DeviceStats, InterfaceStats
from aiovirt.protocol.states import DomainState
from aiovirt.protocol.xen import MAX_MEMORY_KIB
from aiovirt.routing.devstats import DeviceStatsRoutes
from aiovirt.routing.hypervisor import HypervisorRoutes
from aiovirt.routing.identity import Identity, gone
from aiovirt.routing.router import Router
from aiovirt.routing.scan import node_reader
from aiovirt.routing.table import BACKENDS, DEVSTATS, HYPERVISOR, XEND, XENSTORE
from aiovirt.routing.xend import XendRoutes
from aiovirt.routing.xenstore import XenStoreRoutes
from aiovirt.uri import ConnectionURI, parse_uri

if TYPE_CHECKING:  # lxml is imported by the calls that speak XML only
    from aiovirt.protocol.domxml import DomainConfig

__all__ = ["Connection", "Domain", "DomainInfo", "NodeInfo", "OpeningConnection", "open",
           "open_read_only"]

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")
_MIN_MAX_MEMORY_KIB = 4096
_XEND = XEND
_XENSTORE = XENSTORE
_HYPERVISOR = HYPERVISOR


async def _gather_closing(
    openers: dict[str, Awaitable[Any]],
) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """Run ``openers`` concurrently; return (opened, failed). On cancellation, close what opened."""
    tasks = {name: asyncio.ensure_future(aw) for name, aw in openers.items()}
    try:
        if tasks:
            await asyncio.wait(tasks.values())
    except BaseException:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for task in tasks.values():
            if not task.cancelled() and task.exception() is None:
                with contextlib.suppress(Exception):
                    await task.result().close()
        raise
    opened: dict[str, Any] = {}
    failed: dict[str, BaseException] = {}
    for name, task in tasks.items():
        exc = task.exception()
        if exc is None:
            opened[name] = task.result()
        else:
            failed[name] = exc
    return opened, failed


class Connection:
    """An open connection to one Xen node; its router picks the backend of each call.

    Obtain it from :func:`open` / :func:`open_read_only`. Every public coroutine raises
    :class:`VirtError`; the error is also stored as :attr:`last_error` and handed to the
    connection's handler (:meth:`set_error_handler`), else the global one.
    """

    def __init__(self, spec: ConnectionURI, *, read_only: bool) -> None:
        self._spec = spec
        self.uri = spec.uri
        self._read_only = read_only
        self._xend: XendClient | None = None
        self._xs: XenStoreClient | None = None
        self._xs_path: str | None = None
        self._hv: Hypervisor | None = None
        self._why_not: dict[str, str] = {}
        self._router: Router[Domain] = self._make_router({})
        self._closed = False
        self._close_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()
        self._last_error: VirtError | None = None
        self._error_handler: tuple[ErrorHandler, Any] | None = None
        self.sim_node: Any = None
        self._events: EventSource[Domain] | None = None  # created by the first events() consumer

    def __repr__(self) -> str:
        mode = " read-only" if self._read_only else ""
        state = " closed" if self._closed else ""
        return f"<Connection {self.uri!r}{mode}{state} backends={sorted(self.backends)}>"

    def _error_sink(self) -> Connection:
        return self

    # -- opening and closing -----------------------------------------------------------------

    async def _start(self) -> None:
        spec = self._spec
        if spec.is_sim:
            spec = await self._start_sim(spec)
            self._spec = spec
        openers: dict[str, Awaitable[Any]] = {}
        if spec.xend is not None:
            openers[_XEND] = XendClient.open(spec.xend, limit=spec.xend_connections,
                                             timeout=spec.timeout)
        else:
            self._why_not[_XEND] = "turned off by the URI"
        if spec.xenstore is not None:
            openers[_XENSTORE] = self._open_xenstore(spec.xenstore)
        else:
            self._why_not[_XENSTORE] = "turned off by the URI"
        if spec.hypervisor is None:
            self._why_not[_HYPERVISOR] = "turned off by the URI"
        elif self._read_only:
            self._why_not[_HYPERVISOR] = "not used by read-only connections"
        else:
            openers[_HYPERVISOR] = self._open_hypervisor(spec.hypervisor)
        opened, failed = await _gather_closing(openers)
        self._xend = opened.get(_XEND)
        self._xs = opened.get(_XENSTORE)
        self._hv = opened.get(_HYPERVISOR)
        for name, exc in failed.items():
            self._why_not[name] = str(exc)
            level = logging.DEBUG if name == _HYPERVISOR and spec.hypervisor == "auto" else (
                logging.INFO)
            log.log(level, "%s: %s backend unavailable: %s", self.uri, name, exc)
        if self._xend is None and self._xs is None:
            reasons = "; ".join(
                f"{self._endpoint_name(n)}: {self._why_not[n]}" for n in (_XEND, _XENSTORE))
            cause = failed.get(_XEND) or failed.get(_XENSTORE)
            err = VirtError(ErrorNumber.NO_CONNECT, ErrorDomain.NONE,
                            f"the node of {self.uri!r} (neither the Xen daemon nor the Xen "
                            f"store answers: {reasons})")
            raise err from cause
        store = XenStoreRoutes(self._xs, self.uri) if self._xs is not None else None
        views: dict[str, HypervisorRoutes | XendRoutes | XenStoreRoutes | DeviceStatsRoutes] = {}
        if spec.stats_root is not None:
            from aiovirt.backends.devstats import DeviceStatsReader

            views[DEVSTATS] = DeviceStatsRoutes(DeviceStatsReader(spec.stats_root))
        else:
            self._why_not[DEVSTATS] = ("not read for this URI (a remote node, or "
                                       "stats_root=none)")
        if self._xend is not None:
            views[_XEND] = XendRoutes(self._xend, self.uri)
        if store is not None:
            views[_XENSTORE] = store
        if self._hv is not None:
            views[_HYPERVISOR] = HypervisorRoutes(self._hv, self.uri, store)
        self._router = self._make_router(views)

    def _make_router(
        self,
        views: dict[str, HypervisorRoutes | XendRoutes | XenStoreRoutes | DeviceStatsRoutes],
    ) -> Router[Domain]:
        return Router(self.uri, views,
                      endpoints={name: self._endpoint_name(name)
                                 for name in (*BACKENDS, DEVSTATS)},
                      why_not=self._why_not, new=functools.partial(Domain, self))

    async def _start_sim(self, spec: ConnectionURI) -> ConnectionURI:
        from aiovirt.sim.node import SimNode

        directory = tempfile.mkdtemp(prefix="avsim")
        self._stack.callback(shutil.rmtree, directory, True)
        node = SimNode(directory, domains=spec.sim_domains, seed=spec.sim_seed)
        try:
            await self._stack.enter_async_context(node)
        except VirtError:
            raise
        except Exception as exc:
            raise VirtError(ErrorNumber.NO_CONNECT, ErrorDomain.NONE,
                            f"a simulated node for {spec.uri!r} could not start: {exc}") from exc
        self.sim_node = node
        inner = parse_uri(node.uri)
        return replace(inner, uri=spec.uri, xend_connections=spec.xend_connections,
                       timeout=spec.timeout)

    async def _open_xenstore(self, path: str) -> XenStoreClient:
        if path:
            resolved = path + "_ro" if self._read_only else path
        else:
            resolved = default_socket_path(self._read_only)
        self._xs_path = resolved
        timeout = min(self._spec.timeout, 10.0)
        # reconnect: after xenstored restarts, the connection (and its event source's lookups)
        # works again instead of failing for good
        return await connect(resolved, read_only=self._read_only, timeout=timeout,
                             reconnect=True)

    async def _open_hypervisor(self, spec: str) -> Hypervisor:
        return await Hypervisor.open(spec)

    def _endpoint_name(self, backend: str) -> str:
        spec = self._spec
        if backend == _XEND:
            return f"Xen daemon at {spec.xend}" if spec.xend else "Xen daemon"
        if backend == _XENSTORE:
            return f"Xen store at {self._xs_path}" if self._xs_path else "Xen store"
        if backend == DEVSTATS:
            root = spec.stats_root
            return f"the dom0's statistics files under {root}" if root else (
                "the dom0's statistics files")
        return f"hypervisor {spec.hypervisor}" if spec.hypervisor else "hypervisor"

    async def close(self) -> None:
        """Close every backend (and stop an in-process simulated node); harmless twice."""
        async with self._close_lock:
            if self._closed:
                return
            self._closed = True
            xend, xs, hv = self._xend, self._xs, self._hv
            self._xend = self._xs = self._hv = None
            try:
                if self._events is not None:  # end open event streams now, not at a poll
                    await self._events.close()
                await self._router.close()
                closers = [b.close() for b in (hv, xs, xend) if b is not None]
                results = await asyncio.gather(*closers, return_exceptions=True)
                for result in results:
                    if isinstance(result, Exception):
                        log.warning("%s: error while closing a backend: %s", self.uri, result)
            finally:
                await self._stack.aclose()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- state ---------------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        """Whether this connection refuses every state-changing call."""
        return self._read_only

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    @property
    def backends(self) -> frozenset[str]:
        """The backends this connection uses: a subset of xend, xenstore, hypervisor."""
        names = []
        if self._xend is not None:
            names.append(_XEND)
        if self._xs is not None:
            names.append(_XENSTORE)
        if self._hv is not None:
            names.append(_HYPERVISOR)
        return frozenset(names)

    @property
    def xend(self) -> XendClient | None:
        """The xend backend, or None when xend is off or did not answer at open."""
        return self._xend

    @property
    def xenstore(self) -> XenStoreClient | None:
        """The xenstore backend (read-only socket on read-only connections), or None."""
        return self._xs

    @property
    def xenstore_path(self) -> str | None:
        """The xenstore socket this connection uses, or None without xenstore."""
        return self._xs_path if self._xs is not None else None

    @property
    def hypervisor(self) -> Hypervisor | None:
        """The hypervisor backend, or None (always None on read-only connections)."""
        return self._hv

    @property
    def unavailable(self) -> dict[str, str]:
        """Why each backend that is not in use is missing (backend name -> reason)."""
        return {k: v for k, v in self._why_not.items() if k not in self.backends}

    # -- errors ----------------------------------------------------------------------------

    @property
    def last_error(self) -> VirtError | None:
        """The last error raised on this connection, or None."""
        return self._last_error

    def reset_last_error(self) -> None:
        """Forget this connection's last error."""
        self._last_error = None

    def set_error_handler(self, func: ErrorHandler | None, ctx: Any = None) -> None:
        """Send this connection's errors to ``func(ctx, err)`` (sync or async); None: global."""
        self._error_handler = None if func is None else (func, ctx)

    # -- guards ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise VirtError(ErrorNumber.INVALID_CONN, ErrorDomain.NONE,
                            f"connection to {self.uri!r} (it is closed)", conn=self)

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self._read_only:
            raise VirtError(ErrorNumber.OPERATION_DENIED, ErrorDomain.NONE,
                            f"{what} (connection to {self.uri!r} is read-only)", conn=self)

    def _check_domain(self, dom: Domain) -> None:
        self._check_open()
        if dom._conn is not self:
            raise VirtError(ErrorNumber.INVALID_DOMAIN, ErrorDomain.DOM,
                            f"{dom!r} (it belongs to another connection)", dom=dom)
        if dom._gone:
            raise gone(dom, self.uri)

    def _check_lifecycle(self, dom: Domain, verb: str) -> None:
        """Refuse ``verb`` on ``dom`` before any I/O: read-only, gone, or Domain-0."""
        self._check_writable(f"{verb} domain {dom.name!r}")
        self._check_domain(dom)
        self._refuse_domain0(dom, verb)

    def _refuse_domain0(self, dom: Domain, what: str) -> None:
        if dom.id == 0:
            raise VirtError(ErrorNumber.OPERATION_INVALID, ErrorDomain.DOM,
                            f"cannot {what} Domain-0, the privileged domain", conn=self,
                            dom=dom)

    def _check_kib(self, dom: Domain, kib: object, minimum: int) -> int:
        """Return ``kib`` if it is a size every route can carry; INVALID_ARG before any I/O."""
        if isinstance(kib, bool) or not isinstance(kib, int) or not (
                minimum <= kib <= MAX_MEMORY_KIB):
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"memory must be an integer from {minimum} to {MAX_MEMORY_KIB} KiB "
                            f"(2 TiB less 1 MiB, the most xend can hand to Xen), not {kib!r}",
                            conn=self, dom=dom)
        return kib

    def _absolute(self, path: str | os.PathLike[str]) -> str:
        try:
            text = os.fsdecode(path)
        except TypeError:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"a file path is a str or path-like, not {type(path).__name__}",
                            conn=self) from None
        if not text:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            "the file path is empty", conn=self)
        return os.path.abspath(text)

    def _uuid_from_string(self, text: str) -> uuidlib.UUID:
        try:
            return uuidlib.UUID(text.strip())
        except ValueError:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"{text!r} is not a UUID", conn=self) from None

    # -- connection-level calls --------------------------------------------------------------

    @reporting
    async def get_type(self) -> str:
        """Return the hypervisor type: ``"Xen"``."""
        self._check_open()
        return "Xen"

    @reporting
    async def get_version(self) -> int:
        """Return the running hypervisor's version (major*1,000,000 + minor*1,000), 0 if unknown."""
        self._check_open()
        return await self._router.version()

    @reporting
    async def node_info(self) -> NodeInfo:
        """Return the node's CPU model, memory (KiB), CPU count, speed (MHz) and topology."""
        self._check_open()
        return await self._router.node_info()

    @reporting
    async def list_domain_ids(self) -> list[int]:
        """Return the ids of the node's running domains, in increasing order."""
        self._check_open()
        return await self._router.list_ids()

    @reporting
    async def num_of_domains(self) -> int:
        """Return how many domains are running (the length of :meth:`list_domain_ids`)."""
        return len(await self.list_domain_ids())

    @reporting
    async def list_domains(self) -> list[Domain]:
        """Return every running domain, in one round trip where the node allows it."""
        self._check_open()
        return await self._router.list_domains()

    @reporting
    async def domain_infos(
        self, domains: Iterable[Domain] | None = None,
    ) -> list[tuple[Domain, DomainInfo]]:
        """Return ``(domain, info)`` for ``domains`` (default: every running domain) at once.

        The bulk form of :meth:`Domain.info` for dashboards: with the hypervisor it costs one
        coalesced hypercall (plus, for domains not seen before, their names from xenstore);
        without it, one detailed xend list. A domain that has gone (or whose id now belongs to
        another domain) is left out rather than failing the whole refresh; ask its ``info()``
        for the error. The answers are as fresh as ``info()``'s. A domain of another
        connection is refused with ``INVALID_DOMAIN``.
        """
        return await self._router.domain_infos(self._wanted(domains))

    def _wanted(self, domains: Iterable[Domain] | None) -> list[Domain] | None:
        """Check the connection and ``domains`` for a bulk call; leave out those known gone."""
        self._check_open()
        if domains is None:
            return None
        wanted = []
        for dom in domains:
            if dom._conn is not self:
                self._check_domain(dom)
            if not dom._gone:
                wanted.append(dom)
        return wanted

    @reporting
    async def device_stats(
        self, domains: Iterable[Domain] | None = None,
    ) -> list[tuple[Domain, DeviceStats]]:
        """Return ``(domain, device statistics)`` for ``domains`` (default: every running one).

        The bulk form of :meth:`Domain.block_stats` and :meth:`Domain.interface_stats`: one
        read of the dom0's statistics files, shared with concurrent callers. Disks are named
        by target (``sda1``), interfaces by backend (``vif1.0``); network counters are the
        guest's view. Pass the domains :meth:`domain_infos` just returned to pair both
        without another hypervisor call; a domain that has gone is left out.
        """
        return await self._router.device_stats(self._wanted(domains))

    @reporting
    async def domain_configs(
        self, domains: Iterable[Domain] | None = None,
    ) -> list[tuple[Domain, DomainConfig]]:
        """Return ``(domain, description)`` for ``domains`` (default: every running one).

        The bulk, parsed form of :meth:`Domain.xml_desc`: one detailed list from xend for
        all of them, each as the :class:`~aiovirt.protocol.domxml.DomainConfig` its XML
        describes (disks with their sources and targets, interfaces with their bridges and
        backend names). A domain that has gone is left out.
        """
        return await self._router.domain_configs(self._wanted(domains))

    @reporting
    async def lookup_by_name(self, name: str) -> Domain:
        """Return the running domain called ``name``; NO_DOMAIN if there is none."""
        self._check_open()
        if not isinstance(name, str) or not name:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"domain name must be a non-empty string, not {name!r}", conn=self)
        return await self._router.lookup_by_name(name)

    @reporting
    async def lookup_by_id(self, domid: int) -> Domain:
        """Return the running domain with id ``domid``; NO_DOMAIN if there is none."""
        self._check_open()
        if isinstance(domid, bool) or not isinstance(domid, int) or domid < 0:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"domain id must be an integer >= 0, not {domid!r}", conn=self)
        return await self._router.lookup_by_id(domid)

    @reporting
    async def lookup_by_uuid(self, uuid: uuidlib.UUID | bytes | str) -> Domain:
        """Return the running domain with this UUID (16 raw bytes, a UUID or its string)."""
        self._check_open()
        if isinstance(uuid, uuidlib.UUID):
            wanted = uuid
        elif isinstance(uuid, bytes | bytearray):
            if len(uuid) != 16:
                raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                                f"a raw UUID has 16 bytes, not {len(uuid)}", conn=self)
            wanted = uuidlib.UUID(bytes=bytes(uuid))
        elif isinstance(uuid, str):
            wanted = self._uuid_from_string(uuid)
        else:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"a UUID must be uuid.UUID, 16 bytes or a string, not "
                            f"{type(uuid).__name__}", conn=self)
        return await self._router.lookup_by_uuid(wanted)

    @reporting
    async def lookup_by_uuid_string(self, uuid: str) -> Domain:
        """Return the running domain whose UUID is written ``uuid`` (hex, dashes optional)."""
        self._check_open()
        if not isinstance(uuid, str):
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"a UUID string is a str, not {type(uuid).__name__}", conn=self)
        return await self._router.lookup_by_uuid(self._uuid_from_string(uuid))

    @reporting
    async def create_linux(self, xml: str, flags: int = 0) -> Domain:
        """Create and start a domain from its XML description; return it.

        The domain is created paused, its devices awaited, then unpaused; if any step after
        the creation fails, the half-made domain is destroyed.
        """
        self._check_writable("create a domain")
        if not isinstance(xml, str):
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"the domain XML must be a str, not {type(xml).__name__}", conn=self)
        return await self.lookup_by_name(await self._router.create(xml))

    @reporting
    async def restore(self, path: str | os.PathLike[str]) -> None:
        """Restore a domain saved by :meth:`Domain.save` from ``path`` (made absolute here)."""
        self._check_writable("restore a domain")
        await self._router.restore(self._absolute(path))

    def events(self, *, interval: float = 1.0,
               queue_size: int = DEFAULT_QUEUE_SIZE) -> EventStream[Domain]:
        """Return a stream of the node's domain lifecycle events (see :mod:`aiovirt.events`).

        ``interval`` (seconds) is how often the domain list is polled for what no watch
        announces; ``queue_size`` bounds this consumer's backlog (then OVERFLOW).
        """
        self._check_open()
        return EventStream(self._event_source(), queue_size, check_interval(interval))

    def domain_table(self, *, interval: float = 1.0,
                     queue_size: int = DEFAULT_CHANGES_QUEUE) -> DomainTable[Domain]:
        """Return the live table of every domain, for ``async with`` (see docs/domain-table.md).

        It is kept current by this connection's event source: watches for what xenstore
        announces, a bulk refresh every ``interval`` seconds for the rest. ``queue_size`` is
        the default bound of each :meth:`~aiovirt.events.table.DomainTable.changes` feed.
        """
        self._check_open()
        if not isinstance(queue_size, int) or queue_size < 1:
            raise VirtError(ErrorNumber.INVALID_ARG,
                            info=f"queue_size must be at least 1, not {queue_size!r}")
        return DomainTable(self._event_source(), interval=check_interval(interval),
                           queue_size=queue_size)

    def _event_source(self) -> EventSource[Domain]:
        """Return this connection's event source (created on first use, closed with it)."""
        if self._events is None:
            self._events = EventSource(self, lambda: node_reader(self))
        return self._events


async def _failed(dom: Domain, err: VirtError) -> None:
    """Attach ``dom`` (and its connection) to ``err`` and report it once, in the calling task."""
    if err.dom is None:
        err.dom = dom
    if err.conn is None:
        err.conn = dom._conn
    await report(err, dom._conn)


def _public(
    method: Callable[Concatenate[Domain, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[Domain, _P], Coroutine[Any, Any, _R]]:
    """Make ``method`` a public seam: a :class:`VirtError` it raises names the domain and is
    reported once (connection slot and handler, the task's last error) before propagating.

    One wrapper doing what :func:`aiovirt.errors.reporting` does for a domain (its error sink is
    its connection), plus attaching the domain before the report, so a call costs one coroutine
    layer, not two.
    """

    @functools.wraps(method)
    async def wrapper(self: Domain, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except VirtError as err:
            await _failed(self, err)
            raise

    return wrapper


class Domain(Identity):
    """One domain of a node, as returned by the connection's lookups.

    A handle: its name, id and UUID are fixed when it is looked up and read without I/O. Each
    method guards the call (closed connection, read-only, gone, Domain-0) and asks the
    connection's router, which alone decides which backend answers. A domain that has gone
    away (destroyed, saved, or replaced by another under the same id) raises ``NO_DOMAIN``
    naming it; it never answers with another domain's data.

    Two handles of the same domain (same connection, UUID and id) compare equal and hash
    alike. Every method is a coroutine and raises :class:`~aiovirt.errors.VirtError`.
    """

    __slots__ = ("__weakref__", "_conn", "_gone")

    def __init__(self, conn: Connection, name: str, domid: int, uuid: uuidlib.UUID) -> None:
        super().__init__(name, domid, uuid)
        self._conn = conn
        self._gone = False

    # -- identity, no I/O ------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The connection this domain was looked up on."""
        return self._conn

    @property
    def uuid_string(self) -> str:
        """The domain's UUID in the canonical 8-4-4-4-12 form."""
        return str(self._uuid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Domain):
            return NotImplemented
        return (self._conn is other._conn and self._uuid == other._uuid
                and self._id == other._id)

    def __hash__(self) -> int:
        return hash((id(self._conn), self._uuid, self._id))

    def __repr__(self) -> str:
        return f"<Domain {self._name!r} id={self._id} uuid={self._uuid}>"

    def _error_sink(self) -> Connection:
        return self._conn

    # -- queries -----------------------------------------------------------------------------

    async def info(self) -> DomainInfo:
        """Return the domain's state, max memory and memory (KiB), vCPUs and CPU time (ns)."""
        # A dashboard's hot path (thousands at once), so one coroutine layer: the router hands
        # out a request that joins a coalesced batch when it can, and checks and converts its
        # answer; otherwise it answers through the info route.
        conn = self._conn
        try:
            if conn._closed or self._gone:
                conn._check_domain(self)
            router = conn._router
            request = router.info_request(self)
            if request is None:
                return await router.info(self)
            return router.info_answer(self, await request)
        except VirtError as err:
            await _failed(self, err)
            raise

    async def state(self) -> DomainState:
        """Return the domain's state (``info().state``)."""
        return (await self.info()).state

    @_public
    async def os_type(self) -> str:
        """Return the guest's OS type: ``"linux"`` (paravirtualised) or ``"hvm"``."""
        self._conn._check_domain(self)
        return await self._conn._router.os_type(self)

    @_public
    async def max_memory(self) -> int:
        """Return the most memory the domain may have, in KiB.

        The hypervisor's value when the connection has the hypervisor; otherwise what xend
        (or ``/vm/<uuid>/maxmem``) says, which before xend 3.0.4 is the configured maximum: a
        :meth:`set_max_memory` through xend 3.0.x changes Xen's limit but not that.
        """
        self._conn._check_domain(self)
        return await self._conn._router.max_memory(self)

    @_public
    async def xml_desc(self, flags: int = 0) -> str:
        """Return the domain's XML description (the format ``create_linux`` accepts)."""
        self._conn._check_domain(self)
        if flags != 0:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"xml_desc flags must be 0, not {flags!r}")
        return await self._conn._router.xml_desc(self)

    @_public
    async def block_stats(self, device: str) -> BlockStats:
        """Return disk ``device``'s (its target, e.g. ``sda1``) requests, bytes and errors.

        Read from the block backend's statistics in the dom0 (bytes = sectors x 512, errors
        = requests that waited for a full ring); INVALID_ARG names an unknown device.
        """
        self._conn._check_domain(self)
        stats: BlockStats = await self._conn._router.block_stats(self, device)
        return stats

    @_public
    async def interface_stats(self, device: str) -> InterfaceStats:
        """Return interface ``device``'s (``vif<domid>.<n>``) counters, as the guest sees them.

        ``rx_*`` is what the guest received, ``tx_*`` what it sent (the vif's own columns in
        ``/proc/net/dev`` are the other way round); INVALID_ARG names an unknown device.
        """
        self._conn._check_domain(self)
        stats: InterfaceStats = await self._conn._router.interface_stats(self, device)
        return stats

    # -- lifecycle ---------------------------------------------------------------------------

    @_public
    async def suspend(self) -> None:
        """Pause the domain (it keeps its memory but gets no CPU time)."""
        self._conn._check_lifecycle(self, "suspend")
        await self._conn._router.suspend(self)

    @_public
    async def resume(self) -> None:
        """Unpause a suspended domain."""
        self._conn._check_lifecycle(self, "resume")
        await self._conn._router.resume(self)

    @_public
    async def shutdown(self) -> None:
        """Ask the guest to shut down (it may take a while, or refuse)."""
        self._conn._check_lifecycle(self, "shut down")
        await self._conn._router.shutdown(self, "poweroff")

    @_public
    async def reboot(self) -> None:
        """Ask the guest to reboot."""
        self._conn._check_lifecycle(self, "reboot")
        await self._conn._router.shutdown(self, "reboot")

    @_public
    async def destroy(self) -> None:
        """Stop the domain at once; this handle stays valid, later calls raise NO_DOMAIN."""
        self._conn._check_lifecycle(self, "destroy")
        await self._conn._router.destroy(self)
        self._gone = True

    @_public
    async def save(self, path: str | os.PathLike[str]) -> None:
        """Save the domain's state to ``path`` (made absolute here); the domain then stops."""
        conn = self._conn
        conn._check_writable(f"save domain {self._name!r}")
        conn._check_domain(self)
        target = conn._absolute(path)
        conn._refuse_domain0(self, "save")
        await conn._router.save(self, target)
        self._gone = True

    @_public
    async def set_max_memory(self, kib: int) -> None:
        """Set the most memory the domain may have, in KiB."""
        conn = self._conn
        conn._check_writable(f"set the maximum memory of domain {self._name!r}")
        conn._check_domain(self)
        await conn._router.set_max_memory(self, conn._check_kib(self, kib, _MIN_MAX_MEMORY_KIB))

    @_public
    async def set_memory(self, kib: int) -> None:
        """Set the domain's current memory (balloon target), in KiB.

        With the hypervisor, more than its maximum is refused (INVALID_ARG naming it) before
        any change; without it, xend (and Xen behind it) decide: xend takes any positive
        target and the guest balloons up to the hypervisor's limit.
        """
        conn = self._conn
        conn._check_writable(f"set the memory of domain {self._name!r}")
        conn._check_domain(self)
        await conn._router.set_memory(self, conn._check_kib(self, kib, 1))


class OpeningConnection:
    """What :func:`open` and :func:`open_read_only` return: a connection being opened.

    It is awaitable and an async context manager, both giving a :class:`Connection`:
    ``conn = await aiovirt.open(uri)`` (close it yourself with ``await conn.close()``), or
    ``async with aiovirt.open(uri) as conn:`` (closed when the block ends). Nothing is opened
    until it is awaited or entered; each await or ``async with`` opens a new connection.
    """

    def __init__(self, uri: str | None, read_only: bool) -> None:
        self._uri = uri
        self._read_only = read_only
        self._conn: Connection | None = None

    def __await__(self) -> Generator[Any, None, Connection]:
        return self._open().__await__()

    async def _open(self) -> Connection:
        try:
            spec = parse_uri(self._uri)
            conn = Connection(spec, read_only=self._read_only)
            try:
                await conn._start()
            except BaseException:
                await asyncio.shield(conn.close())
                raise
            return conn
        except VirtError as err:
            await report(err, None)
            raise

    async def __aenter__(self) -> Connection:
        self._conn = await self._open()
        return self._conn

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._conn is not None:
            await self._conn.close()


def open(uri: str | None = None, *, read_only: bool = False) -> OpeningConnection:
    """Open a connection to the node named by ``uri`` (``await`` it or ``async with`` it).

    ``uri``: ``xen:///`` (the local node; query parameters ``xend=``, ``xenstore=``,
    ``hypervisor=`` override or turn off each backend), ``xen://HOST/`` or ``sim:///``.
    Fails with NO_CONNECT naming the endpoints when neither xend nor xenstore answers.
    """
    return OpeningConnection(uri, read_only)


def open_read_only(uri: str | None = None) -> OpeningConnection:
    """Open a read-only connection: no hypervisor, the read-only xenstore socket, no changes."""
    return OpeningConnection(uri, True)
