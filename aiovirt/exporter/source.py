"""One node the exporter serves: its connection, kept open across scrapes, and one refresh.

A scrape of a node costs a constant number of calls, never one per domain: the bulk
``conn.domain_infos()`` (one coalesced hypercall), the bulk ``conn.device_stats()`` (one
coalesced read of the statistics files), ``node_info()``, and, only when domains appear that
were not seen before, ``conn.domain_configs()`` (one detailed xend list) for their disks'
sources and interfaces' bridges.
A node that fails is marked down and its connection dropped (the next scrape opens a new one),
while the other nodes are served as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from typing import Any

import aiovirt
from aiovirt.connection import Connection
from aiovirt.domain import Domain
from aiovirt.errors import VirtError
from aiovirt.exporter.metrics import DomainSample, NodeSample
from aiovirt.protocol.devstats import DeviceStats

__all__ = ["NodeSource", "parse_node_arg"]

log = logging.getLogger(__name__)

_Key = tuple[int, uuidlib.UUID]  # domid, UUID


def parse_node_arg(arg: str) -> tuple[str, str]:
    """Return ``(name, uri)`` of a ``-c`` argument: ``URI`` or ``NAME=URI``.

    A URI always has its ``scheme:`` before any ``=``, so a prefix without ``:`` is a name;
    without one the node is named by its URI.
    """
    head, sep, rest = arg.partition("=")
    if sep and head and ":" not in head and rest:
        return head, rest
    return arg, arg


class NodeSource:
    """A node named ``name`` at ``uri``; ``await source.scrape()`` refreshes it once."""

    def __init__(self, name: str, uri: str, *, read_only: bool = False) -> None:
        """Serve the node at ``uri``.

        Like libvirt_exporter, it opens a normal connection by default: a read-only one never
        uses the hypervisor, so every refresh would be xend's slower detailed list.
        """
        self.name = name
        self.uri = uri
        self.read_only = read_only
        self._conn: Connection | None = None
        self._opening: asyncio.Lock = asyncio.Lock()
        self._known: dict[_Key, _Known] = {}
        self._failing = False

    def __repr__(self) -> str:
        return f"<NodeSource {self.name!r} {self.uri!r}>"

    async def _connection(self) -> Connection:
        async with self._opening:
            if self._conn is None or self._conn.closed:
                opener = aiovirt.open_read_only if self.read_only else aiovirt.open
                self._conn = await opener(self.uri)
            return self._conn

    async def close(self) -> None:
        """Close the node's connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def scrape(self, timeout: float) -> NodeSample:  # noqa: ASYNC109
        """Return the node's sample; a failure is logged and gives ``up`` = 0."""
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                sample = await self._refresh()
        except (VirtError, OSError, TimeoutError) as exc:
            why = "no answer within the scrape timeout" if isinstance(exc, TimeoutError) else exc
            log.error("node %s (%s): scrape failed: %s", self.name, self.uri, why)
            self._failing = True
            conn, self._conn = self._conn, None
            if conn is not None:  # a node that failed gets a fresh connection next time
                await _close_quietly(conn)
            return NodeSample(self.name, False, time.perf_counter() - start)
        if self._failing:
            log.info("node %s (%s) answers again", self.name, self.uri)
            self._failing = False
        return NodeSample(self.name, True, time.perf_counter() - start, sample[0], sample[1])

    async def _refresh(self) -> tuple[list[DomainSample], Any]:
        conn = await self._connection()
        pairs = await conn.domain_infos()
        domains = [dom for dom, _ in pairs]
        device_list: list[DeviceStats | None]
        if "devstats" in conn.unavailable:  # no statistics files here (a remote xend)
            node_info = await conn.node_info()
            device_list = [None] * len(pairs)
        else:
            node_info, devices = await asyncio.gather(conn.node_info(),
                                                      conn.device_stats(domains))
            device_list = [stats for _, stats in devices]  # in the order of ``domains``
        known = await self._learn(conn, domains)
        out = [DomainSample(dom.name, meta.uuid, info, stats, meta.disks, meta.bridges)
               for (dom, info), meta, stats in zip(pairs, known, device_list, strict=True)]
        return out, node_info

    async def _learn(self, conn: Connection, domains: list[Domain]) -> list[_Known]:
        """Return what is kept of each domain, learning new ones' device sources.

        One xend list serves every domain not seen before (or whose sources xend did not
        give yet); a domain that is gone is forgotten.
        """
        known = self._known
        out: list[_Known] = []
        fresh: list[tuple[Domain, _Known]] = []
        for dom in domains:
            key = (dom.id, dom.uuid)
            meta = known.get(key)
            if meta is None:
                meta = known[key] = _Known(dom.uuid_string)
            if not meta.learned:
                fresh.append((dom, meta))
            out.append(meta)
        if len(known) > len(domains):
            alive = {(dom.id, dom.uuid) for dom in domains}
            for key in [k for k in known if k not in alive]:
                del known[key]
        if fresh and "xend" in conn.backends:  # only xend describes the domains' devices
            await self._learn_sources(conn, fresh)
        return out

    async def _learn_sources(self, conn: Connection,
                             fresh: list[tuple[Domain, _Known]]) -> None:
        """Fill in ``fresh`` domains' disk sources and bridges from their descriptions."""
        try:
            configs = await conn.domain_configs([dom for dom, _ in fresh])
        except VirtError as err:
            log.warning("node %s: no device sources from xend: %s", self.name, err)
            return
        kept = {dom: meta for dom, meta in fresh}
        for dom, cfg in configs:
            meta = kept[dom]
            meta.disks = {d.target: d.source for d in cfg.disks if d.type == "file"}
            meta.bridges = {n.target: n.bridge or "" for n in cfg.interfaces if n.target}
            meta.learned = True


class _Known:
    """What a source keeps of one domain between scrapes: its UUID's text, its devices' sources."""

    __slots__ = ("bridges", "disks", "learned", "uuid")

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self.disks: dict[str, str] = {}  # target -> source file
        self.bridges: dict[str, str] = {}  # vif name -> bridge
        self.learned = False  # whether xend has told its devices' sources


async def _close_quietly(conn: Connection) -> None:
    try:
        async with asyncio.timeout(5):
            await conn.close()
    except (Exception, TimeoutError) as exc:  # the node is already failing; its close may too
        log.debug("closing a failed connection: %s", exc)
