"""The live domain table: every domain of a node in memory, kept current, read with no I/O.

``async with conn.domain_table() as table:`` opens it. The table listens to the connection's
event source: each scan the source makes (every ``interval`` seconds, after a reconnect, and a
quick step on each xenstore watch firing that names a domain coming or going) hands it the
domains as ``(handle, seen)`` rows (:func:`index_rows` keys them by UUID), their CPU times
beside them, and the ids of the domains that may have moved (came, went, or changed in more
than CPU time). The table copies its rows and replaces only those; :func:`diff_rows` turns the
old and the new :class:`Snapshot[H]` into the :class:`TableChange[H]` list. Both are pure
functions of their inputs. An immutable :class:`TableEntry[H]` is made of a row when it is
first read or reported, so keeping 5,000 unchanged domains current costs a copy of a dict per
scan and nothing per domain nobody looks at. So:

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
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    ValuesView,
)
from types import TracebackType
from typing import TYPE_CHECKING, Generic, NamedTuple

from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.events.kinds import H
from aiovirt.protocol.states import DomainState

if TYPE_CHECKING:
    from aiovirt.events.diff import Seen
    from aiovirt.events.source import EventSource, ScanView

__all__ = ["DEFAULT_CHANGES_QUEUE", "ChangeFeed", "ChangeKind", "DomainTable", "Row", "Snapshot",
           "TableChange", "TableEntry", "diff_rows", "entry_of", "index_rows"]

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


Row = tuple[H, "Seen"]
"""One domain of a scan as the table keeps it: ``(handle, seen)``. Its entry is made from it
only when someone reads it (see :func:`entry_of`)."""

_new_entry = tuple.__new__


def entry_of(row: Row[H], cpu_time: int, confirmed_at: float) -> TableEntry[H]:
    """Return the entry of ``row`` with its CPU time, as confirmed at ``confirmed_at``."""
    dom, seen = row
    return _new_entry(TableEntry, (dom, seen[0], dom.name, dom.uuid, seen[2], seen[4], seen[5],
                                   seen[6], cpu_time, confirmed_at))


class Snapshot(NamedTuple, Generic[H]):
    """One scan as the table keeps it: the rows by UUID, the CPU times by domid, and when the
    scan confirmed them."""

    rows: Mapping[uuidlib.UUID, Row[H]]
    cpu: Mapping[int, int]
    at: float

    def entry(self, row: Row[H]) -> TableEntry[H]:
        """Return the entry of ``row``, one of this scan's."""
        return entry_of(row, self.cpu.get(row[1][0], 0), self.at)


def index_rows(known: Sequence[Row[H]]) -> dict[uuidlib.UUID, Row[H]]:
    """Return one scan's ``(handle, seen)`` pairs keyed by the handle's UUID, in scan order.

    Two domains with one UUID (the dying one and its successor) are one row: the live one,
    else the newer id.
    """
    rows = {row[0].uuid: row for row in known}
    if len(rows) == len(known):
        return rows
    rows = {}
    for row in known:  # the careful way
        uuid = row[0].uuid
        other = rows.get(uuid)
        if other is None or _preferred(row[1], other[1]):
            rows[uuid] = row
    return rows


def _preferred(seen: Seen, other: Seen) -> bool:
    live, other_live = seen[2] not in _GONE_STATES, other[2] not in _GONE_STATES
    if live != other_live:
        return live
    return seen[0] > other[0]


