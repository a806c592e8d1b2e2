"""The router: reads :data:`~aiovirt.routing.table.ROUTES` and asks the backends in that order.

One :class:`Router` per connection holds the answers of each open backend (the ``*Routes``
objects of this package) and, for each call, the list of those answers in the table's order.
Every call asks them in turn by the table's fallback rule (see :mod:`aiovirt.routing.table`);
nothing else in aiovirt picks a backend.

The router works on :class:`~aiovirt.routing.identity.Identity` objects and makes the handles
it returns with the factory it was given (the connection's :class:`~aiovirt.connection.Domain`),
so it never reaches back into the face. Its errors carry no connection: the public seam that
called it attaches its own when it reports them.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.info import DomainInfo, NodeInfo
from aiovirt.protocol.privcmd import DomainInfoRecord
from aiovirt.routing.devstats import DeviceStatsRoutes
from aiovirt.routing.hypervisor import HypervisorRoutes, info_from_record
from aiovirt.routing.identity import Found, Identity, is_same
from aiovirt.routing.table import DEVSTATS, HYPERVISOR, ROUTES, XEND, XENSTORE, Pass
from aiovirt.routing.xend import XendRoutes
from aiovirt.routing.xenstore import XenStoreRoutes

__all__ = ["Router"]

D = TypeVar("D", bound=Identity)
_Step = Callable[..., Awaitable[Any]]


def _no_request(ident: Identity) -> None:
    return None


def _no_answer(ident: Identity, answer: object) -> DomainInfo:
    raise AssertionError("no coalesced request was made")


class Router(Generic[D]):
    """Route one connection's calls to its open backends, by :data:`ROUTES`.

    ``views`` maps each open backend's name to its answers; ``endpoints`` names every
    backend's endpoint and ``why_not`` says why a backend is missing (for ``NO_CONNECT``);
    ``new(name, domid, uuid)`` makes the handle of a domain found.

    ``dom.info()``'s fast path (thousands at once, so no task and no coroutine of its own):
    ``info_request(ident)`` returns a future answer from the forming batch of the first
    backend of the info route when it coalesces requests, else None (then ask :meth:`info`);
    ``info_answer(ident, answer)`` checks and converts that answer (NO_DOMAIN if gone).
    """

    def __init__(
        self,
        uri: str,
        views: Mapping[str, HypervisorRoutes | XendRoutes | XenStoreRoutes | DeviceStatsRoutes],
        *,
        endpoints: Mapping[str, str],
        why_not: Mapping[str, str],
        new: Callable[[str, int, uuidlib.UUID], D],
    ) -> None:
        self.uri = uri
        self._views = dict(views)
        self._endpoints = endpoints
        self._why_not = why_not
        self._new = new
        self.hypervisor = cast("HypervisorRoutes | None", self._views.get(HYPERVISOR))
        self.xend = cast("XendRoutes | None", self._views.get(XEND))
        self.xenstore = cast("XenStoreRoutes | None", self._views.get(XENSTORE))
        self.devstats = cast("DeviceStatsRoutes | None", self._views.get(DEVSTATS))
        self._plans: dict[str, list[_Step]] = {
            call: [getattr(self._views[name], call) for name in route.backends
                   if name in self._views]
            for call, route in ROUTES.items()
        }
        # info()'s fast path: the first backend of its route, if it coalesces requests.
        first = next((self._views[n] for n in ROUTES["info"].backends if n in self._views), None)
        if isinstance(first, HypervisorRoutes | XendRoutes):
            self.info_request: Callable[[Identity], asyncio.Future[Any] | None] = first.request
            self.info_answer: Callable[[Identity, Any], DomainInfo] = first.answer
        else:
            self.info_request = _no_request
            self.info_answer = _no_answer
        self._known: dict[int, D] = {}  # domid -> handle, for domain_infos()

    async def close(self) -> None:
        """Stop the router's background work (the xend info batches)."""
        if self.xend is not None:
            await self.xend.close()
        if self.devstats is not None:
            await self.devstats.close()

    def missing(self, call: str) -> VirtError:
        """Return NO_CONNECT for ``call``: each backend of its route, and why it is missing."""
        route = ROUTES[call]
        reasons = "; ".join(f"{self._endpoints[b]}: {self._why_not.get(b, 'not available')}"
                            for b in route.backends)
        return VirtError(ErrorNumber.NO_CONNECT, ErrorDomain.NONE,
                         f"{reasons} (needed for {route.what})")

    async def _route(self, call: str, *args: Any) -> Any:
        """Ask the open backends of ``call``'s route in turn, by the table's fallback rule."""
        fallback = None
        for step in self._plans[call]:
            answer = await step(*args)
            if not isinstance(answer, Pass):
                return answer
            if answer.fallback is not None:
                fallback = answer.fallback
        if fallback is not None:
            return fallback
        raise self.missing(call)

    def _handle(self, found: Found) -> D:
        return self._new(found.name, found.domid, found.uuid)

    # -- the node --------------------------------------------------------------------------

    async def version(self) -> int:
        """Return the hypervisor's version, 0 when neither backend of the route is open."""
        if not self._plans["version"]:
            return 0
        version: int = await self._route("version")
        return version

    async def node_info(self) -> NodeInfo:
        """Return the node's hardware."""
        info: NodeInfo = await self._route("node_info")
        return info

    async def list_ids(self) -> list[int]:
        """Return the ids of the running domains, in increasing order."""
        ids: list[int] = await self._route("list_ids")
        return ids

    async def list_domains(self) -> list[D]:
        """Return every running domain."""
        found: list[Found] = await self._route("list_domains")
        return [self._handle(f) for f in found]

    async def lookup_by_name(self, name: str) -> D:
        """Return the running domain called ``name``."""
        return self._handle(await self._route("lookup_by_name", name))

    async def lookup_by_id(self, domid: int) -> D:
        """Return the running domain with id ``domid``."""
        return self._handle(await self._route("lookup_by_id", domid))

    async def lookup_by_uuid(self, wanted: uuidlib.UUID) -> D:
        """Return the running domain with UUID ``wanted``."""
        return self._handle(await self._route("lookup_by_uuid", wanted))

    async def create(self, xml: str) -> str:
        """Create and start the domain of ``xml``; return its name."""
        name: str = await self._route("create", xml)
        return name

    async def restore(self, path: str) -> None:
        """Restore the domain saved at ``path``."""
        await self._route("restore", path)

    # -- one domain --------------------------------------------------------------------------

    async def info(self, ident: Identity) -> DomainInfo:
        """Return ``ident``'s info through the info route."""
        info: DomainInfo = await self._route("info", ident)
        return info

    async def _info(self, ident: Identity) -> DomainInfo:
        """Return ``ident``'s info, joining a coalesced batch when the route has one."""
        request = self.info_request(ident)
        if request is None:
            return await self.info(ident)
        return self.info_answer(ident, await request)

    async def max_memory(self, ident: Identity) -> int:
        """Return ``ident``'s memory limit in KiB."""
        kib: int = await self._route("max_memory", ident)
        return kib

    async def os_type(self, ident: Identity) -> str:
        """Return ``ident``'s OS type."""
        os_type: str = await self._route("os_type", ident)
        return os_type

    async def xml_desc(self, ident: Identity) -> str:
        """Return ``ident``'s domain XML."""
        xml: str = await self._route("xml_desc", ident)
        return xml

    async def suspend(self, ident: Identity) -> None:
        """Pause ``ident``."""
        await self._route("suspend", ident)

    async def resume(self, ident: Identity) -> None:
        """Unpause ``ident``."""
        await self._route("resume", ident)

    async def destroy(self, ident: Identity) -> None:
        """Destroy ``ident``."""
        await self._route("destroy", ident)

    async def shutdown(self, ident: Identity, reason: str) -> None:
        """Ask ``ident``'s guest to shut down (``poweroff``) or reboot (``reboot``)."""
        await self._route("shutdown", ident, reason)

    async def save(self, ident: Identity, path: str) -> None:
        """Save ``ident`` to ``path`` (absolute)."""
        await self._route("save", ident, path)

    async def set_max_memory(self, ident: Identity, kib: int) -> None:
        """Set ``ident``'s memory limit to ``kib`` KiB."""
        await self._route("set_max_memory", ident, kib)

    async def set_memory(self, ident: Identity, kib: int) -> None:
        """Set ``ident``'s balloon target to ``kib`` KiB, at most the hypervisor's maximum.

        Only the hypervisor knows the maximum for sure: xend 3.0.x's sxpr and ``/vm`` keep the
        configured one after a ``maxmem_set``. Without the hypervisor, xend (and Xen behind it)
        decide: xend takes any positive target, the guest balloons up to Xen's limit.
        """
        if self.hypervisor is not None:
            maximum = await self.hypervisor.max_memory(ident)
            if kib > maximum:
                raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM,
                                f"{kib} KiB is more than domain {ident.name!r}'s maximum of "
                                f"{maximum} KiB")
        await self._route("set_memory", ident, kib)

    async def block_stats(self, ident: Identity, device: str) -> Any:
        """Return ``ident``'s disk ``device``'s counters (NO_DOMAIN first if it has gone)."""
        if not self._plans["block_stats"]:
            raise self.missing("block_stats")
        await self._info(ident)
        return await self._route("block_stats", ident, device)

    async def interface_stats(self, ident: Identity, device: str) -> Any:
        """Return ``ident``'s interface ``device``'s counters (the guest's view)."""
        if self.devstats is None:
            raise self.missing("interface_stats")
        self.devstats.check_interface(ident, device)
        await self._info(ident)
        return await self._route("interface_stats", ident, device)

    async def device_stats(self, wanted: Sequence[D] | None) -> list[tuple[D, Any]]:
        """Return ``(domain, device counters)`` for ``wanted`` (None: every running domain)."""
        if not self._plans["device_stats"]:
            raise self.missing("device_stats")
        doms = [d for d, _ in await self.domain_infos(None)] if wanted is None else wanted
        stats = await self._route("device_stats", doms)
        return list(zip(doms, stats, strict=True))

    async def domain_configs(self, wanted: Sequence[D] | None) -> list[tuple[D, Any]]:
        """Return ``(domain, description)`` for ``wanted`` (None: every running domain)."""
        if not self._plans["domain_configs"]:
            raise self.missing("domain_configs")
        doms = [d for d, _ in await self.domain_infos(None)] if wanted is None else wanted
        configs = await self._route("domain_configs", doms)
        return [(dom, cfg) for dom, cfg in zip(doms, configs, strict=True) if cfg is not None]

    # -- many domains at once ----------------------------------------------------------------

    async def domain_infos(self, wanted: Sequence[D] | None) -> list[tuple[D, DomainInfo]]:
        """Return ``(domain, info)`` for ``wanted`` (None: every running domain) at once.

        The hypervisor answers with one batch (names from xenstore for domains not seen
        before); else xend with one detailed list, for every domain; else each domain's info
        route. A domain that has gone is left out.
        """
        hv, xend = self.hypervisor, self.xend
        if hv is not None and (wanted is not None or hv.store is not None):
            records: list[DomainInfoRecord] = await hv.hv.request_info(None)
            doms = wanted if wanted is not None else await self._domains_of(hv, records)
            by_id = {rec.domid: rec for rec in records}
            out: list[tuple[D, DomainInfo]] = []
            for dom in doms:
                rec = by_id.get(dom.id)
                # left out: gone, or the id now belongs to another domain
                if rec is not None and is_same(dom, rec.domid, rec.handle):
                    out.append((dom, info_from_record(rec)))
            return out
        if wanted is None and xend is not None:
            return [(self._handle(f), info) for f, info in await xend.domain_infos()]
        doms = wanted if wanted is not None else await self.list_domains()
        infos = await asyncio.gather(*(self._info(d) for d in doms), return_exceptions=True)
        pairs = []
        for dom, info in zip(doms, infos, strict=True):
            if isinstance(info, VirtError) and info.code == ErrorNumber.NO_DOMAIN:
                continue
            if isinstance(info, BaseException):
                raise info
            pairs.append((dom, info))
        return pairs

    async def _domains_of(self, hv: HypervisorRoutes,
                          records: Sequence[DomainInfoRecord]) -> list[D]:
        """Return the handle of each record, reading names only for new domains."""
        known = self._known
        fresh = [r for r in records
                 if (d := known.get(r.domid)) is None or d.handle != r.handle]
        if fresh:
            assert hv.store is not None
            names = await asyncio.gather(*(hv.store.name(r.domid) for r in fresh))
            for rec, name in zip(fresh, names, strict=True):
                if name is not None:
                    known[rec.domid] = self._new(name, rec.domid, uuidlib.UUID(bytes=rec.handle))
        alive = {r.domid for r in records}
        for domid in [d for d in known if d not in alive]:
            del known[domid]
        return [known[r.domid] for r in records if r.domid in known]

