"""The live domain table: every domain of a node in memory, kept current, read with no I/O.

``async with conn.domain_table() as table:`` opens it. The table listens to the connection's
event source: each scan the source makes (on every xenstore watch firing, after a reconnect,
and every ``interval`` seconds) hands it the whole domain list, from which the table builds new
immutable :class:`TableEntry[H]` values and the :class:`TableChange[H]` list between the old and the
new (both pure functions of their inputs, :func:`build_entries` and :func:`diff_entries`). So:

* the first fill and the changes are one stream: the table starts from a scan the source made
  after its watches were registered, and every later scan is diffed against the table as it is;
* entries are keyed by UUID: a domain restarted or restored under a new id is the same entry
  with the new id, and an id reused by another domain is another entry;
* after a xenstore reconnect the source rescans, so the table is reconciled against a fresh
  bulk listing and what changed meanwhile is reported once.
"""

from __future__ import annotations

import asyncio
import enum
import uuid as uuidlib
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, ValuesView
from types import TracebackType
from typing import TYPE_CHECKING, Generic, NamedTuple

from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.events.kinds import H
from aiovirt.protocol.states import DomainState

if TYPE_CHECKING:
    from aiovirt.events.diff import Seen
    from aiovirt.events.source import EventSource

__all__ = ["DEFAULT_CHANGES_QUEUE", "ChangeFeed", "ChangeKind", "DomainTable", "TableChange",
           "TableEntry", "build_entries", "diff_entries", "refresh_entries"]

DEFAULT_CHANGES_QUEUE = 4096
# The fields whose change is reported; cpu_time and confirmed_at move on every scan.
TRACKED_FIELDS = ("id", "name", "state", "memory", "max_memory", "vcpus")
_GONE_STATES = {DomainState.SHUTOFF, DomainState.CRASHED, DomainState.SHUTDOWN}


class TableEntry(NamedTuple, Generic[H]):
    """One domain as the table last saw it: an immutable snapshot.

    Memory in KiB, ``cpu_time`` in nanoseconds; ``confirmed_at`` is the ``time.time()`` of the
    scan that last confirmed these values.
    """

    domain: H
    id: int
    name: str
    uuid: uuidlib.UUID
    state: DomainState
    memory: int
    max_memory: int
    vcpus: int
    cpu_time: int
    confirmed_at: float


class ChangeKind(enum.Enum):
    """What a :class:`TableChange[H]` says."""

    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"
    OVERFLOW = "overflow"
    """This reader fell behind; the changes it missed were dropped. The table as it is when
    the reader takes this marker is its new starting point: later changes follow it."""


class TableChange(NamedTuple, Generic[H]):
    """One change to the table: ``(kind, entry, previous, fields)``.

    ``entry`` is the new entry (for REMOVED: the last one; None for OVERFLOW), ``previous`` the
    entry it replaced (UPDATED only) and ``fields`` the names of the fields that changed
    (UPDATED only; a subset of id, name, state, memory, max_memory, vcpus).
    """

    kind: ChangeKind
    entry: TableEntry[H] | None
    previous: TableEntry[H] | None = None
    fields: frozenset[str] = frozenset()


_new_entry = tuple.__new__


def build_entries(known: Iterable[tuple[H, Seen]], confirmed_at: float,
                  ) -> dict[uuidlib.UUID, TableEntry[H]]:
    """Return the table's entries for one scan's ``(handle, seen)`` pairs, keyed by UUID.

    Two domains with one UUID (the dying one and its successor) are one entry: the live one,
    else the newer id.
    """
    out: dict[uuidlib.UUID, TableEntry[H]] = {}
    for dom, seen in known:
        uuid = dom.uuid
        entry: TableEntry[H] = _new_entry(TableEntry, (
            dom, seen.domid, dom.name, uuid, seen.state, seen.memory, seen.max_mem,
            seen.vcpus, seen.cpu_time, confirmed_at))
        other = out.get(uuid)
        if other is not None and not _preferred(entry, other):
            continue
        out[uuid] = entry
    return out