def diff_rows(old_scan: Snapshot[H], new_scan: Snapshot[H], *,
              touched: Sequence[uuidlib.UUID] | None = None,
              old_entries: Mapping[uuidlib.UUID, TableEntry[H]] | None = None,
              new_entries: dict[uuidlib.UUID, TableEntry[H]] | None = None,
              ) -> list[TableChange[H]]:
    """Return the changes from the rows of ``old_scan`` to those of ``new_scan``: removals
    first, then additions and updates in the new rows' order. cpu_time and confirmed_at alone
    are not a change.

    ``touched``, when given, holds every UUID whose row is not the very row of the old scan
    (the new rows are the old but for those): only they are looked at, with the same result as
    comparing all. ``old_entries`` are entries already made of the old scan (reused as the
    changes' ``previous``); the entries made of the new one for the changes are stored into
    ``new_entries``.
    """
    old, new = old_scan.rows, new_scan.rows
    changes: list[TableChange[H]] = []
    added = 0
    get = old.get
    if touched is not None:
        touched = list(dict.fromkeys(touched))
        candidates: Iterable[tuple[uuidlib.UUID, Row[H]]] = [
            (uuid, new[uuid]) for uuid in touched if uuid in new]
    else:
        candidates = new.items()
    for uuid, row in candidates:
        before = get(uuid)
        if before is None:
            changes.append(TableChange(ChangeKind.ADDED, _made(uuid, row, new_scan, new_entries)))
            added += 1
            continue
        was, seen = before[1], row[1]
        if (before[0] is row[0] and was[0] == seen[0] and was[2] is seen[2]
                and was[4] == seen[4] and was[5] == seen[5] and was[6] == seen[6]):
            continue
        previous = _made(uuid, before, old_scan, None, old_entries)
        changes.append(_updated(previous, _made(uuid, row, new_scan, new_entries)))
    if len(new) - added != len(old):  # some of the old rows are not in the new scan
        gone = [(uuid, old[uuid]) for uuid in touched if uuid in old and uuid not in new
                ] if touched is not None else [
                (uuid, row) for uuid, row in old.items() if uuid not in new]
        changes[:0] = [TableChange(ChangeKind.REMOVED,
                                   _made(uuid, row, old_scan, None, old_entries))
                       for uuid, row in gone]
    return changes


