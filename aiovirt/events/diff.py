"""The pure core of the events: successive snapshots of a node's domains in, changes out.

No I/O and no clock, the h11 way: the caller scans the node into :class:`Seen` records, asks
:meth:`LifecycleDiff.plan` what else it must look up (a handle for each new domain, whether a
vanished domain's ``/vm/<uuid>`` record was kept), and hands the answers and the current
monotonic time to :meth:`LifecycleDiff.apply`, which returns the :class:`Change` list. Handles
are opaque here (the library passes :class:`~aiovirt.domain.Domain` objects), so every rule of
what counts as news (the creation pause, the stop reasons, restored and restarted domains, ids
reused between two scans) is testable with plain values.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Collection, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from aiovirt.events.kinds import EventKind, StopReason
from aiovirt.protocol.states import DomainState, ShutdownReason

log = logging.getLogger(__name__)

__all__ = ["CREATION_GRACE", "Change", "LifecycleDiff", "Plan", "Seen", "Step"]

H = TypeVar("H")

# How long a new domain may stay paused before the pause is reported: xend builds domains
# paused, then unpauses them once their devices are up.
CREATION_GRACE = 1.0
# libvirt 0.5.0 retried a domain whose name was not in the store yet 20 times, 100 ms apart.
NAME_RETRIES = 20
# How many stopped UUIDs are remembered to tell a restore or restart from a first boot.
STOPPED_MEMORY = 65536


class Seen(NamedTuple):
    """One domain in one scan: its state and the numbers whose changes are news.

    The CPU time, which moves all the time and is never news, travels beside the records (a
    scan's ``cpu``, domid -> ns): so a domain whose record did not change can be the very same
    ``Seen`` scan after scan, which makes comparing two scans an identity check and keeps a
    scan of thousands of unchanged domains from allocating thousands of records.
    """

    domid: int
    uuid: uuidlib.UUID | None
    state: DomainState
    shutdown_code: int | None  # Xen's shutdown code if the domain has shut down
    memory: int  # KiB
    max_mem: int  # KiB
    vcpus: int


@dataclass(frozen=True, slots=True)
class Change(Generic[H]):
    """One lifecycle change of the domain ``handle``."""

    handle: H
    kind: EventKind
    detail: str


class Plan(NamedTuple):
    """What the caller must find out before :meth:`LifecycleDiff.apply` can judge a scan."""

    lookups: tuple[int, ...]
    """Ids of domains not known yet (new, or an id now held by another UUID): their handles."""
    vm_checks: tuple[uuidlib.UUID, ...]
    """UUIDs of vanished domains whose stop reason depends on whether ``/vm/<uuid>`` was kept."""


class Step(NamedTuple, Generic[H]):
    """What one scan changed: the changes in order, whether to scan again soon, and the ids
    ``moved`` whose record may differ from the last scan's in more than CPU time (domains that
    came, went, changed or are settling): every other domain is as it was but for its CPU
    time."""

    changes: list[Change[H]]
    recheck: bool
    moved: set[int]


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
_ACTIVE = {DomainState.RUNNING, DomainState.BLOCKED, DomainState.NOSTATE}
_GAVE_UP = -(10**9)


def _items(scan: Mapping[int, Seen], only: Collection[int] | None,
           ) -> Iterable[tuple[int, Seen]]:
    """Return ``scan``'s items, or those of ``only`` (in id order) when given."""
    if only is None:
        return scan.items()
    return [(domid, scan[domid]) for domid in sorted(only) if domid in scan]


def stop_reason(code: int) -> StopReason:
    """Return the stop reason for Xen's shutdown ``code`` (unknown codes: SHUTDOWN)."""
    try:
        return _STOP_FROM_CODE[ShutdownReason(code)]
    except (ValueError, KeyError):
        return StopReason.SHUTDOWN


@dataclass
class _Tracked(Generic[H]):
    """What the diff remembers of a domain between scans."""

    handle: H
    seen: Seen
    stopped: bool = False  # a STOPPED change was already reported for this run
    request: str | None = None  # last control/shutdown value seen in the store
    paused_reported: bool = False  # consumers were told it is paused
    creating_until: float | None = None  # monotonic end of the creation grace


