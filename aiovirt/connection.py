"""Connections to a Xen node, and the one place that decides which backend answers each call.

``conn = await aiovirt.open(uri)`` (or ``async with aiovirt.open(uri) as conn``) opens up to
three backends, each optional: xend (HTTP), xenstore and the hypervisor. Routing, following
libvirt 0.0.6 where it was right and its later fixes where it was not:

============================  =====================================================
call                          backends, in order of preference
============================  =====================================================
list ids, count, ``info()``   hypervisor (one coalesced hypercall), xend, xenstore
``list_domains()``            xend (one detailed list), hypervisor + xenstore, xenstore
lookup by name                xend, xenstore (scan of ``/local/domain``)
lookup by id                  xenstore (``/local/domain/<id>``), xend
lookup by UUID                hypervisor + xenstore/xend, xend, xenstore (``/vm/<uuid>``)
``os_type()``                 xenstore (``<vm>/image/ostype``), xend
``max_memory()``              hypervisor, xend, xenstore
suspend, resume, destroy,     hypervisor, xend
set_max_memory
shutdown, reboot              xend, xenstore (``control/shutdown``)
set_memory                    xend, xenstore (``memory/target``)
create, save, restore, XML    xend only
node_info, get_version        hypervisor, xend
============================  =====================================================

A read-only connection never opens the hypervisor or the read-write xenstore socket, and every
state-changing call raises ``OPERATION_DENIED`` before any I/O. Domain-0 refuses the lifecycle
actions with ``OPERATION_INVALID``, whichever backend would have carried them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import sys
import tempfile
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from aiovirt.backends.xend import XendClient
from aiovirt.domain import Domain, DomainInfo
from aiovirt.errors import ErrorDomain, ErrorHandler, ErrorNumber, VirtError, report, reporting
from aiovirt.protocol import sexpr
from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord
from aiovirt.protocol.states import DomainState, state_from_flags
from aiovirt.uri import ConnectionURI, parse_uri
from aiovirt.xend_info import (
    XendDomainRecord,
    XendInfoBatches,
    info_from_xend,
    int_field,
    is_enoent,
    parse_uuid,
    read_domain_sxpr,
    record_fields,
)

if TYPE_CHECKING:
    from aiovirt.backends.hypervisor import Hypervisor
    from aiovirt.backends.xenstore import XenStoreClient

__all__ = ["Connection", "NodeInfo", "open", "open_read_only"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_ZERO_UUID = uuidlib.UUID(int=0)
_MIN_MAX_MEMORY_KIB = 4096
_XEND = "xend"
_XENSTORE = "xenstore"
_HYPERVISOR = "hypervisor"


class NodeInfo(NamedTuple):
    """The node's hardware, like libvirt's ``virNodeInfo``: memory in KiB, CPU speed in MHz."""

    model: str
    memory: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int


_new_tuple = tuple.__new__
_ZERO_HANDLE = bytes(16)
# Hypervisor flags -> state, memoised: a node's domains share a handful of flag words, and
# state_from_flags's enum lookups would otherwise cost a microsecond per info(). Bounded, as
# the flags also carry the CPU a domain last ran on.
_FLAG_STATES: dict[int, DomainState] = {}
_FLAG_STATES_MAX = 4096


def _state_of(flags: int) -> DomainState:
    state = _FLAG_STATES.get(flags)
    if state is None:
        state = state_from_flags(flags)
        if len(_FLAG_STATES) < _FLAG_STATES_MAX:
            _FLAG_STATES[flags] = state
    return state


def _info_from_record(rec: DomainInfoRecord) -> DomainInfo:
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (same object, a frame less).
    info: DomainInfo = _new_tuple(DomainInfo, (
        _state_of(rec.flags), rec.max_pages * PAGE_KIB, rec.tot_pages * PAGE_KIB,
        rec.nr_online_vcpus, rec.cpu_time))
    return info


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
    """An open connection to one Xen node (see the module docstring for the routing).

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
        self._xend_info: XendInfoBatches | None = None
        self._why_not: dict[str, str] = {}
        self._closed = False
        self._close_lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()
        self._last_error: VirtError | None = None
        self._error_handler: tuple[ErrorHandler, Any] | None = None
        self.sim_node: Any = None
        self._known_domains: dict[int, Domain] = {}  # domid -> Domain, for domain_infos()

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
        if self._xend is not None:
            self._xend_info = XendInfoBatches(self, self._xend)
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
        from aiovirt.backends.xenstore import connect, default_socket_path

        if path:
            resolved = path + "_ro" if self._read_only else path
        else:
            resolved = default_socket_path(self._read_only)
        self._xs_path = resolved
        timeout = min(self._spec.timeout, 10.0)
        return await connect(resolved, read_only=self._read_only, timeout=timeout)

    async def _open_hypervisor(self, spec: str) -> Hypervisor:
        from aiovirt.backends.hypervisor import Hypervisor

        return await Hypervisor.open(spec)

    def _endpoint_name(self, backend: str) -> str:
        spec = self._spec
        if backend == _XEND:
            return f"Xen daemon at {spec.xend}" if spec.xend else "Xen daemon"
        if backend == _XENSTORE:
            return f"Xen store at {self._xs_path}" if self._xs_path else "Xen store"
        return f"hypervisor {spec.hypervisor}" if spec.hypervisor else "hypervisor"

    async def close(self) -> None:
        """Close every backend (and stop an in-process simulated node); harmless twice."""
        async with self._close_lock:
            if self._closed:
                return
            self._closed = True
            xend, xs, hv = self._xend, self._xs, self._hv
            self._xend = self._xs = self._hv = None
            batches, self._xend_info = self._xend_info, None
            try:
                events = sys.modules.get("aiovirt.events")
                if events is not None:  # end open event streams now, not at their next poll
                    await events.close_event_sources(self)
                if batches is not None:
                    await batches.close()
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

    def _missing(self, what: str, *backends: str) -> VirtError:
        reasons = "; ".join(
            f"{self._endpoint_name(b)}: {self._why_not.get(b, 'not available')}"
            for b in backends)
        return VirtError(ErrorNumber.NO_CONNECT, ErrorDomain.NONE,
                         f"{reasons} (needed for {what})", conn=self)

    def _need_xend(self, what: str) -> XendClient:
        self._check_open()
        if self._xend is None:
            raise self._missing(what, _XEND)
        return self._xend

    def _no_domain(self, what: str, cause: BaseException | None = None) -> VirtError:
        err = VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM,
                        f"no domain with {what} on {self.uri!r}", conn=self)
        err.__cause__ = cause
        return err

    def _gone(self, dom: Domain, cause: BaseException | None = None) -> VirtError:
        err = VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM,
                        f"{dom.name!r} (id {dom.id}, uuid {dom.uuid}) is no longer on "
                        f"{self.uri!r}", conn=self, dom=dom)
        err.__cause__ = cause
        return err

    def _check_domain(self, dom: Domain) -> None:
        self._check_open()
        if dom._conn is not self:
            raise VirtError(ErrorNumber.INVALID_DOMAIN, ErrorDomain.DOM,
                            f"{dom!r} (it belongs to another connection)", dom=dom)
        if dom._gone:
            raise self._gone(dom)

    @contextlib.contextmanager
    def _domain_errors(self, dom: Domain) -> Generator[None, None, None]:
        """Turn a backend's no-such-domain answer into NO_DOMAIN naming ``dom``."""
        try:
            yield
        except VirtError as err:
            if err.code == ErrorNumber.NO_DOMAIN or is_enoent(err):
                raise self._gone(dom, err) from err
            raise

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

    # -- xenstore helpers -------------------------------------------------------------------

    async def _xs_read(self, path: str) -> str | None:
        """Return the text at ``path`` or None if it does not exist."""
        assert self._xs is not None
        try:
            value = await self._xs.read(path)
        except VirtError as err:
            if is_enoent(err):
                return None
            raise
        return value.decode("utf-8", "replace")

    async def _xs_domids(self) -> list[int]:
        assert self._xs is not None
        try:
            entries = await self._xs.directory("/local/domain")
        except VirtError as err:
            if is_enoent(err):
                return []
            raise
        return sorted(int(e) for e in entries if e.isdigit())

    async def _xs_identity(self, domid: int) -> tuple[str, uuidlib.UUID] | None:
        """Return (name, uuid) of ``domid`` from ``/local/domain/<id>``, or None if absent."""
        base = f"/local/domain/{domid}"
        name, vm = await asyncio.gather(self._xs_read(base + "/name"),
                                        self._xs_read(base + "/vm"))
        if name is None:
            return None
        return name, parse_uuid(vm) or _ZERO_UUID

    async def _xs_identities(self, ids: Sequence[int]) -> list[tuple[int, str, uuidlib.UUID]]:
        found = await asyncio.gather(*(self._xs_identity(i) for i in ids))
        return [(i, ident[0], ident[1]) for i, ident in zip(ids, found, strict=True)
                if ident is not None]

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
        if self._hv is not None:
            return await self._hv.version()
        if self._xend is not None:
            f = record_fields(await self._xend.node())
            return (int_field(f.get("xen_major")) * 1_000_000
                    + int_field(f.get("xen_minor")) * 1_000)
        return 0

    @reporting
    async def node_info(self) -> NodeInfo:
        """Return the node's CPU model, memory (KiB), CPU count, speed (MHz) and topology."""
        self._check_open()
        if self._hv is not None:
            phys = await self._hv.physinfo()
            nodes = max(phys.nr_nodes, 1)
            cores = max(phys.cores_per_socket, 1)
            threads = max(phys.threads_per_core, 1)
            sockets = max(phys.nr_cpus // (nodes * cores * threads), 1)
            return NodeInfo(platform.machine() or "unknown", phys.total_pages * PAGE_KIB,
                            phys.nr_cpus, phys.cpu_khz // 1000, nodes, sockets, cores, threads)
        xend = self._need_xend("node information")
        f = record_fields(await xend.node())
        nodes = int_field(f.get("nr_nodes"), 1) or 1
        cores = int_field(f.get("cores_per_socket"), 1) or 1
        threads = int_field(f.get("threads_per_core"), 1) or 1
        cpus = int_field(f.get("nr_cpus"))
        sockets = int_field(f.get("sockets_per_node")) or max(cpus // (nodes * cores * threads), 1)
        return NodeInfo(f.get("machine") or "unknown", int_field(f.get("total_memory")) * 1024,
                        cpus, int_field(f.get("cpu_mhz")), nodes, sockets, cores, threads)

    async def _records(self) -> list[DomainInfoRecord]:
        assert self._hv is not None
        return await self._hv.list_domains()

    @reporting
    async def list_domain_ids(self) -> list[int]:
        """Return the ids of the node's running domains, in increasing order."""
        self._check_open()
        if self._hv is not None:
            return sorted(r.domid for r in await self._records())
        if self._xend is not None:
            recs = [read_domain_sxpr(sx) for sx in await self._xend.list_domains_detail()]
            return sorted(r.domid for r in recs if r.domid is not None)
        return await self._xs_domids()

    @reporting
    async def num_of_domains(self) -> int:
        """Return how many domains are running (the length of :meth:`list_domain_ids`)."""
        return len(await self.list_domain_ids())

    @reporting
    async def list_domains(self) -> list[Domain]:
        """Return every running domain, in one round trip where the node allows it."""
        self._check_open()
        if self._xend is not None:
            recs = [read_domain_sxpr(sx) for sx in await self._xend.list_domains_detail()]
            if self._xend_info is not None:
                self._xend_info.seen(len(recs))
            doms = [Domain(self, r.name, r.domid, r.uuid) for r in recs if r.domid is not None]
            return sorted(doms, key=lambda d: d.id)
        assert self._xs is not None
        if self._hv is not None:
            records = await self._records()
            names = await asyncio.gather(
                *(self._xs_read(f"/local/domain/{r.domid}/name") for r in records))
            return [Domain(self, name, r.domid, uuidlib.UUID(bytes=r.handle))
                    for r, name in zip(records, names, strict=True) if name is not None]
        ids = await self._xs_domids()
        return [Domain(self, name, i, u) for i, name, u in await self._xs_identities(ids)]

    @reporting
    async def domain_infos(
        self, domains: Iterable[Domain] | None = None,
    ) -> list[tuple[Domain, DomainInfo]]:
        """Return ``(domain, info)`` for ``domains`` (default: every running domain) at once.

        The bulk form of :meth:`Domain.info` for dashboards: with the hypervisor it costs one
        coalesced hypercall (plus, for domains not seen before, their names from xenstore);
        without it, one detailed xend list. A domain that has gone (or whose id now belongs to
        another domain) is left out rather than failing the whole refresh; ask its ``info()``
        for the error. The answers are as fresh as ``info()``'s.
        """
        self._check_open()
        if self._hv is not None and (domains is not None or self._xs is not None):
            records: list[DomainInfoRecord] = await self._hv.request_info(None)
            wanted = list(domains) if domains is not None else await self._domains_of(records)
            by_id = {rec.domid: rec for rec in records}
            out: list[tuple[Domain, DomainInfo]] = []
            for dom in wanted:
                rec = by_id.get(dom._id)
                if rec is None or dom._conn is not self or dom._gone:
                    continue
                with contextlib.suppress(VirtError):  # the id now belongs to another domain
                    out.append((dom, self._info_answer(dom, rec)))
            return out
        if domains is None and self._xend is not None:
            recs = [read_domain_sxpr(sx) for sx in await self._xend.list_domains_detail()]
            if self._xend_info is not None:
                self._xend_info.seen(len(recs))
            pairs = [(Domain(self, r.name, r.domid, r.uuid), info_from_xend(r))
                     for r in recs if r.domid is not None]
            return sorted(pairs, key=lambda pair: pair[0].id)
        wanted = list(domains) if domains is not None else await self.list_domains()
        infos = await asyncio.gather(*(dom.info() for dom in wanted), return_exceptions=True)
        pairs = []
        for dom, info in zip(wanted, infos, strict=True):
            if isinstance(info, VirtError) and info.code == ErrorNumber.NO_DOMAIN:
                continue
            if isinstance(info, BaseException):
                raise info
            pairs.append((dom, info))
        return pairs

    async def _domains_of(self, records: Sequence[DomainInfoRecord]) -> list[Domain]:
        """Return the Domain of each hypervisor record, reading names only for new domains."""
        known = self._known_domains
        fresh = [r for r in records
                 if (d := known.get(r.domid)) is None or d._handle != r.handle]
        if fresh:
            names = await asyncio.gather(
                *(self._xs_read(f"/local/domain/{r.domid}/name") for r in fresh))
            for rec, name in zip(fresh, names, strict=True):
                if name is not None:
                    known[rec.domid] = Domain(self, name, rec.domid,
                                              uuidlib.UUID(bytes=rec.handle))
        alive = {r.domid for r in records}
        for domid in [d for d in known if d not in alive]:
            del known[domid]
        return [known[r.domid] for r in records if r.domid in known]

    @reporting
    async def lookup_by_name(self, name: str) -> Domain:
        """Return the running domain called ``name``; NO_DOMAIN if there is none."""
        self._check_open()
        if not isinstance(name, str) or not name:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"domain name must be a non-empty string, not {name!r}", conn=self)
        if self._xend is not None:
            try:
                rec = read_domain_sxpr(await self._xend.domain(name))
            except VirtError as err:
                if err.code == ErrorNumber.NO_DOMAIN:
                    raise self._no_domain(f"name {name!r}", err) from err
                raise
            # xend also resolves a number as a domid: accept only an exact name.
            if rec.name != name or rec.domid is None:
                raise self._no_domain(f"name {name!r}")
            return Domain(self, rec.name, rec.domid, rec.uuid)
        assert self._xs is not None
        ids = await self._xs_domids()
        names = await asyncio.gather(*(self._xs_read(f"/local/domain/{i}/name") for i in ids))
        for domid, found in zip(ids, names, strict=True):
            if found == name:
                ident = await self._xs_identity(domid)
                if ident is not None and ident[0] == name:
                    return Domain(self, name, domid, ident[1])
        raise self._no_domain(f"name {name!r}")

    @reporting
    async def lookup_by_id(self, domid: int) -> Domain:
        """Return the running domain with id ``domid``; NO_DOMAIN if there is none."""
        self._check_open()
        if isinstance(domid, bool) or not isinstance(domid, int) or domid < 0:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"domain id must be an integer >= 0, not {domid!r}", conn=self)
        if self._xs is not None:
            ident = await self._xs_identity(domid)
            if ident is not None and (ident[1] != _ZERO_UUID or domid == 0
                                      or self._xend is None):
                return Domain(self, ident[0], domid, ident[1])
            if ident is None:
                raise self._no_domain(f"id {domid}")
        assert self._xend is not None
        try:
            rec = read_domain_sxpr(await self._xend.domain(domid))
        except VirtError as err:
            if err.code == ErrorNumber.NO_DOMAIN:
                raise self._no_domain(f"id {domid}", err) from err
            raise
        if rec.domid != domid:  # a domain *named* like the number shadows the id
            recs = [read_domain_sxpr(sx) for sx in await self._xend.list_domains_detail()]
            match = next((r for r in recs if r.domid == domid), None)
            if match is None:
                raise self._no_domain(f"id {domid}")
            rec = match
        return Domain(self, rec.name, domid, rec.uuid)

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
        return await self._lookup_uuid(wanted)

    @reporting
    async def lookup_by_uuid_string(self, uuid: str) -> Domain:
        """Return the running domain whose UUID is written ``uuid`` (hex, dashes optional)."""
        self._check_open()
        if not isinstance(uuid, str):
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"a UUID string is a str, not {type(uuid).__name__}", conn=self)
        return await self._lookup_uuid(self._uuid_from_string(uuid))

    def _uuid_from_string(self, text: str) -> uuidlib.UUID:
        try:
            return uuidlib.UUID(text.strip())
        except ValueError:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"{text!r} is not a UUID", conn=self) from None

    async def _lookup_uuid(self, wanted: uuidlib.UUID) -> Domain:
        what = f"uuid {wanted}"
        if self._hv is not None:
            records = await self._records()
            match = next((r for r in records if r.handle == wanted.bytes), None)
            if match is None:
                raise self._no_domain(what)
            if self._xs is not None:
                ident = await self._xs_identity(match.domid)
                if ident is not None:
                    return Domain(self, ident[0], match.domid, wanted)
        if self._xend is not None:
            recs = [read_domain_sxpr(sx) for sx in await self._xend.list_domains_detail()]
            rec = next((r for r in recs if r.uuid == wanted and r.domid is not None), None)
            if rec is None or rec.domid is None:
                raise self._no_domain(what)
            return Domain(self, rec.name, rec.domid, rec.uuid)
        assert self._xs is not None
        vm_path = f"/vm/{wanted}"
        if wanted != _ZERO_UUID and await self._xs_read(vm_path + "/uuid") is None and (
                await self._xs_read(vm_path + "/name") is None):
            raise self._no_domain(what)
        ids = await self._xs_domids()
        vms = await asyncio.gather(*(self._xs_read(f"/local/domain/{i}/vm") for i in ids))
        for domid, vm in zip(ids, vms, strict=True):
            if parse_uuid(vm) == wanted or (wanted == _ZERO_UUID and domid == 0):
                ident = await self._xs_identity(domid)
                if ident is not None:
                    return Domain(self, ident[0], domid, wanted)
        raise self._no_domain(what)

    @reporting
    async def create_linux(self, xml: str, flags: int = 0) -> Domain:
        """Create and start a domain from its XML description; return it.

        The domain is created paused, its devices awaited, then unpaused; if any step after
        the creation fails, the half-made domain is destroyed.
        """
        self._check_writable("create a domain")
        xend = self._need_xend("creating a domain")
        if not isinstance(xml, str):
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"the domain XML must be a str, not {type(xml).__name__}", conn=self)
        from aiovirt.protocol.domxml import xml_to_sexpr

        config = xml_to_sexpr(xml)
        parsed = sexpr.parse(config) if isinstance(config, str) else config
        name = record_fields(parsed).get("name", "")
        if not name:
            raise VirtError(ErrorNumber.NO_NAME, ErrorDomain.XML, xml[:200], conn=self)
        await xend.create(parsed)
        try:
            await xend.wait_for_devices(name)
            await xend.unpause(name)
        except BaseException as exc:
            log.warning("%s: destroying half-created domain %r: %s", self.uri, name, exc)
            await asyncio.shield(self._destroy_quietly(xend, name))
            raise
        return await self.lookup_by_name(name)

    async def _destroy_quietly(self, xend: XendClient, name: str) -> None:
        try:
            await xend.destroy(name)
        except VirtError as err:
            log.warning("%s: could not destroy half-created domain %r: %s", self.uri, name, err)

    @reporting
    async def restore(self, path: str | os.PathLike[str]) -> None:
        """Restore a domain saved by :meth:`Domain.save` from ``path`` (made absolute here)."""
        self._check_writable("restore a domain")
        xend = self._need_xend("restoring a domain")
        await xend.restore(self._absolute(path))

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

    def events(self, *args: Any, **kwargs: Any) -> Any:
        """Return an async iterator of the node's domain lifecycle events (see aiovirt.events)."""
        self._check_open()
        from aiovirt.events import domain_events

        return domain_events(self, *args, **kwargs)

    # -- domain calls (the routing behind aiovirt.domain.Domain) --------------------------

    async def _domain_record(self, dom: Domain) -> DomainInfoRecord:
        assert self._hv is not None
        rec = await self._hv.domain_info(dom.id)
        if rec is None or rec.domid != dom.id:
            raise self._gone(dom)
        if dom.uuid != _ZERO_UUID and rec.handle != dom.uuid.bytes and any(rec.handle):
            raise self._gone(dom)  # the id now belongs to another domain
        return rec

    def _info_request(self, dom: Domain) -> asyncio.Future[Any] | None:
        """Return a future answer to ``dom.info()`` from a coalesced batch, or None.

        ``dom.info()``'s fast path: with the hypervisor, the request joins its forming
        GETDOMAININFOLIST batch (no task, no coroutine of its own); :meth:`_info_answer` then
        checks and converts the answer. None means: ask :meth:`_domain_info` (no hypervisor,
        a closed connection, a domain known to be gone or of another connection), whose
        checks raise the right errors.
        """
        hv = self._hv
        if dom._gone or dom._conn is not self:
            return None
        if hv is not None:
            return hv.request_info(dom._id)
        if self._xend_info is not None:
            return self._xend_info.request(dom._id)
        return None

    def _info_answer(self, dom: Domain,
                     answer: DomainInfoRecord | XendDomainRecord | None) -> DomainInfo:
        """Return ``dom``'s info from the answer to :meth:`_info_request`; NO_DOMAIN if gone.

        The same checks as :meth:`_domain_record` (hypervisor) and :meth:`_domain_sxpr`
        (xend): the id must still exist and still carry ``dom``'s UUID (never another
        domain's data).
        """
        if answer is None:
            raise self._gone(dom)
        if isinstance(answer, XendDomainRecord):
            if answer.domid != dom._id or (dom._uuid != _ZERO_UUID and answer.uuid != dom._uuid):
                raise self._gone(dom)
            return info_from_xend(answer)
        domid, flags, tot_pages, max_pages, _, cpu_time, vcpus, _, _, handle = answer
        if domid != dom._id or (handle != dom._handle and dom._handle != _ZERO_HANDLE
                                and any(handle)):
            raise self._gone(dom)  # the id now belongs to another domain
        state = _FLAG_STATES.get(flags)
        if state is None:
            state = _state_of(flags)
        info: DomainInfo = _new_tuple(DomainInfo, (
            state, max_pages * PAGE_KIB, tot_pages * PAGE_KIB, vcpus, cpu_time))
        return info

    async def _domain_sxpr(self, dom: Domain) -> XendDomainRecord:
        assert self._xend is not None
        with self._domain_errors(dom):
            rec = read_domain_sxpr(await self._xend.domain(dom.id))
        if rec.domid != dom.id or (dom.uuid != _ZERO_UUID and rec.uuid != dom.uuid):
            raise self._gone(dom)
        return rec

    async def _xs_domain_base(self, dom: Domain) -> str:
        """Return ``/local/domain/<id>`` after checking it is still ``dom``'s."""
        base = f"/local/domain/{dom.id}"
        ident = await self._xs_identity(dom.id)
        if ident is None or (dom.uuid != _ZERO_UUID and ident[1] not in (dom.uuid, _ZERO_UUID)):
            raise self._gone(dom)
        return base

    async def _domain_info(self, dom: Domain) -> DomainInfo:
        self._check_domain(dom)
        if self._hv is not None:
            return _info_from_record(await self._domain_record(dom))
        if self._xend is not None:
            return info_from_xend(await self._domain_sxpr(dom))
        base = await self._xs_domain_base(dom)
        vm = f"/vm/{dom.uuid}"
        target, maxmem, avail, vcpus = await asyncio.gather(
            self._xs_read(base + "/memory/target"), self._xs_read(vm + "/maxmem"),
            self._xs_read(vm + "/vcpu_avail"), self._xs_read(vm + "/vcpus"))
        memory = int_field(target)
        max_mem = max(int_field(maxmem) * 1024, memory)
        online = bin(int_field(avail)).count("1") if avail else int_field(vcpus)
        # xenstore holds no run state nor CPU time (libvirt reported NOSTATE and 0 too).
        return DomainInfo(DomainState.NOSTATE, max_mem, memory, online, 0)

    async def _domain_os_type(self, dom: Domain) -> str:
        self._check_domain(dom)
        if self._xs is not None:
            vm = await self._xs_read(f"/local/domain/{dom.id}/vm")
            if vm is not None:
                found = parse_uuid(vm)
                if dom.uuid != _ZERO_UUID and found is not None and found != dom.uuid:
                    raise self._gone(dom)  # the id now belongs to another domain
                return await self._xs_read(vm + "/image/ostype") or "linux"
            if self._xend is None:
                await self._xs_domain_base(dom)  # NO_DOMAIN if it has gone
                return "linux"
        if self._xend is not None:
            rec = await self._domain_sxpr(dom)
            image = sexpr.lookup_list(rec.sx, "domain/image")
            if image and isinstance(image[0], list) and image[0]:
                head = image[0][0]
                return head if isinstance(head, str) else "linux"
            return "linux"
        raise self._missing("the OS type", _XENSTORE, _XEND)

    async def _domain_max_memory(self, dom: Domain) -> int:
        self._check_domain(dom)
        if self._hv is not None:
            return (await self._domain_record(dom)).max_pages * PAGE_KIB
        return (await self._domain_info(dom)).max_mem

    async def _domain_xml_desc(self, dom: Domain, flags: int) -> str:
        self._check_domain(dom)
        if flags != 0:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"xml_desc flags must be 0, not {flags!r}", conn=self, dom=dom)
        self._need_xend("the XML description")
        from aiovirt.protocol.domxml import sexpr_to_xml

        assert self._xend is not None
        with self._domain_errors(dom):
            sx = await self._xend.domain(dom.id)
        rec = read_domain_sxpr(sx)
        if rec.domid != dom.id or (dom.uuid != _ZERO_UUID and rec.uuid != dom.uuid):
            raise self._gone(dom)
        return sexpr_to_xml(sx)

    async def _hv_or_xend(self, dom: Domain, what: str,
                          hv_call: Callable[[int], Awaitable[None]] | None,
                          xend_call: Callable[[int], Awaitable[None]] | None) -> None:
        if self._hv is not None and hv_call is not None:
            await self._domain_record(dom)
            with self._domain_errors(dom):
                await hv_call(dom.id)
            return
        if self._xend is not None and xend_call is not None:
            with self._domain_errors(dom):
                await xend_call(dom.id)
            return
        raise self._missing(what, _HYPERVISOR, _XEND)

    async def _domain_suspend(self, dom: Domain) -> None:
        self._check_lifecycle(dom, "suspend")
        await self._hv_or_xend(dom, "suspending a domain",
                               self._hv.pause if self._hv else None,
                               self._xend.pause if self._xend else None)

    async def _domain_resume(self, dom: Domain) -> None:
        self._check_lifecycle(dom, "resume")
        await self._hv_or_xend(dom, "resuming a domain",
                               self._hv.unpause if self._hv else None,
                               self._xend.unpause if self._xend else None)

    async def _domain_destroy(self, dom: Domain) -> None:
        self._check_lifecycle(dom, "destroy")
        await self._hv_or_xend(dom, "destroying a domain",
                               self._hv.destroy if self._hv else None,
                               self._xend.destroy if self._xend else None)
        dom._gone = True

    async def _domain_shutdown(self, dom: Domain, reason: str) -> None:
        self._check_lifecycle(dom, "reboot" if reason == "reboot" else "shut down")
        if self._xend is not None:
            with self._domain_errors(dom):
                await self._xend.shutdown(dom.id, reason)
            return
        if self._xs is not None:
            base = await self._xs_domain_base(dom)
            with self._domain_errors(dom):
                await self._xs.write(base + "/control/shutdown", reason)
            return
        raise self._missing("a shutdown request", _XEND, _XENSTORE)

    async def _domain_save(self, dom: Domain, path: str | os.PathLike[str]) -> None:
        self._check_writable(f"save domain {dom.name!r}")
        self._check_domain(dom)
        target = self._absolute(path)
        self._refuse_domain0(dom, "save")
        xend = self._need_xend("saving a domain")
        with self._domain_errors(dom):
            await xend.save(dom.id, target)
        dom._gone = True

    def _check_kib(self, dom: Domain, kib: object, minimum: int) -> int:
        if isinstance(kib, bool) or not isinstance(kib, int) or kib < minimum:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"memory must be an integer of at least {minimum} KiB, not {kib!r}",
                            conn=self, dom=dom)
        return kib

    async def _domain_set_max_memory(self, dom: Domain, kib: int) -> None:
        self._check_writable(f"set the maximum memory of domain {dom.name!r}")
        self._check_domain(dom)
        kib = self._check_kib(dom, kib, _MIN_MAX_MEMORY_KIB)
        hv_call = None
        if self._hv is not None:
            hv = self._hv

            async def hv_call(domid: int) -> None:
                await hv.set_max_memory(domid, kib)
        xend_call = None
        if self._xend is not None:
            xend = self._xend

            async def xend_call(domid: int) -> None:
                await xend.set_max_memory(domid, kib)
        await self._hv_or_xend(dom, "setting the maximum memory", hv_call, xend_call)

    async def _domain_set_memory(self, dom: Domain, kib: int) -> None:
        self._check_writable(f"set the memory of domain {dom.name!r}")
        self._check_domain(dom)
        kib = self._check_kib(dom, kib, 1)
        maximum = await self._domain_max_memory(dom)
        if kib > maximum:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                            f"{kib} KiB is more than domain {dom.name!r}'s maximum of "
                            f"{maximum} KiB", conn=self, dom=dom)
        if self._xend is not None:
            with self._domain_errors(dom):
                await self._xend.set_memory_target(dom.id, kib)
            return
        if self._xs is not None:
            base = await self._xs_domain_base(dom)
            with self._domain_errors(dom):
                await self._xs.write(base + "/memory/target", str(kib))
            return
        raise self._missing("setting the memory", _XEND, _XENSTORE)


class _Opening:
    """The result of :func:`open`: ``await`` it, or use it as ``async with``."""

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


def open(uri: str | None = None, *, read_only: bool = False) -> _Opening:
    """Open a connection to the node named by ``uri`` (``await`` it or ``async with`` it).

    ``uri``: ``xen:///`` (the local node; query parameters ``xend=``, ``xenstore=``,
    ``hypervisor=`` override or turn off each backend), ``xen://HOST/`` or ``sim:///``.
    Fails with NO_CONNECT naming the endpoints when neither xend nor xenstore answers.
    """
    return _Opening(uri, read_only)


def open_read_only(uri: str | None = None) -> _Opening:
    """Open a read-only connection: no hypervisor, the read-only xenstore socket, no changes."""
    return _Opening(uri, True)