def _made(uuid: uuidlib.UUID, row: Row[H], scan: Snapshot[H],
          store: dict[uuidlib.UUID, TableEntry[H]] | None,
          made: Mapping[uuidlib.UUID, TableEntry[H]] | None = None) -> TableEntry[H]:
    entry = made.get(uuid) if made is not None else None
    if entry is None:
        entry = scan.entry(row)
        if store is not None:
            store[uuid] = entry
    return entry


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
        self.snapshot: dict[uuidlib.UUID, TableEntry[H]] = dict(table._all_entries())
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
        # The last scan (its rows, CPU times and time), and the entries made of its rows so far:
        # an entry is made when it is first read (or reported), so a scan of thousands of
        # domains nobody reads costs no entry at all. Each scan replaces both; neither is
        # changed in place after, but for entries added to the second.
        self._scan: Snapshot[H] = Snapshot({}, {}, 0.0)
        self._made: dict[uuidlib.UUID, TableEntry[H]] = {}  # of some of _scan's rows
        self._shared = False  # some domains of the last full scan shared a UUID
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

    @property
    def confirmed_at(self) -> float:
        """``time.time()`` of the last scan applied: every entry is at least this fresh."""
        return self._scan.at

    # -- reads, no I/O --------------------------------------------------------------------------

    def __getitem__(self, uuid: uuidlib.UUID) -> TableEntry[H]:
        entry = self.get(uuid)
        if entry is None:
            raise KeyError(uuid)
        return entry

    def get(self, uuid: uuidlib.UUID) -> TableEntry[H] | None:
        """Return the entry of ``uuid``, or None."""
        entry = self._made.get(uuid)
        if entry is None:
            row = self._scan.rows.get(uuid)
            if row is None:
                return None
            entry = self._made[uuid] = self._scan.entry(row)
        return entry

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._scan.rows

    def by_name(self, name: str) -> TableEntry[H] | None:
        """Return the entry of the domain named ``name``, or None."""
        uuid = self._by_name.get(name)
        return None if uuid is None else self.get(uuid)

    def by_id(self, domid: int) -> TableEntry[H] | None:
        """Return the entry of the domain whose id is ``domid`` now, or None."""
        uuid = self._by_id.get(domid)
        return None if uuid is None else self.get(uuid)

    def __len__(self) -> int:
        return len(self._scan.rows)

    def __iter__(self) -> Iterator[uuidlib.UUID]:
        return iter(self._scan.rows)

    def values(self) -> ValuesView[TableEntry[H]]:
        """Return a view of every entry."""
        return self._all_entries().values()

    def _all_entries(self) -> dict[uuidlib.UUID, TableEntry[H]]:
        """Return every entry (made now for the rows nobody read yet), in the rows' order."""
        made, scan = self._made, self._scan
        if len(made) != len(scan.rows):  # some rows have no entry yet
            self._made = {uuid: made.get(uuid) or scan.entry(row)
                          for uuid, row in scan.rows.items()}
        return self._made

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

    def _scanned(self, scan: ScanView[H], cpu: Mapping[int, int], confirmed_at: float,
                 moved: Collection[int] | None = None) -> None:
        """Apply one scan (see :class:`~aiovirt.events.source.ScanListener`)."""
        old = self._scan
        changes: list[TableChange[H]] = []
        made: dict[uuidlib.UUID, TableEntry[H]] = {}
        quick = None
        if moved is not None and self._filled and not self._shared:
            quick = self._partial_rows(scan, moved)
        if quick is not None:  # only the rows of the moved domains are looked at
            rows, touched = quick
            if cpu is old.cpu and confirmed_at == old.at:
                made = dict(self._made)  # the other entries stand as they are
                for uuid in touched:
                    made.pop(uuid, None)
            changes = diff_rows(old, Snapshot(rows, cpu, confirmed_at), touched=touched,
                                old_entries=self._made, new_entries=made)
        else:
            known = list(scan.known())
            rows = index_rows(known)
            self._shared = len(rows) != len(known)
            if self._filled:
                changes = diff_rows(old, Snapshot(rows, cpu, confirmed_at),
                                    old_entries=self._made, new_entries=made)
        if not self._filled:
            self._by_name = {row[0].name: uuid for uuid, row in rows.items()}
            self._by_id = {row[1][0]: uuid for uuid, row in rows.items()}
        elif changes:
            self._reindex(rows, changes)
        self._scan, self._made = Snapshot(rows, cpu, confirmed_at), made
        self._filled = True
        self.refreshes += 1
        if changes:
            for feed in list(self._feeds):
                feed._put(changes)
        updated, self._updated = self._updated, asyncio.Event()
        updated.set()

    def _partial_rows(self, scan: ScanView[H], moved: Collection[int],
                      ) -> tuple[dict[uuidlib.UUID, Row[H]], list[uuidlib.UUID]] | None:
        """Return the rows after a scan in which only the domains ``moved`` may have changed
        (but for their CPU time), and the UUIDs whose row was replaced or removed; None if a
        moved domain shares its UUID with another (the careful way, :func:`index_rows`,
        decides which is the row)."""
        rows = dict(self._scan.rows)
        touched: list[uuidlib.UUID] = []
        by_id = self._by_id
        for domid in moved:
            uuid = by_id.get(domid)
            if uuid is not None and (row := rows.get(uuid)) is not None and row[1][0] == domid:
                del rows[uuid]
                touched.append(uuid)
        for domid in sorted(moved):
            row = scan.row(domid)
            if row is None:
                continue
            uuid = row[0].uuid
            if uuid in rows:
                return None
            rows[uuid] = row
            touched.append(uuid)
        return rows, touched

    def _reindex(self, rows: Mapping[uuidlib.UUID, Row[H]], changes: list[TableChange[H]],
                 ) -> None:
        """Bring the name and id indexes up to ``rows`` after ``changes``."""
        by_name, by_id = self._by_name, self._by_id
        for change in changes:  # first forget what went or moved away ...
            old = change.entry if change.kind is ChangeKind.REMOVED else change.previous
            if old is None or (change.kind is ChangeKind.UPDATED
                               and not change.fields & {"id", "name"}):
                continue
            if by_name.get(old.name) == old.uuid:
                del by_name[old.name]
            if by_id.get(old.id) == old.uuid:
                del by_id[old.id]
        for change in changes:  # ... then learn what came or moved there
            entry = change.entry
            if change.kind is ChangeKind.REMOVED or entry is None:
                continue
            other = by_name.get(entry.name)
            if other is not None and other != entry.uuid and other in rows:
                # two domains of one name (a dying one and its successor): as a rebuild does
                self._by_name = {row[0].name: uuid for uuid, row in rows.items()}
            else:
                by_name[entry.name] = entry.uuid
            by_id[entry.id] = entry.uuid

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
