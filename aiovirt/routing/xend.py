"""What the face needs from xend: its domain and node records read into values, its answer to
each call it routes (methods named after the calls, see :mod:`aiovirt.routing.table`), and the
coalescing of concurrent ``info()`` calls into as few HTTP requests as possible.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from typing import TYPE_CHECKING, NamedTuple

from aiovirt.backends.xend import XendClient
from aiovirt.batching import Coalescer
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.info import DomainInfo, NodeInfo
from aiovirt.protocol import sexpr
from aiovirt.protocol.sexpr import SExpr
from aiovirt.protocol.states import state_from_xend
from aiovirt.protocol.xen import NULL_UUID
from aiovirt.routing.identity import (
    Found,
    Identity,
    gone,
    gone_if_missing,
    is_missing,
    is_same,
    no_domain,
    parse_uuid,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiovirt.protocol.domxml import DomainConfig

__all__ = [
    "XendDomainRecord",
    "XendRoutes",
    "info_from_xend",
    "int_field",
    "read_domain_sxpr",
    "record_fields",
]

log = logging.getLogger(__name__)


def record_fields(sx: SExpr) -> dict[str, str]:
    """Return the first atom value of each ``(key value)`` child of ``sx`` (one pass)."""
    out: dict[str, str] = {}
    if isinstance(sx, list):
        for item in sx[1:]:
            if isinstance(item, list) and item and isinstance(item[0], str):
                key = item[0]
                if key not in out:
                    value = item[1] if len(item) > 1 else ""
                    out[key] = value if isinstance(value, str) else ""
    return out


def int_field(text: str | None, default: int = 0) -> int:
    """Return xend's integer (or float) text as an int, ``default`` when absent or bad."""
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            return default


class XendDomainRecord(NamedTuple):
    """One domain as xend describes it: identity, its first-level fields, the whole sxpr."""

    name: str
    domid: int | None
    uuid: uuidlib.UUID
    fields: dict[str, str]
    sx: SExpr


def read_domain_sxpr(sx: SExpr) -> XendDomainRecord:
    """Return the record of xend's ``(domain ...)`` S-expression."""
    f = record_fields(sx)
    domid = int_field(f.get("domid"), -1) if f.get("domid") else None
    return XendDomainRecord(f.get("name", ""), domid if domid is None or domid >= 0 else None,
                            parse_uuid(f.get("uuid")) or NULL_UUID, f, sx)


def info_from_xend(rec: XendDomainRecord) -> DomainInfo:
    """Return libvirt's info (KiB, nanoseconds) from xend's record (MiB, float seconds)."""
    f = rec.fields
    memory = int_field(f.get("memory")) * 1024
    max_mem = int_field(f.get("maxmem")) * 1024 or memory
    vcpus = int_field(f.get("online_vcpus")) or int_field(f.get("vcpus"))
    try:
        cpu_time = round(float(f.get("cpu_time") or 0.0) * 1e9)
    except ValueError:
        cpu_time = 0
    return DomainInfo(state_from_xend(f.get("state")), max(max_mem, memory), memory, vcpus,
                      cpu_time)


