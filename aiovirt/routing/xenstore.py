"""What the face needs from xenstore: the ``/local/domain`` and ``/vm`` layout, read per call.

Each domain has ``/local/domain/<id>`` with its ``name``, its ``vm`` path (``/vm/<uuid>``),
``memory/target`` (KiB) and ``control/shutdown``; ``/vm/<uuid>`` holds ``maxmem`` (MiB),
``vcpus``, ``vcpu_avail`` and ``image/ostype``. xenstore holds no run state nor CPU time
(libvirt reported NOSTATE and 0 too). Each method named after a call is this backend's answer
to it (see :mod:`aiovirt.routing.table`).
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from collections.abc import Sequence

from aiovirt.backends.xenstore import XenStoreClient
from aiovirt.errors import VirtError
from aiovirt.info import DomainInfo
from aiovirt.protocol.states import DomainState
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
from aiovirt.routing.table import Pass
from aiovirt.routing.xend import int_field

__all__ = ["XenStoreRoutes"]


class XenStoreRoutes:
    """The xenstore backend's answers, over one client, for the node of ``uri``."""

    def __init__(self, xs: XenStoreClient, uri: str) -> None:
        self.xs = xs
        self.uri = uri

    # -- the layout ------------------------------------------------------------------------

    async def read(self, path: str) -> str | None:
        """Return the text at ``path`` or None if it does not exist."""
        try:
            value = await self.xs.read(path)
        except VirtError as err:
            if is_missing(err):
                return None
            raise
        return value.decode("utf-8", "replace")

    async def name(self, domid: int) -> str | None:
        """Return the name of domain ``domid``, or None if it has no ``/local/domain`` entry."""
        return await self.read(f"/local/domain/{domid}/name")

    async def domids(self) -> list[int]:
        """Return the ids under ``/local/domain``, in increasing order."""
        try:
            entries = await self.xs.directory("/local/domain")
        except VirtError as err:
            if is_missing(err):
                return []
            raise
        return sorted(int(e) for e in entries if e.isdigit())

    async def identity(self, domid: int) -> tuple[str, uuidlib.UUID] | None:
        """Return (name, uuid) of ``domid`` from ``/local/domain/<id>``, or None if absent."""
        base = f"/local/domain/{domid}"
        name, vm = await asyncio.gather(self.read(base + "/name"), self.read(base + "/vm"))
        if name is None:
            return None
        return name, parse_uuid(vm) or NULL_UUID

    async def identities(self, ids: Sequence[int]) -> list[Found]:
        """Return the domains of ``ids`` that still have a ``/local/domain`` entry."""
        found = await asyncio.gather(*(self.identity(i) for i in ids))
        return [Found(ident[0], i, ident[1]) for i, ident in zip(ids, found, strict=True)
                if ident is not None]

    async def base(self, ident: Identity) -> str:
        """Return ``/local/domain/<id>`` after checking it is still ``ident``'s."""
        found = await self.identity(ident.id)
        if found is None or not is_same(ident, ident.id, found[1].bytes):
            raise gone(ident, self.uri)
        return f"/local/domain/{ident.id}"

    # -- the calls ---------------------------------------------------------------------------

    async def list_ids(self) -> list[int]:
        """Return the ids under ``/local/domain``."""
        return await self.domids()

    async def list_domains(self) -> list[Found]:
        """Return every domain with a ``/local/domain`` entry."""
        return await self.identities(await self.domids())

    async def lookup_by_name(self, name: str) -> Found:
        """Scan ``/local/domain`` for ``name``."""
        ids = await self.domids()
        names = await asyncio.gather(*(self.name(i) for i in ids))
        for domid, found in zip(ids, names, strict=True):
            if found == name:
                ident = await self.identity(domid)
                if ident is not None and ident[0] == name:
                    return Found(name, domid, ident[1])
        raise no_domain(f"name {name!r}", self.uri)

    async def lookup_by_id(self, domid: int) -> Found | Pass:
        """Read ``/local/domain/<id>``; pass a guest without a ``vm`` entry (its UUID unknown)."""
        ident = await self.identity(domid)
        if ident is None:
            raise no_domain(f"id {domid}", self.uri)
        found = Found(ident[0], domid, ident[1])
        if ident[1] != NULL_UUID or domid == 0:
            return found
        return Pass(found)

    async def lookup_by_uuid(self, wanted: uuidlib.UUID) -> Found:
        """Check ``/vm/<uuid>`` exists, then find the domain whose ``vm`` entry names it."""
        vm_path = f"/vm/{wanted}"
        if wanted != NULL_UUID and await self.read(vm_path + "/uuid") is None and (
                await self.read(vm_path + "/name") is None):
            raise no_domain(f"uuid {wanted}", self.uri)
        ids = await self.domids()
        vms = await asyncio.gather(*(self.read(f"/local/domain/{i}/vm") for i in ids))
        for domid, vm in zip(ids, vms, strict=True):
            if parse_uuid(vm) == wanted or (wanted == NULL_UUID and domid == 0):
                ident = await self.identity(domid)
                if ident is not None:
                    return Found(ident[0], domid, wanted)
        raise no_domain(f"uuid {wanted}", self.uri)

    async def info(self, ident: Identity) -> DomainInfo:
        """Return memory and vCPUs from the layout (state NOSTATE, CPU time 0)."""
        base = await self.base(ident)
        vm = f"/vm/{ident.uuid}"
        target, maxmem, avail, vcpus = await asyncio.gather(
            self.read(base + "/memory/target"), self.read(vm + "/maxmem"),
            self.read(vm + "/vcpu_avail"), self.read(vm + "/vcpus"))
        memory = int_field(target)
        max_mem = max(int_field(maxmem) * 1024, memory)
        online = bin(int_field(avail)).count("1") if avail else int_field(vcpus)
        return DomainInfo(DomainState.NOSTATE, max_mem, memory, online, 0)

    async def max_memory(self, ident: Identity) -> int:
        """Return ``info().max_mem``."""
        return (await self.info(ident)).max_mem

    async def os_type(self, ident: Identity) -> str | Pass:
        """Read ``<vm>/image/ostype``; without a ``vm`` entry pass, "linux" as the fallback."""
        vm = await self.read(f"/local/domain/{ident.id}/vm")
        if vm is None:
            await self.base(ident)  # NO_DOMAIN if it has gone
            return Pass("linux")
        found = parse_uuid(vm)
        if found is not None and not is_same(ident, ident.id, found.bytes):
            raise gone(ident, self.uri)  # the id now belongs to another domain
        return await self.read(vm + "/image/ostype") or "linux"

    async def shutdown(self, ident: Identity, reason: str) -> None:
        """Write ``reason`` to ``control/shutdown``."""
        base = await self.base(ident)
        with gone_if_missing(ident, self.uri):
            await self.xs.write(base + "/control/shutdown", reason)

    async def set_memory(self, ident: Identity, kib: int) -> None:
        """Write ``kib`` to ``memory/target``."""
        base = await self.base(ident)
        with gone_if_missing(ident, self.uri):
            await self.xs.write(base + "/memory/target", str(kib))