class LifecycleDiff(Generic[H]):
    """Turns successive scans of a node into lifecycle :class:`Change` records.

    Start with :meth:`baseline` (what exists then is not news), then for each scan call
    :meth:`plan`, look up what it asks, and call :meth:`apply`. :meth:`shutdown_requested`
    records a ``control/shutdown`` value seen between scans (it tells why a domain later went).
    """

    def __init__(self, *, creation_grace: float = CREATION_GRACE,
                 name_retries: int = NAME_RETRIES, stopped_memory: int = STOPPED_MEMORY,
                 ) -> None:
        self._creation_grace = creation_grace
        self._name_retries = name_retries
        self._stopped_memory = stopped_memory
        self._tracked: dict[int, _Tracked[H]] = {}
        self._unnamed: dict[int, int] = {}  # domid -> lookups tried (negative: gave up)
        self._requests: dict[int, str] = {}
        self._stopped_uuids: dict[uuidlib.UUID, StopReason] = {}
        # ids of the domains in their creation grace (added as one starts, pruned at the end
        # of each apply)
        self._creating: set[int] = set()

    def known(self) -> Iterator[tuple[H, Seen]]:
        """Yield ``(handle, seen)`` for every domain of the last scan that has a handle."""
        for tracked in self._tracked.values():
            yield tracked.handle, tracked.seen

    def row(self, domid: int) -> tuple[H, Seen] | None:
        """Return ``(handle, seen)`` of ``domid`` in the last scan, or None (absent, or no
        handle yet)."""
        tracked = self._tracked.get(domid)
        return None if tracked is None else (tracked.handle, tracked.seen)

    def seen_by_id(self) -> dict[int, Seen]:
        """Return domid -> the last scan's record of every domain that has a handle."""
        return {domid: tracked.seen for domid, tracked in self._tracked.items()}

    def knows(self, domid: int) -> bool:
        """Return True if ``domid`` is a domain of the last scan that has a handle."""
        return domid in self._tracked

    def unsettled(self) -> set[int]:
        """Return the ids whose next record matters even if nothing else moved: domains in
        their creation pause and domains still without a name."""
        return self._creating | self._unnamed.keys()

    def baseline(self, scan: Iterable[Seen], handles: Mapping[int, H]) -> None:
        """Take ``scan`` as the starting point: nothing in it is reported as news."""
        for seen in scan:
            handle = handles.get(seen.domid)
            if handle is None:
                continue  # no name yet: reported as STARTED once it has one
            # A domain paused or shut down before watching began is not reported as such.
            self._tracked[seen.domid] = _Tracked(
                handle, seen, stopped=seen.shutdown_code is not None,
                paused_reported=seen.state is DomainState.PAUSED)

    def shutdown_requested(self, domid: int, value: str) -> None:
        """Record that ``control/shutdown`` of ``domid`` now holds ``value``."""
        self._requests[domid] = value
        tracked = self._tracked.get(domid)
        if tracked is not None:
            tracked.request = value

    def plan(self, scan: Mapping[int, Seen], only: Collection[int] | None = None) -> Plan:
        """Return the lookups :meth:`apply` needs to judge ``scan`` (domid -> seen).

        ``only``, if given, holds every id whose record in ``scan`` may not be the very record
        of the last scan (a quick step that read only those): the others are not looked at.
        """
        lookups = []
        vm_checks = []
        known = self._tracked
        for domid, seen in _items(scan, only):
            tracked = known.get(domid)
            # UUIDs are usually the same objects scan after scan: identity first
            if tracked is None or (tracked.seen.uuid is not seen.uuid
                                   and tracked.seen.uuid != seen.uuid):
                lookups.append(domid)
        if len(lookups) == len(scan) - len(known):
            return Plan(tuple(lookups), ())  # only new domains: none vanished
        # the domains that went, or whose id another domain holds now, in the order they came
        suspects = (known.keys() - scan.keys()).union(d for d in lookups if d in known)
        for domid in [d for d in known if d in suspects] if only is None else sorted(suspects):
            uuid = self._needs_vm_check(domid, known[domid], scan)
            if uuid is not None:
                vm_checks.append(uuid)
        return Plan(tuple(lookups), tuple(vm_checks))

    def apply(self, scan: Mapping[int, Seen], now: float, handles: Mapping[int, H],
              vm_kept: Container[uuidlib.UUID] = (), only: Collection[int] | None = None,
              ) -> Step[H]:
        """Judge ``scan`` at monotonic time ``now``; return what changed since the last one.

        ``handles`` maps the ids :meth:`plan` asked for to their handles (missing: the domain
        has no name yet, or went); ``vm_kept`` holds the UUIDs whose ``/vm`` record was kept;
        ``only`` is as for :meth:`plan`.
        """
        out: list[Change[H]] = []
        known = self._tracked
        gone = known.keys() - scan.keys()
        moved: set[int] = set(gone)
        if gone:
            for domid in [d for d in known if d in gone]:  # in the order they came
                self._vanished(domid, known.pop(domid), scan, vm_kept, out)
        for domid in [d for d in self._unnamed if d not in scan]:
            del self._unnamed[domid]
        for domid in [d for d in self._requests if d not in scan]:
            del self._requests[domid]
        recheck = False
        for domid, seen in _items(scan, only):
            tracked = known.get(domid)
            if tracked is not None and tracked.creating_until is None:
                was = tracked.seen
                if was is seen or (  # a quick step passes the records it did not read again
                        was[1] is seen[1] and was[2] is seen[2] and was[4] == seen[4]
                        and was[5] == seen[5] and was[6] == seen[6] and was[3] == seen[3]):
                    tracked.seen = seen  # nothing moved: no news (the common case)
                    continue
            moved.add(domid)
            if tracked is not None and tracked.seen.uuid != seen.uuid:
                # the id was reused between two scans: the old domain went, a new one came
                self._vanished(domid, self._tracked.pop(domid), scan, vm_kept, out)
                self._requests.pop(domid, None)  # that request was the old domain's
                tracked = None
            if tracked is None:
                recheck |= self._appeared(domid, seen, now, handles.get(domid), out)
            else:
                recheck |= self._changed(tracked, seen, now, out)
        if self._creating:
            self._creating = {d for d in self._creating
                              if (t := known.get(d)) is not None and t.creating_until is not None}
        return Step(out, recheck, moved)

    # -- the rules ------------------------------------------------------------------------------

    def _appeared(self, domid: int, seen: Seen, now: float, handle: H | None,
                  out: list[Change[H]]) -> bool:
        """Report a new domain once it has a handle; return True to look again soon."""
        if handle is None:
            attempts = self._unnamed.get(domid, 0) + 1
            if attempts >= self._name_retries:
                log.warning("domain %d has no name in the store; not reported", domid)
                self._unnamed[domid] = _GAVE_UP  # until it goes away
                return False
            self._unnamed[domid] = attempts
            return attempts > 0
        self._unnamed.pop(domid, None)
        if seen.shutdown_code is not None and seen.state is not DomainState.CRASHED:
            # it came and shut down between two scans: it never ran as far as we can tell
            self._tracked[domid] = _Tracked(handle, seen, stopped=True)
            return False
        detail = "booted"
        if seen.uuid is not None:
            before = self._stopped_uuids.pop(seen.uuid, None)
            if before is StopReason.SAVED:
                detail = "restored"
            elif before in (StopReason.REBOOTED, StopReason.CRASHED):
                detail = "restarted"
        tracked = _Tracked(handle, seen, request=self._requests.get(domid))
        self._tracked[domid] = tracked
        out.append(Change(handle, EventKind.STARTED, detail))
        if seen.state is DomainState.CRASHED:
            self._stopped(tracked, StopReason.CRASHED, out)
        elif seen.state is DomainState.PAUSED:
            # xend builds (and restores) domains paused and unpauses them when their devices
            # are up: a pause is only news if it lasts
            tracked.creating_until = now + self._creation_grace
            self._creating.add(domid)
            return True
        return False

    def _changed(self, tracked: _Tracked[H], seen: Seen, now: float,
                 out: list[Change[H]]) -> bool:
        """Report what changed since the last scan; return True to look again soon."""
        old, tracked.seen = tracked.seen, seen
        handle = tracked.handle
        if tracked.stopped:
            return False
        if seen.shutdown_code is not None:
            reason = stop_reason(seen.shutdown_code)
            if reason in _FINAL_REASONS:
                self._stopped(tracked, reason, out)
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
                    out.append(Change(handle, EventKind.SUSPENDED, "paused"))
        elif seen.state in _ACTIVE:
            tracked.creating_until = None
            if tracked.paused_reported:
                tracked.paused_reported = False
                out.append(Change(handle, EventKind.RESUMED, "unpaused"))
        if (old.memory, old.max_mem) != (seen.memory, seen.max_mem):
            out.append(Change(handle, EventKind.MEMORY_CHANGED,
                              f"memory={seen.memory} max={seen.max_mem}"))
        if old.vcpus != seen.vcpus:
            out.append(Change(handle, EventKind.VCPUS_CHANGED, f"vcpus={seen.vcpus}"))
        return recheck

    def _needs_vm_check(self, domid: int, tracked: _Tracked[H],
                        scan: Mapping[int, Seen]) -> uuidlib.UUID | None:
        """Return the UUID to check in ``/vm`` if that alone decides why ``tracked`` went."""
        if tracked.stopped or tracked.seen.shutdown_code is not None:
            return None
        request = self._requests.get(domid) or tracked.request
        if request is not None and request in _STOP_FROM_REQUEST:
            return None
        uuid = tracked.seen.uuid
        if uuid is None or uuid.int == 0:
            return None
        if any(seen.uuid == uuid for seen in scan.values()):
            return None  # restarted under a new id, not saved
        return uuid

    def _vanished(self, domid: int, tracked: _Tracked[H], scan: Mapping[int, Seen],
                  vm_kept: Container[uuidlib.UUID], out: list[Change[H]]) -> None:
        if tracked.stopped:
            return
        code = tracked.seen.shutdown_code
        request = self._requests.get(domid) or tracked.request
        if code is not None:
            reason = stop_reason(code)
        elif request is not None and request in _STOP_FROM_REQUEST:
            reason = _STOP_FROM_REQUEST[request]
        elif (uuid := self._needs_vm_check(domid, tracked, scan)) is not None and uuid in vm_kept:
            # xend (3.0.3) removes /vm/<uuid> when it destroys a domain but keeps it after a
            # save: the only trace a save leaves when the suspend was too short to be seen
            reason = StopReason.SAVED
        else:
            reason = StopReason.DESTROYED
        self._stopped(tracked, reason, out)

    def _stopped(self, tracked: _Tracked[H], reason: StopReason, out: list[Change[H]]) -> None:
        tracked.stopped = True
        if tracked.seen.uuid is not None:
            self._stopped_uuids[tracked.seen.uuid] = reason
            while len(self._stopped_uuids) > self._stopped_memory:
                del self._stopped_uuids[next(iter(self._stopped_uuids))]
        out.append(Change(tracked.handle, EventKind.STOPPED, reason.value))
