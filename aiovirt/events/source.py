"""The event source of one connection: it watches xenstore, scans the node, and fans out.

A :class:`~aiovirt.connection.Connection` creates its :class:`EventSource` on first use and
closes it (cancelling and awaiting its tasks) when it closes. The source watches only while it
has consumers: the first consumer starts a *run* (a xenstore watch connection, a scan task and
a fresh :class:`~aiovirt.events.diff.LifecycleDiff`), the last one to leave stops it.

The watch connection is a :class:`~aiovirt.backends.xenstore.XenStoreClient` with
``reconnect=True``: when xenstored goes away the client dials again and re-registers the
watches itself, and each watch yields an event flagged ``reconnected``. The source answers
such an event (and an ``overflowed`` one) with a rescan, so what changed while nobody watched
is reported then, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

from aiovirt.backends.xenstore import WatchEvent, XenStoreClient
from aiovirt.backends.xenstore import connect as xenstore_connect
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.events.diff import LifecycleDiff, Seen
from aiovirt.events.kinds import DomainEvent, DomainHandle, H
from aiovirt.events.reading import NodeReader

log = logging.getLogger(__name__)

__all__ = ["EventSource", "ScanListener"]

# After a scan that found a domain without a name yet, or inside its creation pause.
_RECHECK_DELAY = 0.1


_HC = TypeVar("_HC", bound=DomainHandle, covariant=True)


class ScanView(Protocol[_HC]):
    """What a scan listener reads of a scan (the source's :class:`LifecycleDiff` is one)."""

    def known(self) -> Iterator[tuple[_HC, Seen]]:
        """Yield ``(handle, seen)`` for every domain of the scan that has a handle."""
        ...

    def row(self, domid: int) -> tuple[_HC, Seen] | None:
        """Return ``(handle, seen)`` of ``domid``, or None."""
        ...


class ScanListener(Protocol):
    """A consumer that wants every scan's full result (the domain table), not only events."""

    interval: float

    def _scanned(self, scan: ScanView[Any], cpu: Mapping[int, int], confirmed_at: float,
                 moved: Collection[int] | None = None) -> None:
        """Take one scan (read it before returning: it changes with the next) and its CPU
        times (domid -> ns; never changed after). ``moved``, if given, holds every id whose
        record may differ from the last scan's (domains that came, went or changed): every
        other domain is as it was, but for its CPU time."""

    def _fail(self, exc: BaseException | None) -> None: ...


class EventConsumer(Protocol):
    """A consumer of events (an :class:`~aiovirt.events.stream.EventStream`)."""

    interval: float

    def _put(self, event: DomainEvent[Any]) -> None: ...

    def _fail(self, exc: BaseException | None) -> None: ...


class Owner(Protocol):
    """What the source needs of the connection that owns it."""

    @property
    def closed(self) -> bool: ...


class _Run(Generic[H]):
    """One period of watching, from the first consumer to the last: its tasks and state."""

    def __init__(self, reader: NodeReader[H]) -> None:
        self.reader = reader
        self.diff: LifecycleDiff[H] = LifecycleDiff()
        self.kick = asyncio.Event()
        self.ready = asyncio.Event()
        self.watching = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.recheck: asyncio.TimerHandle | None = None
        self.failure: BaseException | None = None
        self.idle = False
        self.stopping = False
        self.confirmed_at = 0.0  # time.time() of the last scan
        self.cpu: dict[int, int] = {}  # the CPU times of the last scan (replaced, not changed)
        # Why the next scan is due: True if only domains coming or going (a quick step may
        # do); False once anything asks for a full listing (a reconnect, a poll, a memory
        # target, a release that named no gone domain).
        self.quick = False
        # @releaseDomain firings since the last full scan not yet explained by a domain the
        # quick step saw go or shut down: one left over (a shutdown of a domain whose store
        # entries stay) asks for a full scan. Likewise @introduceDomain firings not explained
        # by a domain the quick step saw come: one left over asks for a listing of the ids.
        # Below zero: the quick step saw the domain before its firing arrived (a credit, which
        # the next full scan clears).
        self.releases = 0
        self.introduces = 0
        # ids the watches named since the last step (/local/domain/<id> made or removed, a new
        # domain's name or first balloon target): the quick step reads these first
        self.named: set[int] = set()
        self.xs: XenStoreClient | None = None  # the watch connection, for the quick step


class EventSource(Generic[H]):
    """The one producer of events for a connection; fans every event out to its consumers.

    ``reader()`` returns how to read the node (the router's choice); ``owner`` is the
    connection, asked only whether it has closed.
    """

    def __init__(self, owner: Owner, reader: Callable[[], NodeReader[H]]) -> None:
        self._conn = owner
        self._reader = reader
        # weak: a stream dropped without aclose() (a bare ``break``) must be collectable
        self._streams: weakref.WeakSet[EventConsumer] = weakref.WeakSet()
        self._listeners: set[ScanListener] = set()
        self._run: _Run[H] | None = None
        self._stoppers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.scans = 0
        self.watch_firings = 0
        self.reconnects = 0
        self.quick_steps = 0
        """How many watch firings were followed without listing the node."""

    # -- what tests and diagnostics read ----------------------------------------------------------

    @property
    def running(self) -> bool:
        """Return True while the source watches the node (it has consumers)."""
        return self._run is not None

    @property
    def watching(self) -> bool:
        """Return True once the current run has taken its baseline."""
        return self._run is not None and self._run.ready.is_set()

    @property
    def idle(self) -> bool:
        """Return True when no scan is running or due (all changes seen so far are reported)."""
        run = self._run
        return run is not None and run.idle and not run.kick.is_set()

    @property
    def interval(self) -> float:
        """Return the poll interval: the shortest any current consumer asked for."""
        consumers: list[Any] = [*self._streams, *self._listeners]
        return min((c.interval for c in consumers), default=1.0)

    # -- consumers ------------------------------------------------------------------------------

    def subscribe(self, consumer: EventConsumer) -> None:
        """Add an event stream; the first consumer starts watching."""
        self._check_open()
        self._streams.add(consumer)
        self._start_if_needed()

    def listen(self, listener: ScanListener) -> None:
        """Add a scan listener (a domain table); it keeps the source watching like a stream."""
        self._check_open()
        self._listeners.add(listener)
        self._start_if_needed()
        run = self._run
        if run is not None and run.ready.is_set():
            # joins a running source: starts from its last scan, and every later scan follows
            listener._scanned(run.diff, run.cpu, run.confirmed_at)

    async def unsubscribe(self, consumer: EventConsumer | ScanListener) -> None:
        """Remove a consumer; after the last one, stop watching and release the watches."""
        self._streams.discard(consumer)  # type: ignore[arg-type]
        self._listeners.discard(consumer)
        if not self._streams and not self._listeners and self._run is not None:
            await self._stop(self._run, None)

    def unsubscribe_soon(self, stream: EventConsumer) -> None:
        """Remove a stream that was dropped without being closed."""
        self._streams.discard(stream)
        run = self._run
        if self._streams or self._listeners or run is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # collected outside the loop (e.g. at interpreter exit)
            for task in run.tasks:
                with contextlib.suppress(RuntimeError):  # that loop is closed already
                    task.get_loop().call_soon_threadsafe(task.cancel)
            return
        stopper = loop.create_task(self._stop(run, None), name="aiovirt-events-stop")
        self._stoppers.add(stopper)
        stopper.add_done_callback(self._stoppers.discard)

    async def ready(self) -> None:
        """Wait until the watches are registered and the baseline snapshot is taken."""
        run = self._run
        if run is None:
            raise VirtError(ErrorNumber.OPERATION_FAILED, info="the event source stopped")
        if run.failure is not None:
            raise run.failure
        ready = asyncio.ensure_future(run.ready.wait())
        try:
            await asyncio.wait([ready, *run.tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if not run.ready.is_set():
            if run.failure is not None:
                raise run.failure
            raise VirtError(ErrorNumber.OPERATION_FAILED, info="the event source stopped")

    async def stop(self) -> None:
        """Stop watching now: every consumer's iteration ends; a new consumer starts again."""
        if self._run is not None:
            await self._stop(self._run, None)
        for stopper in list(self._stoppers):
            with contextlib.suppress(asyncio.CancelledError):
                await stopper

    async def close(self) -> None:
        """Stop watching for good (the connection is closing); harmless twice."""
        self._closed = True
        await self.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise VirtError(ErrorNumber.OPERATION_INVALID,
                            info="the connection is closed; its events have ended")

    # -- runs -------------------------------------------------------------------------------------

    def _start_if_needed(self) -> None:
        if self._run is not None:
            return
        run = _Run(self._reader())
        self._run = run
        run.tasks.append(asyncio.create_task(self._scan_loop(run), name="aiovirt-events-scan"))
        if run.reader.xenstore_path is not None:
            run.tasks.append(asyncio.create_task(self._watch_loop(run),
                                                 name="aiovirt-events-watch"))
        else:
            run.watching.set()

    def _detach(self, run: _Run[H]) -> list[asyncio.Task[None]] | None:
        """Mark ``run`` stopping and no longer the current one; cancel its tasks but the one
        calling, and return those (None if it was stopping already)."""
        if run.stopping:
            return None
        run.stopping = True
        if self._run is run:
            self._run = None
        if run.recheck is not None:
            run.recheck.cancel()
        current = asyncio.current_task()
        others = [task for task in run.tasks if task is not current]
        for task in others:
            task.cancel()
        return others

    async def _stop(self, run: _Run[H], exc: BaseException | None) -> None:
        """Cancel and await ``run``'s tasks, then end the consumers it served."""
        tasks = self._detach(run)
        if tasks is None:
            return
        # The consumers end before the tasks are awaited: one that subscribes while they wind
        # down starts a new run and must not be ended with this one.
        self._end(exc if exc is not None else run.failure)
        await _await_quietly(tasks)

    def _stop_from_inside(self, run: _Run[H], exc: BaseException | None) -> None:
        """Stop from one of the run's own tasks: the other tasks are cancelled, not awaited
        here (the task that called is ending; :meth:`stop` awaits what is left)."""
        others = self._detach(run)
        if others is None:
            return
        if others:
            waiter = asyncio.get_running_loop().create_task(
                _await_quietly(others), name="aiovirt-events-stop")
            self._stoppers.add(waiter)
            waiter.add_done_callback(self._stoppers.discard)
        self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        """End every consumer's iteration (raising ``exc`` in it, if given) and forget them."""
        for stream in list(self._streams):
            stream._fail(exc)
        for listener in list(self._listeners):
            listener._fail(exc)
        self._streams.clear()
        self._listeners.clear()

    # -- producing ------------------------------------------------------------------------------

    async def _scan_loop(self, run: _Run[H]) -> None:
        try:
            await run.watching.wait()
            await self._baseline(run)
            run.ready.set()
            loop = asyncio.get_running_loop()
            # Polls run at a fixed rate (a scan's own time does not stretch the period), so a
            # polled change is reported at most one interval plus one scan after it happened.
            # A kick (a watch fired) scans at once without moving the next poll.
            deadline = loop.time() + self.interval
            while True:
                run.idle = True
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(deadline):
                            await run.kick.wait()
                finally:
                    run.idle = False
                now = loop.time()
                quick, run.quick = run.quick, False
                if now >= deadline:
                    quick = False  # the poll: a full listing, the authority
                    deadline += self.interval
                    if deadline <= now:  # a slow scan left us behind: start the beat afresh
                        deadline = now + self.interval
                run.kick.clear()
                try:
                    if not (quick and await self._quick_scan(run)):
                        await self._scan(run)
                except VirtError as err:
                    if self._conn.closed:
                        log.debug("event source: connection closed; ending the streams")
                        self._stop_from_inside(run, None)
                        return
                    log.warning("event scan failed, retrying in %.2fs: %s", self.interval, err)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            run.failure = exc
            log.error("event source for %r stopped: %s", self._conn, exc)
            self._stop_from_inside(run, exc)

    async def _lookups(self, run: _Run[H], domids: Iterable[int]) -> dict[int, H]:
        ids = list(domids)
        found = await asyncio.gather(*(self._lookup_quietly(run, d) for d in ids))
        return {d: dom for d, dom in zip(ids, found, strict=True) if dom is not None}

    async def _lookup_quietly(self, run: _Run[H], domid: int) -> H | None:
        try:
            return await run.reader.lookup(domid)
        except VirtError as err:
            if err.code != ErrorNumber.NO_DOMAIN:
                log.debug("event source: lookup of domain %d failed: %s", domid, err)
            return None

    async def _baseline(self, run: _Run[H]) -> None:
        confirmed_at = time.time()
        scan = await run.reader.scan()
        run.diff.baseline(scan.seen, await self._lookups(run, [s.domid for s in scan.seen]))
        self.scans += 1
        self._tell_listeners(run, scan.cpu, confirmed_at)

    async def _scan(self, run: _Run[H]) -> None:
        confirmed_at = time.time()  # what the scan reads is at least this fresh
        run.releases = run.introduces = 0  # this listing answers every firing so far
        run.named = set()
        scan = await run.reader.scan()
        self.scans += 1
        await self._judge(run, {seen.domid: seen for seen in scan.seen}, scan.cpu, confirmed_at)

    async def _quick_scan(self, run: _Run[H]) -> bool:
        """Follow domains coming and going without scanning the node: first read the record
        of each id the watches named (and of each domain still settling); if that explains
        not every ``@introduceDomain`` and ``@releaseDomain``, list the ids under
        ``/local/domain`` and read each one that differs from the known ones. Return False,
        having changed nothing, when even that explains not every ``@releaseDomain`` (a
        shutdown, say): the caller then scans the node. What a quick step cannot see (a
        change of a domain whose id stays listed) the next full scan, the authority,
        reconciles."""
        xs = run.xs
        if xs is None or run.reader.probe is None:
            return False
        current = run.diff.seen_by_id()
        settling = run.diff.unsettled()
        named, run.named = run.named, set()
        probed: set[int] = set()
        cpu = dict(run.cpu)
        counted = await self._probe_into(run, current, cpu, named | settling, settling, probed)
        if counted is None:
            return False
        came, went = counted
        if run.introduces > came or run.releases > went:
            try:
                names = await xs.directory("/local/domain")
            except VirtError as err:
                log.debug("event source: quick step cannot list /local/domain: %s", err)
                return False
            listed = {int(n) for n in names if n.isdigit()}
            moved = (listed ^ current.keys()) - probed
            if run.releases > went and not moved:
                return False
            counted = await self._probe_into(run, current, cpu, moved, settling, probed)
            if counted is None:
                return False
            went += counted[1]
            if run.releases > went:
                return False  # some release is not explained: a scan finds why
            came = max(came + counted[0], run.introduces)  # the listing is the last word
        run.introduces -= came
        run.releases -= went
        if not probed:
            return True  # nothing was named, and every firing was explained already
        self.quick_steps += 1
        # the unchanged domains were not read again: the last full scan's time stands
        await self._judge(run, current, cpu, run.confirmed_at, probed)
        return True

    async def _probe_into(self, run: _Run[H], current: dict[int, Seen], cpu: dict[int, int],
                          ids: set[int], settling: set[int], probed: set[int],
                          ) -> tuple[int, int] | None:
        """Read the record of each of ``ids`` not ``probed`` yet into ``current`` (and its CPU
        time into ``cpu``); return how
        many domains came and how many went or shut down (the firings they explain), or None
        if a read failed."""
        probe = run.reader.probe
        assert probe is not None
        wanted = sorted(ids - probed)
        if not wanted:
            return 0, 0

        async def probe_quietly(domid: int) -> tuple[Seen, int] | VirtError | None:
            try:
                return await probe(domid)
            except VirtError as err:
                return err

        found = await asyncio.gather(*(probe_quietly(d) for d in wanted))
        came = went = 0
        for domid, answer in zip(wanted, found, strict=True):
            if isinstance(answer, VirtError):
                log.debug("event source: probe of domain %d failed: %s", domid, answer)
                return None
            probed.add(domid)
            before = current.get(domid)
            if answer is None:
                cpu.pop(domid, None)
                if before is not None:
                    del current[domid]
                    went += 1
                continue
            seen, cpu[domid] = answer
            if before is None:
                came += domid not in settling  # a settling domain was counted when it came
            elif before.uuid != seen.uuid:
                came += 1  # the id went to another domain between two steps
                went += 1
            elif before.shutdown_code is None and seen.shutdown_code is not None:
                went += 1
            current[domid] = seen
        return came, went

    async def _judge(self, run: _Run[H], current: dict[int, Seen], cpu: dict[int, int],
                     confirmed_at: float, only: set[int] | None = None) -> None:
        """Judge a scan and its CPU times (``only``: the ids a quick step read again; the
        other records of ``current`` are the last scan's own)."""
        plan = run.diff.plan(current, only)
        handles = await self._lookups(run, plan.lookups) if plan.lookups else {}
        kept = await self._vm_records_kept(run, plan.vm_checks) if plan.vm_checks else set()
        step = run.diff.apply(current, time.monotonic(), handles, kept, only)
        if step.changes:
            stamp = time.time()  # when the change was detected
            for change in step.changes:
                event = DomainEvent(change.handle, change.kind, change.detail, stamp)
                for stream in self._streams:
                    stream._put(event)
        self._tell_listeners(run, cpu, confirmed_at, step.moved)
        if step.recheck and (run.recheck is None or run.recheck.cancelled()):
            run.recheck = asyncio.get_running_loop().call_later(_RECHECK_DELAY, _rekick, run)

    def _tell_listeners(self, run: _Run[H], cpu: dict[int, int], confirmed_at: float,
                        moved: Collection[int] | None = None) -> None:
        """Record a scan's CPU times and time as the run's last, and hand it to the listeners."""
        run.cpu, run.confirmed_at = cpu, confirmed_at
        for listener in list(self._listeners):
            listener._scanned(run.diff, cpu, confirmed_at, moved)

    async def _vm_records_kept(self, run: _Run[H], uuids: Iterable[Any]) -> set[Any]:
        exists = run.reader.exists
        if exists is None:
            return set()
        wanted = list(uuids)

        async def kept(uuid: Any) -> bool:
            try:
                return await exists(f"/vm/{uuid}/uuid")
            except VirtError as err:
                log.debug("event source: cannot check /vm/%s: %s", uuid, err)
                return False

        answers = await asyncio.gather(*(kept(u) for u in wanted))
        return {u for u, yes in zip(wanted, answers, strict=True) if yes}

    # -- watching -------------------------------------------------------------------------------

    async def _watch_loop(self, run: _Run[H]) -> None:
        path = run.reader.xenstore_path
        assert path is not None
        try:
            xs = await xenstore_connect(path, read_only=True, reconnect=True)
        except (VirtError, OSError) as exc:
            self._cannot_watch(run, path, exc)
            return
        try:
            try:
                async with (
                    xs.watch("@introduceDomain", "aiovirt-introduce") as introduced,
                    xs.watch("@releaseDomain", "aiovirt-release") as released,
                    xs.watch("/local/domain", "aiovirt-store") as store,
                ):
                    run.xs = xs
                    run.watching.set()
                    run.quick = False
                    run.kick.set()
                    await self._pump(run, xs, introduced, released, store)
            except (VirtError, OSError) as exc:
                if not run.watching.is_set():
                    self._cannot_watch(run, path, exc)
                    return
                log.error("event source for %r: the xenstore watches at %s ended: %s",
                          self._conn, path, exc)
                run.failure = exc
                self._stop_from_inside(run, exc)
        finally:
            await xs.close()

    def _cannot_watch(self, run: _Run[H], path: str, exc: BaseException) -> None:
        run.failure = exc
        log.error("event source for %r cannot watch %s: %s", self._conn, path, exc)
        self._stop_from_inside(run, exc)

    async def _pump(self, run: _Run[H], xs: XenStoreClient,
                    *watches: AsyncIterator[WatchEvent]) -> None:
        """Merge the watches: a firing kicks a rescan, a reconnect or overflow a resync."""
        async def drain(it: AsyncIterator[WatchEvent]) -> None:
            async for event in it:
                self.watch_firings += 1
                if event.reconnected:
                    if xs.reconnects > self.reconnects:
                        self.reconnects = xs.reconnects
                        log.info("xenstore at %s is back; resynchronising events", xs.path)
                    run.quick = False
                    run.kick.set()
                elif event.overflowed:
                    run.quick = False
                    run.kick.set()
                else:
                    await self._watched(run, xs, event.path)

        tasks = [asyncio.create_task(drain(it)) for it in watches]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise VirtError(ErrorNumber.OPERATION_FAILED, info="a xenstore watch ended")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watched(self, run: _Run[H], xs: XenStoreClient, path: str) -> None:
        if path.startswith("@"):
            if path == "@releaseDomain":
                run.releases += 1
            elif path == "@introduceDomain":
                run.introduces += 1
            _kick_quick(run)
            return
        parts = path.split("/")
        if len(parts) == 4 and parts[3].isdigit():
            run.named.add(int(parts[3]))
            _kick_quick(run)  # /local/domain/<id> made or removed: a domain comes or goes
            return
        # /local/domain/<id>/control/shutdown or /local/domain/<id>/memory/target
        if len(parts) < 6 or not parts[3].isdigit():
            return
        leaf = "/".join(parts[4:])
        if leaf == "name":
            if not run.diff.knows(int(parts[3])):
                run.named.add(int(parts[3]))
                _kick_quick(run)  # a new domain's name: it can be looked up now
        elif leaf == "control/shutdown":
            try:
                value = (await xs.read(path)).decode(errors="replace").strip()
            except VirtError:
                return  # removed (the domain is going): the release watch follows
            if value:
                run.diff.shutdown_requested(int(parts[3]), value)
        elif leaf == "memory/target":
            if run.diff.knows(int(parts[3])):
                run.quick = False  # a known domain's balloon target: its record moves
                run.kick.set()
            else:
                run.named.add(int(parts[3]))
                _kick_quick(run)  # a domain being built writes its first target


def _kick_quick(run: _Run[H]) -> None:
    """A domain may have come or gone, or one is settling: a quick step will do unless a
    full scan is due."""
    if not run.kick.is_set():
        run.quick = True
    run.kick.set()


def _rekick(run: _Run[H]) -> None:
    run.recheck = None
    _kick_quick(run)


async def _await_quietly(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
