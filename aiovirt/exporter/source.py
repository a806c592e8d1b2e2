"""One node the exporter serves: its connection, kept open across scrapes, and one refresh.

A scrape of a node costs a constant number of calls, never one per domain: the bulk
``conn.domain_infos()`` (one coalesced hypercall), the bulk ``conn.device_stats()`` (one
coalesced read of the statistics files), ``node_info()``, and, only when domains appear that
were not seen before, one detailed xend list for their disks' sources and interfaces' bridges.
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

_Key = tuple[int, str]  # domid, UUID string


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
        self._sources: dict[_Key, tuple[dict[str, str], dict[str, str]]] = {}
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
        uuids = [dom.uuid_string for dom in domains]
        await self._learn_sources(conn, domains, uuids)
        out: list[DomainSample] = []
        sources = self._sources
        nothing: tuple[dict[str, str], dict[str, str]] = ({}, {})
        for (dom, info), uuid, stats in zip(pairs, uuids, device_list, strict=True):
            disks, bridges = sources.get((dom.id, uuid), nothing)
            out.append(DomainSample(dom.name, uuid, info, stats, disks, bridges))
        return out, node_info

    async def _learn_sources(self, conn: Connection, domains: list[Domain],
                             uuids: list[str]) -> None:
        """Remember each new domain's disk sources and bridges (one xend list for all)."""
        sources = self._sources
        alive = {(d.id, u) for d, u in zip(domains, uuids, strict=True)}
        if len(alive) == len(sources) and all(key in sources for key in alive):
            return
        for key in [k for k in sources if k not in alive]:
            del sources[key]
        if conn.xend is None or all(key in sources for key in alive):
            return
        from aiovirt.protocol.domxml import sexpr_to_config

        try:
            records = await conn.xend.list_domains_detail()
        except VirtError as err:
            log.warning("node %s: no device sources from xend: %s", self.name, err)
            return
        for sx in records:
            try:
                cfg = sexpr_to_config(sx)
            except VirtError:
                continue
            if cfg.id is None:
                continue
            key = (cfg.id, str(cfg.uuid or uuidlib.UUID(int=0)))
            disks = {d.target: d.source for d in cfg.disks if d.type == "file"}
            bridges = {n.target: n.bridge or "" for n in cfg.interfaces if n.target}
            sources[key] = (disks, bridges)


async def _close_quietly(conn: Connection) -> None:
    try:
        async with asyncio.timeout(5):
            await conn.close()
    except (Exception, TimeoutError) as exc:  # the node is already failing; its close may too
        log.debug("closing a failed connection: %s", exc)