class XendRoutes:
    """The xend backend's answers, over one client, for the node of ``uri``.

    Concurrent ``info()`` calls are coalesced (:meth:`request`): every request joins the
    forming batch of an :class:`~aiovirt.batching.Coalescer`, which asks xend once for every
    domain's detail (``GET /xend/domain?detail=1``) when that is cheaper than asking per
    domain, i.e. when the batch holds at least :attr:`MIN_LIST` requests and at least half as
    many as the node has domains (as last seen); otherwise it asks per domain, concurrently.
    ``stats`` counts ``batches``, ``lists`` and ``single`` requests; ``coalescing = False``
    sends each ``info()`` on its own (to measure what coalescing saves).
    """

    MIN_LIST = 8

    def __init__(self, xend: XendClient, uri: str) -> None:
        self.xend = xend
        self.uri = uri
        self.coalescing = True
        self._known = 0  # domains on the node at the last list (0: not listed yet)
        self.stats: dict[str, int] = {"batches": 0, "lists": 0, "single": 0}
        self._batches: Coalescer[int, XendDomainRecord | None] = Coalescer(
            self._serve, self._batch_error, name=f"aiovirt xend info ({uri})")

    async def close(self) -> None:
        """Stop the batches; their waiters fail with INVALID_CONN."""
        await self._batches.close(cancel=True)

    async def _list(self) -> list[XendDomainRecord]:
        recs = [read_domain_sxpr(sx) for sx in await self.xend.list_domains_detail()]
        self._known = len(recs)
        return recs

    async def record(self, ident: Identity) -> XendDomainRecord:
        """Return ``ident``'s record; NO_DOMAIN if it has gone."""
        with gone_if_missing(ident, self.uri):
            rec = read_domain_sxpr(await self.xend.domain(ident.id))
        if not is_same(ident, rec.domid, rec.uuid.bytes):
            raise gone(ident, self.uri)
        return rec

    # -- coalesced info() ------------------------------------------------------------------

    def request(self, ident: Identity) -> asyncio.Future[XendDomainRecord | None] | None:
        """Return a future of ``ident``'s record (None: no such domain), or None when
        coalescing is off."""
        return self._batches.request(ident.id) if self.coalescing else None

    def answer(self, ident: Identity, rec: XendDomainRecord | None) -> DomainInfo:
        """Return ``ident``'s info from the answer to :meth:`request`; NO_DOMAIN if gone."""
        if rec is None or not is_same(ident, rec.domid, rec.uuid.bytes):
            raise gone(ident, self.uri)
        return info_from_xend(rec)

    async def _serve(self, domids: list[int]) -> list[XendDomainRecord | BaseException | None]:
        self.stats["batches"] += 1
        if len(domids) >= self.MIN_LIST and len(domids) * 2 >= self._known:
            self.stats["lists"] += 1
            by_id = {r.domid: r for r in await self._list() if r.domid is not None}
            return [by_id.get(domid) for domid in domids]
        self.stats["single"] += len(domids)
        if len(domids) == 1:  # the common lone call: no task of its own
            try:
                return [await self._one(domids[0])]
            except Exception as exc:
                return [exc]
        return await asyncio.gather(*(self._one(domid) for domid in domids),
                                    return_exceptions=True)

    async def _one(self, domid: int) -> XendDomainRecord | None:
        try:
            return read_domain_sxpr(await self.xend.domain(domid))
        except VirtError as err:
            if is_missing(err):
                return None
            raise

    def _batch_error(self, domid: int, exc: BaseException | None) -> VirtError:
        """Return one waiter's own error: the batch failed with ``exc``, or closed (None)."""
        if isinstance(exc, VirtError):
            err = exc.copy()
            err.__cause__ = exc.__cause__
            return err
        if exc is None:
            return VirtError(ErrorNumber.INVALID_CONN, ErrorDomain.NONE,
                             f"connection to {self.uri!r} (closed before the Xen daemon "
                             "answered)")
        err = VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                        f"asking {self.xend.where} for domain information: "
                        f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err

    # -- the calls ---------------------------------------------------------------------------

    async def list_ids(self) -> list[int]:
        """Return the ids of xend's detailed list."""
        recs = [read_domain_sxpr(sx) for sx in await self.xend.list_domains_detail()]
        return sorted(r.domid for r in recs if r.domid is not None)

    async def list_domains(self) -> list[Found]:
        """Return every domain of one detailed list, in id order."""
        found = [Found(r.name, r.domid, r.uuid) for r in await self._list()
                 if r.domid is not None]
        return sorted(found, key=lambda f: f.domid)

    async def domain_infos(self) -> list[tuple[Found, DomainInfo]]:
        """Return every domain and its info from one detailed list, in id order."""
        pairs = [(Found(r.name, r.domid, r.uuid), info_from_xend(r)) for r in await self._list()
                 if r.domid is not None]
        return sorted(pairs, key=lambda pair: pair[0].domid)

    async def lookup_by_name(self, name: str) -> Found:
        """Ask xend for ``name``; accept only an exact name (xend also resolves a domid)."""
        try:
            rec = read_domain_sxpr(await self.xend.domain(name))
        except VirtError as err:
            if err.code == ErrorNumber.NO_DOMAIN:
                raise no_domain(f"name {name!r}", self.uri, err) from err
            raise
        if rec.name != name or rec.domid is None:
            raise no_domain(f"name {name!r}", self.uri)
        return Found(rec.name, rec.domid, rec.uuid)

    async def lookup_by_id(self, domid: int) -> Found:
        """Ask xend for ``domid``; a domain *named* like the number is looked past."""
        try:
            rec = read_domain_sxpr(await self.xend.domain(domid))
        except VirtError as err:
            if err.code == ErrorNumber.NO_DOMAIN:
                raise no_domain(f"id {domid}", self.uri, err) from err
            raise
        if rec.domid != domid:  # a domain *named* like the number shadows the id
            recs = [read_domain_sxpr(sx) for sx in await self.xend.list_domains_detail()]
            match = next((r for r in recs if r.domid == domid), None)
            if match is None:
                raise no_domain(f"id {domid}", self.uri)
            rec = match
        return Found(rec.name, domid, rec.uuid)

    async def lookup_by_uuid(self, wanted: uuidlib.UUID) -> Found:
        """Find ``wanted`` in one detailed list."""
        recs = [read_domain_sxpr(sx) for sx in await self.xend.list_domains_detail()]
        rec = next((r for r in recs if r.uuid == wanted and r.domid is not None), None)
        if rec is None or rec.domid is None:
            raise no_domain(f"uuid {wanted}", self.uri)
        return Found(rec.name, rec.domid, rec.uuid)

    async def info(self, ident: Identity) -> DomainInfo:
        """Return ``ident``'s info from its record (MiB and seconds made KiB and ns)."""
        return info_from_xend(await self.record(ident))

    async def max_memory(self, ident: Identity) -> int:
        """Return ``info().max_mem``."""
        return (await self.info(ident)).max_mem

    async def os_type(self, ident: Identity) -> str:
        """Return the head of the record's ``image`` (``linux`` or ``hvm``)."""
        rec = await self.record(ident)
        image = sexpr.lookup_list(rec.sx, "domain/image")
        if image and isinstance(image[0], list) and image[0]:
            head = image[0][0]
            return head if isinstance(head, str) else "linux"
        return "linux"

    async def xml_desc(self, ident: Identity) -> str:
        """Return the domain XML of ``ident``'s record."""
        with gone_if_missing(ident, self.uri):
            sx = await self.xend.domain(ident.id)
        rec = read_domain_sxpr(sx)
        if not is_same(ident, rec.domid, rec.uuid.bytes):
            raise gone(ident, self.uri)
        # lxml is imported by the calls that speak XML only, not by every connection
        from aiovirt.protocol.domxml import sexpr_to_xml

        return sexpr_to_xml(sx)

    async def domain_configs(self, idents: Sequence[Identity]) -> list[DomainConfig | None]:
        """Return each of ``idents``' description from one detailed list (None: gone)."""
        from aiovirt.protocol.domxml import sexpr_to_config

        by_id: dict[int, DomainConfig] = {}
        for sx in await self.xend.list_domains_detail():
            cfg = sexpr_to_config(sx)
            if cfg.id is not None:
                by_id[cfg.id] = cfg
        out: list[DomainConfig | None] = []
        for ident in idents:
            found = by_id.get(ident.id)
            if found is not None and not is_same(ident, found.id, (found.uuid or NULL_UUID).bytes):
                found = None  # the id now belongs to another domain
            out.append(found)
        return out

    async def suspend(self, ident: Identity) -> None:
        """POST ``op=pause``."""
        with gone_if_missing(ident, self.uri):
            await self.xend.pause(ident.id)

    async def resume(self, ident: Identity) -> None:
        """POST ``op=unpause``."""
        with gone_if_missing(ident, self.uri):
            await self.xend.unpause(ident.id)

    async def destroy(self, ident: Identity) -> None:
        """POST ``op=destroy``."""
        with gone_if_missing(ident, self.uri):
            await self.xend.destroy(ident.id)

    async def set_max_memory(self, ident: Identity, kib: int) -> None:
        """POST ``op=maxmem_set``."""
        with gone_if_missing(ident, self.uri):
            await self.xend.set_max_memory(ident.id, kib)

    async def shutdown(self, ident: Identity, reason: str) -> None:
        """POST ``op=shutdown`` with ``reason``."""
        with gone_if_missing(ident, self.uri):
            await self.xend.shutdown(ident.id, reason)

    async def set_memory(self, ident: Identity, kib: int) -> None:
        """POST ``op=mem_target_set``."""
        with gone_if_missing(ident, self.uri):
            await self.xend.set_memory_target(ident.id, kib)

    async def save(self, ident: Identity, path: str) -> None:
        """POST ``op=save`` to ``path``."""
        with gone_if_missing(ident, self.uri):
            await self.xend.save(ident.id, path)

    async def restore(self, path: str) -> None:
        """POST ``op=restore`` from ``path``."""
        await self.xend.restore(path)

    async def create(self, xml: str) -> str:
        """Create the domain of ``xml`` paused, await its devices, unpause it; return its name.

        If any step after the creation fails, the half-made domain is destroyed.
        """
        from aiovirt.protocol.domxml import xml_to_sexpr

        config = xml_to_sexpr(xml)
        parsed = sexpr.parse(config) if isinstance(config, str) else config
        name = record_fields(parsed).get("name", "")
        if not name:
            raise VirtError(ErrorNumber.NO_NAME, ErrorDomain.XML, xml[:200])
        await self.xend.create(parsed)
        try:
            await self.xend.wait_for_devices(name)
            await self.xend.unpause(name)
        except BaseException as exc:
            log.warning("%s: destroying half-created domain %r: %s", self.uri, name, exc)
            await asyncio.shield(self._destroy_quietly(name))
            raise
        return name

    async def _destroy_quietly(self, name: str) -> None:
        try:
            await self.xend.destroy(name)
        except VirtError as err:
            log.warning("%s: could not destroy half-created domain %r: %s", self.uri, name, err)

    async def node_info(self) -> NodeInfo:
        """Return the node's description from ``/xend/node``."""
        f = record_fields(await self.xend.node())
        nodes = int_field(f.get("nr_nodes"), 1) or 1
        cores = int_field(f.get("cores_per_socket"), 1) or 1
        threads = int_field(f.get("threads_per_core"), 1) or 1
        cpus = int_field(f.get("nr_cpus"))
        sockets = int_field(f.get("sockets_per_node")) or max(cpus // (nodes * cores * threads), 1)
        return NodeInfo(f.get("machine") or "unknown", int_field(f.get("total_memory")) * 1024,
                        cpus, int_field(f.get("cpu_mhz")), nodes, sockets, cores, threads)

    async def version(self) -> int:
        """Return Xen's version from ``/xend/node``."""
        f = record_fields(await self.xend.node())
        return int_field(f.get("xen_major")) * 1_000_000 + int_field(f.get("xen_minor")) * 1_000