def refresh_entries(old: Mapping[uuidlib.UUID, TableEntry[H]],
                    known: Sequence[tuple[H, Seen]], confirmed_at: float,
                    ) -> tuple[dict[uuidlib.UUID, TableEntry[H]], list[TableChange[H]]]:
    """Return ``(entries, changes)``, the same as :func:`build_entries` then
    :func:`diff_entries`, in one pass over a scan of thousands of domains."""
    new: dict[uuidlib.UUID, TableEntry[H]] = {}
    changes: list[TableChange[H]] = []
    added = 0
    get, put = old.get, new.setdefault
    for dom, seen in known:
        uuid = dom.uuid
        state, memory, max_mem, vcpus = seen[2], seen[4], seen[5], seen[6]
        entry: TableEntry[H] = _new_entry(TableEntry, (
            dom, seen[0], dom.name, uuid, state, memory, max_mem, vcpus, seen[7],
            confirmed_at))
        if put(uuid, entry) is not entry:  # two domains with one UUID: the careful way
            new = build_entries(known, confirmed_at)
            return new, diff_entries(old, new)
        before = get(uuid)
        if before is None:
            changes.append(TableChange(ChangeKind.ADDED, entry))
            added += 1
        elif not (before[0] is dom and before[4] is state and before[5] == memory
                  and before[6] == max_mem and before[7] == vcpus):
            changes.append(_updated(before, entry))
    if len(new) - added != len(old):  # some of the old entries are not in the new scan
        changes[:0] = [TableChange(ChangeKind.REMOVED, entry)
                       for uuid, entry in old.items() if uuid not in new]
    return new, changes


def _preferred(entry: TableEntry[H], other: TableEntry[H]) -> bool:
    live, other_live = entry.state not in _GONE_STATES, other.state not in _GONE_STATES
    if live != other_live:
        return live
    return entry.id > other.id


def diff_entries(old: Mapping[uuidlib.UUID, TableEntry[H]],
                 new: Mapping[uuidlib.UUID, TableEntry[H]]) -> list[TableChange[H]]:
    """Return the changes from ``old`` to ``new``: removals first, then additions and updates
    in ``new``'s order. cpu_time and confirmed_at alone are not a change."""
    changes = [TableChange(ChangeKind.REMOVED, entry) for uuid, entry in old.items()
               if uuid not in new]
    for uuid, entry in new.items():
        before = old.get(uuid)
        if before is None:
            changes.append(TableChange(ChangeKind.ADDED, entry))
        elif before[:8] != entry[:8]:  # domain, id, name, uuid, state, memory, max_mem, vcpus
            changes.append(_updated(before, entry))
    return changes


def _updated(before: TableEntry[H], entry: TableEntry[H]) -> TableChange[H]:
    fields = frozenset(name for name in TRACKED_FIELDS
                       if getattr(before, name) != getattr(entry, name))
    return TableChange(ChangeKind.UPDATED, entry, before, fields)


