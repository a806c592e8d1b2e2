"""Domain lifecycle events: what changed on a node, as an async iterator.

``async for event in aiovirt.events.domain_events(conn):`` (or ``conn.events()``) yields a
:class:`DomainEvent` for each change of a domain: it started, stopped (and why, when the node
says), was suspended or resumed, or its memory or vCPU count changed.

Where the events come from:

* xenstore watches on ``@introduceDomain`` and ``@releaseDomain``, which xenstored fires when a
  domain appears and when one shuts down, crashes or goes away. They carry no domain id, so each
  firing triggers a rescan of the domain list, diffed against the last one (libvirt 0.5.0 did
  the same). A third watch on ``/local/domain`` sees shutdown requests (``control/shutdown``) and
  balloon targets (``memory/target``) as they are written.
* the domain list itself, read from the hypervisor (one coalesced hypercall for every domain) or,
  without one, from the connection's ``info()``, every ``interval`` seconds and after each watch
  firing. Pauses, unpauses and memory changes fire no watch, so they are found by this poll:
  within one interval.

One source runs per connection, however many consumers iterate: each consumer has its own
bounded queue, so a consumer that stops reading loses its own events (and is told so by an
:attr:`EventKind.OVERFLOW` event) without slowing the others. The source starts with the first
consumer and stops, releasing its watches and its xenstore connection, when the last consumer
leaves its loop. If the xenstore connection drops, the source reconnects, registers its watches
again and rescans, so what changed in the meantime is reported then.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid as uuidlib
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord
from aiovirt.protocol.states import (
    DOMINF_SHUTDOWN,
    DOMINF_SHUTDOWN_MASK,
    DOMINF_SHUTDOWN_SHIFT,
    DomainState,
    ShutdownReason,
    state_from_flags,
)

if TYPE_CHECKING:
    from aiovirt.connection import Connection
    from aiovirt.domain import Domain

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DomainEvent",
    "EventKind",
    "EventStream",
    "StopReason",
    "close_event_sources",
    "domain_events",
]

DEFAULT_QUEUE_SIZE = 4096
# How long a new domain may stay paused before the pause is reported: xend builds domains
# paused, then unpauses them once their devices are up.
_CREATION_GRACE = 1.0
# libvirt 0.5.0 retried a domain whose name was not in the store yet 20 times, 100 ms apart.
_NAME_RETRIES = 20
_RECHECK_DELAY = 0.1
# How many stopped UUIDs are remembered to tell a restore or restart from a first boot.
_STOPPED_MEMORY = 65536
_RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)


class EventKind(enum.Enum):
    """What happened to a domain."""

    STARTED = "started"
    """The domain appeared on the node (detail: ``booted``, or ``restored`` when the stream saw
    it saved)."""
    STOPPED = "stopped"
    """The domain stopped running (detail: a :class:`StopReason` value)."""
    SUSPENDED = "suspended"
    """The domain was paused."""
    RESUMED = "resumed"
    """The domain was unpaused."""
    MEMORY_CHANGED = "memory-changed"
    """The domain's current or maximum memory changed (detail: ``memory=KiB max=KiB``)."""
    VCPUS_CHANGED = "vcpus-changed"
    """The number of online vCPUs changed (detail: ``vcpus=N``)."""
    OVERFLOW = "overflow"
    """This consumer fell behind and events were dropped for it (detail: how many). The
    consumer should re-read what it needs (``conn.list_domains()``); ``domain`` is None."""


class StopReason(enum.StrEnum):
    """Why a domain stopped, as far as the node tells (the detail of a STOPPED event)."""

    SHUTDOWN = "shutdown"
    """The guest shut itself down, or did so when asked (``poweroff``/``halt``)."""
    DESTROYED = "destroyed"
    """The domain went away with no shutdown seen: destroyed."""
    CRASHED = "crashed"
    """The guest crashed (shutdown code ``crash`` or ``watchdog``)."""
    SAVED = "saved"
    """The guest suspended itself for a save and was then torn down."""
    REBOOTED = "rebooted"
    """The guest shut down to reboot; its successor arrives as a new STARTED domain."""


