"""A domain of a connected node: cached identity plus awaitable queries and lifecycle actions.

A :class:`Domain` is a handle: its name, id and UUID are fixed when it is looked up and read
without I/O. Each method asks its :class:`~aiovirt.connection.Connection`, which alone decides
which backend answers. A domain that has gone away (destroyed, saved, or replaced by another
under the same id) raises ``NO_DOMAIN`` naming it; it never answers with another domain's data.
"""

from __future__ import annotations

import functools
import uuid as uuidlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from aiovirt.errors import VirtError, report
from aiovirt.protocol.states import DomainState

if TYPE_CHECKING:
    import os

    from aiovirt.connection import Connection

__all__ = ["Domain", "DomainInfo", "DomainState"]


class DomainInfo(NamedTuple):
    """What ``info()`` returns; unpacks like libvirt's ``[state, maxMem, memory, nrVirtCpu,
    cpuTime]``: memory in KiB, cpu_time in nanoseconds."""

    state: DomainState
    max_mem: int
    memory: int
    nr_virt_cpu: int
    cpu_time: int


_P = ParamSpec("_P")
_R = TypeVar("_R")


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


class Domain:
    """One domain of a node, as returned by the connection's lookups.

    Two handles of the same domain (same connection, UUID and id) compare equal and hash
    alike. Every method is a coroutine and raises :class:`~aiovirt.errors.VirtError`.
    """

    __slots__ = ("__weakref__", "_conn", "_gone", "_handle", "_id", "_name", "_uuid")

    def __init__(self, conn: Connection, name: str, domid: int, uuid: uuidlib.UUID) -> None:
        self._conn = conn
        self._name = name
        self._id = domid
        self._uuid = uuid
        self._handle = uuid.bytes  # what the hypervisor calls it (checked on every info())
        self._gone = False

    # -- identity, no I/O ------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The connection this domain was looked up on."""
        return self._conn

    @property
    def name(self) -> str:
        """The domain's name when it was looked up."""
        return self._name

    @property
    def id(self) -> int:
        """The domain's id (its hypervisor domid)."""
        return self._id

    @property
    def uuid(self) -> uuidlib.UUID:
        """The domain's UUID (all zeros for Domain-0)."""
        return self._uuid

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
        # A dashboard's hot path (thousands at once), so one coroutine layer: the connection
        # hands out a request that joins a coalesced batch when it can (hypervisor), and
        # checks and converts its answer; otherwise it answers through its slower routing.
        conn = self._conn
        try:
            request = conn._info_request(self)
            if request is None:
                return await conn._domain_info(self)
            return conn._info_answer(self, await request)
        except VirtError as err:
            await _failed(self, err)
            raise

    async def state(self) -> DomainState:
        """Return the domain's state (``info().state``)."""
        return (await self.info()).state

    @_public
    async def os_type(self) -> str:
        """Return the guest's OS type: ``"linux"`` (paravirtualised) or ``"hvm"``."""
        return await self._conn._domain_os_type(self)

    @_public
    async def max_memory(self) -> int:
        """Return the most memory the domain may have, in KiB."""
        return await self._conn._domain_max_memory(self)

    @_public
    async def xml_desc(self, flags: int = 0) -> str:
        """Return the domain's XML description (the format ``create_linux`` accepts)."""
        return await self._conn._domain_xml_desc(self, flags)

    # -- lifecycle ---------------------------------------------------------------------------

    @_public
    async def suspend(self) -> None:
        """Pause the domain (it keeps its memory but gets no CPU time)."""
        await self._conn._domain_suspend(self)

    @_public
    async def resume(self) -> None:
        """Unpause a suspended domain."""
        await self._conn._domain_resume(self)

    @_public
    async def shutdown(self) -> None:
        """Ask the guest to shut down (it may take a while, or refuse)."""
        await self._conn._domain_shutdown(self, "poweroff")

    @_public
    async def reboot(self) -> None:
        """Ask the guest to reboot."""
        await self._conn._domain_shutdown(self, "reboot")

    @_public
    async def destroy(self) -> None:
        """Stop the domain at once; this handle stays valid, later calls raise NO_DOMAIN."""
        await self._conn._domain_destroy(self)

    @_public
    async def save(self, path: str | os.PathLike[str]) -> None:
        """Save the domain's state to ``path`` (made absolute here); the domain then stops."""
        await self._conn._domain_save(self, path)

    @_public
    async def set_max_memory(self, kib: int) -> None:
        """Set the most memory the domain may have, in KiB."""
        await self._conn._domain_set_max_memory(self, kib)

    @_public
    async def set_memory(self, kib: int) -> None:
        """Set the domain's current memory (balloon target), in KiB."""
        await self._conn._domain_set_memory(self, kib)