class ChangeFeed(Generic[H]):
    """One reader's changes of a table: ``async for change in feed``, from :attr:`snapshot` on.

    The queue is bounded: when it is full the backlog is dropped and replaced by one OVERFLOW
    change (later changes fold into it until it is read). The reader then takes the table as
    it is as its new starting point, so nothing is reported twice and nothing is missed.
    """

    def __init__(self, table: DomainTable[H], queue_size: int) -> None:
        if not isinstance(queue_size, int) or queue_size < 1:
            raise VirtError(ErrorNumber.INVALID_ARG,
                            info=f"queue_size must be at least 1, not {queue_size!r}")
        self._table: DomainTable[H] | None = table
        self._queue: deque[TableChange[H]] = deque()
        self._size = queue_size
        self._wakeup = asyncio.Event()
        self._error: BaseException | None = None
        self.overflows = 0
        self.snapshot: dict[uuidlib.UUID, TableEntry[H]] = dict(table._entries)
        """The table when this feed started: the first change read follows it."""

    def _put(self, changes: list[TableChange[H]]) -> None:
        queue = self._queue
        for change in changes:
            if queue and queue[0].kind is ChangeKind.OVERFLOW:
                break  # folded into the marker: the reader re-reads the table
            if len(queue) >= self._size:
                queue.clear()
                queue.append(TableChange(ChangeKind.OVERFLOW, None))
                self.overflows += 1
                break
            queue.append(change)
        self._wakeup.set()

    def _end(self, exc: BaseException | None) -> None:
        self._table = None
        self._error = exc
        self._wakeup.set()

    def pending(self) -> int:
        """Return how many changes wait to be read."""
        return len(self._queue)

    def get_nowait(self) -> TableChange[H] | None:
        """Return the next change if one is queued, else None."""
        return self._queue.popleft() if self._queue else None

    def __aiter__(self) -> ChangeFeed[H]:
        return self

    async def __anext__(self) -> TableChange[H]:
        while not self._queue:
            if self._table is None:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def close(self) -> None:
        """Stop receiving changes (also done by leaving ``async with``)."""
        table, self._table = self._table, None
        self._wakeup.set()
        if table is not None:
            table._feeds.discard(self)

    async def __aenter__(self) -> ChangeFeed[H]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class DomainTable(Generic[H]):
    """Every domain of a node, kept current by the connection's event source.

    Open it with ``async with conn.domain_table() as table:``. Reads (``table[uuid]``,
    :meth:`by_name`, :meth:`by_id`, ``len``, iteration over the UUIDs, :meth:`values`) do no
    I/O. :meth:`wait_for` waits for a condition, :meth:`changes` streams every change.
    """

    def __init__(self, source: EventSource[H], *, interval: float = 1.0,
                 queue_size: int = DEFAULT_CHANGES_QUEUE) -> None:
        self._source = source
        self.interval = interval
        self._queue_size = queue_size
        self._entries: dict[uuidlib.UUID, TableEntry[H]] = {}
        # name / id -> UUID, rebuilt only when a domain comes, goes, or changes id or name
        self._by_name: dict[str, uuidlib.UUID] = {}
        self._by_id: dict[int, uuidlib.UUID] = {}
        self._feeds: weakref.WeakSet[ChangeFeed[H]] = weakref.WeakSet()
        self._updated = asyncio.Event()
        self._filled = False
        self._open = False
        self._error: BaseException | None = None
        self.refreshes = 0
        """How many scans the table has applied."""
        self.confirmed_at = 0.0
        """``time.time()`` of the last scan applied: every entry is at least this fresh."""

    # -- reads, no I/O --------------------------------------------------------------------------

    def __getitem__(self, uuid: uuidlib.UUID) -> TableEntry[H]:
        return self._entries[uuid]

    def get(self, uuid: uuidlib.UUID) -> TableEntry[H] | None:
        """Return the entry of ``uuid``, or None."""
        return self._entries.get(uuid)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._entries

    def by_name(self, name: str) -> TableEntry[H] | None:
        """Return the entry of the domain named ``name``, or None."""
        uuid = self._by_name.get(name)
        return None if uuid is None else self._entries.get(uuid)

    def by_id(self, domid: int) -> TableEntry[H] | None:
        """Return the entry of the domain whose id is ``domid`` now, or None."""
        uuid = self._by_id.get(domid)
        return None if uuid is None else self._entries.get(uuid)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[uuidlib.UUID]:
        return iter(self._entries)

    def values(self) -> ValuesView[TableEntry[H]]:
        """Return a view of every entry."""
        return self._entries.values()

    # -- waiting --------------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[DomainTable[H]], bool], *,
                       timeout: float | None = None) -> None:  # noqa: ASYNC109 - the API
        """Return as soon as ``predicate(table)`` is true; it is checked now and after each
        refresh of the table, never by polling. Raises ``OPERATION_TIMEOUT`` after
        ``timeout`` seconds, and ``OPERATION_FAILED`` if the table stops (its connection
        closed, or its source failed)."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    self._check_live()
                    await self._updated.wait()
        except TimeoutError:
            raise VirtError(ErrorNumber.OPERATION_TIMEOUT,
                            info=f"the domain table did not reach the condition in {timeout} s",
                            ) from None

    def changes(self, *, queue_size: int | None = None) -> ChangeFeed[H]:
        """Return a feed of every change from now on; its ``snapshot`` is the table now."""
        self._check_live()
        feed = ChangeFeed(self, self._queue_size if queue_size is None else queue_size)
        self._feeds.add(feed)
        return feed

    def _check_live(self) -> None:
        if not self._open:
            if self._error is not None:
                raise VirtError(ErrorNumber.OPERATION_FAILED,
                                info=f"the domain table stopped: {self._error}") from self._error
            raise VirtError(ErrorNumber.OPERATION_FAILED, info="the domain table is closed")

    # -- fed by the source --------------------------------------------------------------------

    def _scanned(self, known: Sequence[tuple[H, Seen]], confirmed_at: float) -> None:
        entries, changes = refresh_entries(self._entries, known, confirmed_at)
        if not self._filled:
            changes = []  # the first fill is the starting point, not news
        if not self._filled or any(c.kind is not ChangeKind.UPDATED or "id" in c.fields
                                   or "name" in c.fields for c in changes):
            self._by_name = {e.name: e.uuid for e in entries.values()}
            self._by_id = {e.id: e.uuid for e in entries.values()}
        self._entries = entries
        self._filled = True
        self.refreshes += 1
        self.confirmed_at = confirmed_at
        if changes:
            for feed in list(self._feeds):
                feed._put(changes)
        updated, self._updated = self._updated, asyncio.Event()
        updated.set()

    def _fail(self, exc: BaseException | None) -> None:
        self._open = False
        self._error = exc
        for feed in list(self._feeds):
            feed._end(exc)
        self._feeds.clear()
        self._updated.set()

    # -- life cycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> DomainTable[H]:
        self._open = True
        self._source.listen(self)
        try:
            await self._source.ready()
        except BaseException:
            await self.aclose()
            raise
        assert self._filled
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop keeping the table current; its feeds end, its reads stay as they were."""
        was_open, self._open = self._open, False
        for feed in list(self._feeds):
            feed._end(None)
        self._feeds.clear()
        self._updated.set()
        if was_open:
            await self._source.unsubscribe(self)