class DomainEvent(NamedTuple):
    """One change of one domain: ``(domain, kind, detail, timestamp)``.

    ``domain`` is the :class:`~aiovirt.domain.Domain` (None for OVERFLOW); after STOPPED its
    cached name, id and UUID stay readable. ``timestamp`` is ``time.time()`` when the change was
    detected.
    """

    domain: Domain | None
    kind: EventKind
    detail: str
    timestamp: float


# --- what the node looks like at one instant --------------------------------------------------

class _Seen(NamedTuple):
    """One domain in one scan: its state and the numbers whose changes are events."""

    domid: int
    uuid: uuidlib.UUID | None
    state: DomainState
    shutdown_code: int | None  # Xen's shutdown code if the domain has shut down
    memory: int  # KiB
    max_mem: int  # KiB
    vcpus: int


def _seen_from_record(rec: DomainInfoRecord) -> _Seen:
    code = None
    if rec.flags & DOMINF_SHUTDOWN:
        code = (rec.flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
    return _Seen(rec.domid, uuidlib.UUID(bytes=bytes(rec.handle)), state_from_flags(rec.flags),
                 code, rec.tot_pages * PAGE_KIB, rec.max_pages * PAGE_KIB, rec.nr_online_vcpus)


_STOP_FROM_CODE = {
    ShutdownReason.POWEROFF: StopReason.SHUTDOWN,
    ShutdownReason.REBOOT: StopReason.REBOOTED,
    ShutdownReason.SUSPEND: StopReason.SAVED,
    ShutdownReason.CRASH: StopReason.CRASHED,
    ShutdownReason.WATCHDOG: StopReason.CRASHED,
}
# Values xend writes to control/shutdown (xenstore-layout.md section 8.1).
_STOP_FROM_REQUEST = {
    "poweroff": StopReason.SHUTDOWN,
    "halt": StopReason.SHUTDOWN,
    "reboot": StopReason.REBOOTED,
    "suspend": StopReason.SAVED,
    "crash": StopReason.CRASHED,
}
# A domain that shut down for these reasons stays dead: report it at once. Suspend and reboot
# are reported when the domain goes, because its save image (or successor) is being made.
_FINAL_REASONS = {StopReason.SHUTDOWN, StopReason.CRASHED}


def _stop_reason(code: int) -> StopReason:
    try:
        return _STOP_FROM_CODE[ShutdownReason(code)]
    except (ValueError, KeyError):
        return StopReason.SHUTDOWN
_ACTIVE = {DomainState.RUNNING, DomainState.BLOCKED, DomainState.NOSTATE}


@dataclass
class _Tracked:
    """What the source remembers of a domain between scans."""

    domain: Domain
    seen: _Seen
    stopped: bool = False  # a STOPPED event was already reported for this run
    request: str | None = None  # last control/shutdown value seen in the store
    paused_reported: bool = False  # consumers were told it is paused
    creating_until: float | None = None  # monotonic end of the creation grace


# --- consumers ------------------------------------------------------------------------------------

class EventStream:
    """One consumer's view of a connection's events: an async iterator and context manager.

    Leaving ``async for`` (or ``async with``), or dropping the stream, unsubscribes; the shared
    source stops with its last consumer.
    """

    def __init__(self, source: _EventSource, queue_size: int, interval: float) -> None:
        self._source: _EventSource | None = None
        if queue_size < 1:
            raise VirtError(ErrorNumber.INVALID_ARG,
                            info=f"queue_size must be at least 1, not {queue_size}")
        self._source = source
        self._queue: deque[DomainEvent] = deque()
        self._queue_size = queue_size
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._error: BaseException | None = None
        source.subscribe(self, interval)

    # called by the source, on the event loop
    def _put(self, event: DomainEvent) -> None:
        if len(self._queue) >= self._queue_size:
            self._dropped += 1
        else:
            self._flush_overflow_marker()
            if len(self._queue) < self._queue_size:
                self._queue.append(event)
            else:
                self._dropped += 1
        self._wakeup.set()

    def _flush_overflow_marker(self) -> None:
        if self._dropped and len(self._queue) < self._queue_size:
            self._queue.append(DomainEvent(None, EventKind.OVERFLOW,
                                           f"{self._dropped} events dropped", time.time()))
            self._dropped = 0

    def _fail(self, exc: BaseException | None) -> None:
        self._error = exc
        self._source = None
        self._wakeup.set()

    @property
    def dropped(self) -> int:
        """Return how many events were dropped for this consumer and not yet signalled."""
        return self._dropped

    async def ready(self) -> None:
        """Wait until the source watches the node and has taken its first snapshot.

        Actions taken after this returns are reported; what was there before is the baseline.
        """
        if self._source is not None:
            await self._source.ready()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> DomainEvent:
        """Return the next event, waiting for one."""
        while True:
            if not self._queue:
                self._flush_overflow_marker()
            if self._queue:
                return self._queue.popleft()
            if self._source is None:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def get_nowait(self) -> DomainEvent | None:
        """Return the next queued event, or None if there is none."""
        if not self._queue:
            self._flush_overflow_marker()
        return self._queue.popleft() if self._queue else None

    async def aclose(self) -> None:
        """Stop receiving events; the last consumer to leave stops the shared source."""
        source, self._source = self._source, None
        self._wakeup.set()
        if source is not None:
            await source.unsubscribe(self)

    async def __aenter__(self) -> EventStream:
        await self.ready()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __del__(self) -> None:
        source = self._source
        if source is not None:
            self._source = None
            source.unsubscribe_soon(self)


# --- the shared source ----------------------------------------------------------------------------

@dataclass
class _Probe:
    """How the source reads the node: a domain list, names, and the xenstore socket to watch."""

    scan: Callable[[], Awaitable[list[_Seen]]]
    lookup: Callable[[int], Awaitable[Domain]]
    xenstore_path: str | None
    exists: Callable[[str], Awaitable[bool]] | None = None


class _EventSource:
    """The one producer of events for a connection; fans every event out to its consumers."""

    def __init__(self, conn: Connection, probe: _Probe, interval: float) -> None:
        self._conn = conn
        self._probe = probe
        self._intervals: dict[int, float] = {}
        self._default_interval = interval
        # weak: a stream dropped without aclose() (a bare ``break``) must be collectable
        self._consumers: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._tracked: dict[int, _Tracked] = {}
        self._unnamed: dict[int, int] = {}  # domid -> lookups tried
        self._recheck: asyncio.TimerHandle | None = None
        self._requests: dict[int, str] = {}
        self._stopped_uuids: dict[uuidlib.UUID, StopReason] = {}
        self._kick = asyncio.Event()
        self._ready = asyncio.Event()
        self._watch_registered = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._idle = False
        self.scans = 0
        self.watch_firings = 0
        self.reconnects = 0

    @property
    def idle(self) -> bool:
        """Return True when no scan is running or due (all changes seen so far are reported)."""
        return self._idle and not self._kick.is_set()

    @property
    def interval(self) -> float:
        """Return the poll interval: the shortest any current consumer asked for."""
        return min(self._intervals.values(), default=self._default_interval)

    def subscribe(self, stream: EventStream, interval: float | None = None) -> None:
        """Add a consumer; the first one starts the source's tasks."""
        self._consumers.add(stream)
        self._intervals[id(stream)] = interval if interval is not None else self._default_interval
        if not self._tasks and not self._closing:
            self._start()

    async def unsubscribe(self, stream: EventStream) -> None:
        """Remove a consumer; after the last one, stop the tasks and release the watches."""
        self._detach(stream)
        if not self._consumers:
            await self.close()

    def unsubscribe_soon(self, stream: EventStream) -> None:
        """Remove a consumer that was dropped without being closed."""
        self._detach(stream)
        if not self._consumers and self._tasks:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # collected outside the loop (e.g. at interpreter exit)
                for task in self._tasks:
                    with contextlib.suppress(RuntimeError):  # that loop is closed already
                        task.get_loop().call_soon_threadsafe(task.cancel)
                return
            self._closer = loop.create_task(self.close())

    def _detach(self, stream: EventStream) -> None:
        self._consumers.discard(stream)
        self._intervals.pop(id(stream), None)

    def _start(self) -> None:
        self._ready.clear()
        self._tasks = [asyncio.create_task(self._scan_loop(), name="aiovirt-events-scan")]
        if self._probe.xenstore_path is not None:
            self._tasks.append(asyncio.create_task(self._watch_loop(),
                                                   name="aiovirt-events-watch"))
        else:
            self._watch_registered.set()

    async def ready(self) -> None:
        """Wait until the watches are registered and the baseline snapshot is taken."""
        if self._failure is not None:
            raise self._failure
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait([ready, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not self._ready.is_set():
            if self._failure is not None:
                raise self._failure
            raise VirtError(ErrorNumber.OPERATION_FAILED, info="the event source stopped")

    async def close(self) -> None:
        """Stop the tasks (releasing the watches) and end every consumer's iteration."""
        if self._closing:
            return
        self._closing = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._end(self._failure)

    # -- producing ------------------------------------------------------------------------------

    def _emit(self, domain: Domain | None, kind: EventKind, detail: str) -> None:
        event = DomainEvent(domain, kind, detail, time.time())
        for stream in self._consumers:
            stream._put(event)

    async def _scan_loop(self) -> None:
        try:
            await self._watch_registered.wait()
            await self._baseline()
            self._ready.set()
            loop = asyncio.get_running_loop()
            # Polls run at a fixed rate (a scan's own time does not stretch the period), so a
            # polled change is reported at most one interval plus one scan after it happened.
            # A kick (a watch fired) scans at once without moving the next poll.
            deadline = loop.time() + self.interval
            while True:
                self._idle = True
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(deadline):
                            await self._kick.wait()
                finally:
                    self._idle = False
                now = loop.time()
                if now >= deadline:
                    deadline += self.interval
                    if deadline <= now:  # a slow scan left us behind: start the beat afresh
                        deadline = now + self.interval
                self._kick.clear()
                try:
                    await self._scan()
                except VirtError as err:
                    if getattr(self._conn, "closed", False):
                        log.debug("event source: connection closed; ending the streams")
                        self._stop_from_inside(None)
                        return
                    log.warning("event scan failed, retrying in %.2fs: %s", self.interval, err)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failure = exc
            log.error("event source for %r stopped: %s", self._conn, exc)
            self._stop_from_inside(exc)

    def _stop_from_inside(self, exc: BaseException | None) -> None:
        """Stop from one of the source's own tasks: cancel the others, end the streams."""
        self._closing = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        """End every consumer's iteration (raising ``exc`` in it, if given) and forget them."""
        for stream in list(self._consumers):
            stream._fail(exc)
        self._consumers.clear()
        self._intervals.clear()
        if _SOURCES.get(self._conn) is self:
            del _SOURCES[self._conn]

    async def _baseline(self) -> None:
        for seen in await self._probe.scan():
            domain = await self._lookup_quietly(seen.domid)
            if domain is None:
                continue
            # What is already true when watching starts is the baseline, not news: a domain
            # paused or shut down before the stream began is not reported as it.
            self._tracked[seen.domid] = _Tracked(
                domain, seen, stopped=seen.shutdown_code is not None,
                paused_reported=seen.state is DomainState.PAUSED)
        self.scans += 1

    async def _lookup_quietly(self, domid: int) -> Domain | None:
        try:
            return await self._probe.lookup(domid)
        except VirtError as err:
            if err.code != ErrorNumber.NO_DOMAIN:
                log.debug("event source: lookup of domain %d failed: %s", domid, err)
            return None

    async def _scan(self) -> None:
        now = time.monotonic()
        current = {seen.domid: seen for seen in await self._probe.scan()}
        self.scans += 1
        for domid in [d for d in self._tracked if d not in current]:
            await self._vanished(domid, self._tracked.pop(domid), current)
        for domid in [d for d in self._unnamed if d not in current]:
            del self._unnamed[domid]
        for domid in [d for d in self._requests if d not in current]:
            del self._requests[domid]
        recheck = False
        for domid, seen in current.items():
            tracked = self._tracked.get(domid)
            if tracked is not None and tracked.seen.uuid != seen.uuid:
                # the id was reused between two scans: the old domain went, a new one came
                await self._vanished(domid, self._tracked.pop(domid), current)
                tracked = None
            if tracked is None:
                recheck |= await self._appeared(domid, seen, now)
            else:
                recheck |= self._changed(tracked, seen, now)
        if recheck:
            self._kick_later(_RECHECK_DELAY)

    def _kick_later(self, delay: float) -> None:
        if self._recheck is None or self._recheck.cancelled():
            self._recheck = asyncio.get_running_loop().call_later(delay, self._rekick)

    def _rekick(self) -> None:
        self._recheck = None
        self._kick.set()

    async def _appeared(self, domid: int, seen: _Seen, now: float) -> bool:
        """Report a new domain once it has a name; return True to look again soon."""
        domain = await self._lookup_quietly(domid)
        if domain is None:
            attempts = self._unnamed.get(domid, 0) + 1
            if attempts >= _NAME_RETRIES:
                log.warning("domain %d has no name in the store; not reported", domid)
                self._unnamed[domid] = -(10**9)  # give up until it goes away
                return False
            self._unnamed[domid] = attempts
            return attempts > 0
        self._unnamed.pop(domid, None)
        if seen.shutdown_code is not None and seen.state is not DomainState.CRASHED:
            # it came and shut down between two scans: it never ran as far as we can tell
            tracked = _Tracked(domain, seen, stopped=True)
            self._tracked[domid] = tracked
            return False
        detail = "booted"
        if seen.uuid is not None:
            before = self._stopped_uuids.pop(seen.uuid, None)
            if before is StopReason.SAVED:
                detail = "restored"
            elif before in (StopReason.REBOOTED, StopReason.CRASHED):
                detail = "restarted"
        tracked = _Tracked(domain, seen, request=self._requests.get(domid))
        self._tracked[domid] = tracked
        self._emit(domain, EventKind.STARTED, detail)
        if seen.state is DomainState.CRASHED:
            self._stopped(tracked, StopReason.CRASHED)
        elif seen.state is DomainState.PAUSED:
            # xend builds (and restores) domains paused and unpauses them when their devices
            # are up: a pause is only news if it lasts
            tracked.creating_until = now + _CREATION_GRACE
            return True
        return False

    def _changed(self, tracked: _Tracked, seen: _Seen, now: float) -> bool:
        """Report what changed since the last scan; return True to look again soon."""
        old, tracked.seen = tracked.seen, seen
        domain = tracked.domain
        if tracked.stopped:
            return False
        if seen.shutdown_code is not None:
            reason = _stop_reason(seen.shutdown_code)
            if reason in _FINAL_REASONS:
                self._stopped(tracked, reason)
            return False
        if seen.state is DomainState.SHUTDOWN:  # dying: its STOPPED comes when it is gone
            return False
        recheck = False
        if seen.state is DomainState.PAUSED:
            if not tracked.paused_reported:
                if tracked.creating_until is not None and now < tracked.creating_until:
                    recheck = True
                else:
                    tracked.creating_until = None
                    tracked.paused_reported = True
                    self._emit(domain, EventKind.SUSPENDED, "paused")
        elif seen.state in _ACTIVE:
            tracked.creating_until = None
            if tracked.paused_reported:
                tracked.paused_reported = False
                self._emit(domain, EventKind.RESUMED, "unpaused")
        if (old.memory, old.max_mem) != (seen.memory, seen.max_mem):
            self._emit(domain, EventKind.MEMORY_CHANGED,
                       f"memory={seen.memory} max={seen.max_mem}")
        if old.vcpus != seen.vcpus:
            self._emit(domain, EventKind.VCPUS_CHANGED, f"vcpus={seen.vcpus}")
        return recheck

    async def _vanished(self, domid: int, tracked: _Tracked, current: dict[int, _Seen]) -> None:
        if tracked.stopped:
            return
        code = tracked.seen.shutdown_code
        request = self._requests.get(domid) or tracked.request
        if code is not None:
            reason = _stop_reason(code)
        elif request is not None and request in _STOP_FROM_REQUEST:
            reason = _STOP_FROM_REQUEST[request]
        elif await self._vm_record_kept(tracked.seen.uuid, current):
            # xend (3.0.3) removes /vm/<uuid> when it destroys a domain but keeps it after a
            # save: the only trace a save leaves when the suspend was too short to be seen
            reason = StopReason.SAVED
        else:
            reason = StopReason.DESTROYED
        self._stopped(tracked, reason)

    async def _vm_record_kept(self, uuid: uuidlib.UUID | None,
                              current: dict[int, _Seen]) -> bool:
        if uuid is None or uuid.int == 0 or self._probe.exists is None:
            return False
        if any(seen.uuid == uuid for seen in current.values()):
            return False  # restarted under a new id, not saved
        try:
            return await self._probe.exists(f"/vm/{uuid}/uuid")
        except VirtError as err:
            log.debug("event source: cannot check /vm/%s: %s", uuid, err)
            return False

    def _stopped(self, tracked: _Tracked, reason: StopReason) -> None:
        tracked.stopped = True
        if tracked.seen.uuid is not None:
            self._stopped_uuids[tracked.seen.uuid] = reason
            while len(self._stopped_uuids) > _STOPPED_MEMORY:
                del self._stopped_uuids[next(iter(self._stopped_uuids))]
        self._emit(tracked.domain, EventKind.STOPPED, reason.value)

    # -- watching -----------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        from aiovirt import xenstore

        path = self._probe.xenstore_path
        assert path is not None
        attempt = 0
        first = True
        while True:
            try:
                async with xenstore.connect(path, read_only=True) as xs:
                    async with (
                        xs.watch("@introduceDomain", "aiovirt-introduce") as introduced,
                        xs.watch("@releaseDomain", "aiovirt-release") as released,
                        xs.watch("/local/domain", "aiovirt-store") as store,
                    ):
                        attempt = 0
                        if not first:
                            self.reconnects += 1
                            log.info("xenstore at %s is back; resynchronising events", path)
                        first = False
                        self._watch_registered.set()
                        self._kick.set()
                        await self._pump(xs, introduced, released, store)
            except asyncio.CancelledError:
                raise
            except (VirtError, OSError, EOFError) as exc:
                if first:  # never watched: the stream cannot start
                    self._failure = exc
                    log.error("event source for %r cannot watch %s: %s", self._conn, path, exc)
                    self._stop_from_inside(exc)
                    return
                if getattr(self._conn, "closed", False):
                    self._stop_from_inside(None)
                    return
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning("xenstore watch connection to %s lost (%s); reconnecting in %.2fs",
                            path, exc, delay)
                await asyncio.sleep(delay)

    async def _pump(self, xs: Any, *iterators: AsyncIterator[Any]) -> None:
        """Merge the watch iterators; any firing kicks a rescan."""
        async def drain(it: AsyncIterator[Any]) -> None:
            async for event in it:
                self.watch_firings += 1
                await self._watched(xs, str(event.path))

        tasks = [asyncio.create_task(drain(it)) for it in iterators]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise EOFError("a xenstore watch ended")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watched(self, xs: Any, path: str) -> None:
        if path.startswith("@"):
            self._kick.set()
            return
        parts = path.split("/")
        # /local/domain/<id>/control/shutdown or /local/domain/<id>/memory/target
        if len(parts) < 6 or not parts[3].isdigit():
            return
        domid = int(parts[3])
        leaf = "/".join(parts[4:])
        if leaf == "control/shutdown":
            try:
                value = (await xs.read(path)).decode(errors="replace").strip()
            except VirtError:
                return  # removed (the domain is going): the release watch follows
            if value:
                self._requests[domid] = value
                tracked = self._tracked.get(domid)
                if tracked is not None:
                    tracked.request = value
        elif leaf == "memory/target":
            self._kick.set()


_SOURCES: weakref.WeakKeyDictionary[Any, _EventSource] = weakref.WeakKeyDictionary()


_REASON_CODES = {r.name.lower(): int(r) for r in ShutdownReason}


def _probe_for(conn: Connection) -> _Probe:
    """Return how to read ``conn``'s node: the hypervisor's list if it has one, else xend's."""
    hv = conn.hypervisor
    xend = conn.xend

    async def lookup(domid: int) -> Domain:
        return await conn.lookup_by_id(domid)

    xs = conn.xenstore
    exists = xs.exists if xs is not None else None

    if hv is not None:
        async def scan_hypervisor() -> list[_Seen]:
            return [_seen_from_record(rec) for rec in await hv.list_domains()]

        return _Probe(scan_hypervisor, lookup, conn.xenstore_path, exists)
    if xend is not None:
        from aiovirt.routing.xend import info_from_xend, read_domain_sxpr

        async def scan_xend() -> list[_Seen]:
            seen = []
            for sx in await xend.list_domains_detail():
                rec = read_domain_sxpr(sx)
                if rec.domid is None:
                    continue
                info = info_from_xend(rec)
                code = None
                if info.state in (DomainState.SHUTOFF, DomainState.CRASHED):
                    reason = rec.fields.get("shutdown_reason", "poweroff")
                    code = _REASON_CODES.get(reason, int(ShutdownReason.POWEROFF))
                    if info.state is DomainState.CRASHED:
                        code = int(ShutdownReason.CRASH)
                seen.append(_Seen(rec.domid, rec.uuid, info.state, code, info.memory,
                                  info.max_mem, info.nr_virt_cpu))
            return seen

        return _Probe(scan_xend, lookup, conn.xenstore_path, exists)

    async def scan_store() -> list[_Seen]:
        domains = await conn.list_domains()
        infos = await asyncio.gather(*(d.info() for d in domains), return_exceptions=True)
        return [_Seen(d.id, d.uuid, i.state, None, i.memory, i.max_mem, i.nr_virt_cpu)
                for d, i in zip(domains, infos, strict=True) if not isinstance(i, BaseException)]

    return _Probe(scan_store, lookup, conn.xenstore_path, exists)


def domain_events(conn: Connection, *, interval: float = 1.0,
                  queue_size: int = DEFAULT_QUEUE_SIZE) -> EventStream:
    """Return a stream of :class:`DomainEvent` for every domain of ``conn``'s node.

    ``interval`` is how often (seconds) the domain list is polled for the changes no watch
    announces (pause, unpause, memory); ``queue_size`` bounds this consumer's backlog, beyond
    which its events are dropped and an :attr:`EventKind.OVERFLOW` event says how many.
    Use as ``async for event in domain_events(conn):`` or ``async with domain_events(conn) as
    events:`` (which returns once the baseline is taken, so later actions are all reported).
    """
    if interval <= 0:
        raise VirtError(ErrorNumber.INVALID_ARG, info=f"interval must be > 0, not {interval}")
    source = _SOURCES.get(conn)
    if source is None or source._closing:
        source = _EventSource(conn, _probe_for(conn), interval)
        _SOURCES[conn] = source
    return EventStream(source, queue_size, interval)


async def close_event_sources(conn: Connection) -> None:
    """Stop ``conn``'s event source, if it has one: its streams end, its watches are released.

    :meth:`Connection.close <aiovirt.connection.Connection.close>` may call this so that open
    streams end at once instead of at their next poll.
    """
    source = _SOURCES.get(conn)
    if source is not None:
        await source.close()
