"""The pure diff: scans in, lifecycle changes out, with plain values and no node at all."""

from __future__ import annotations

import uuid

from aiovirt.events.diff import CREATION_GRACE, LifecycleDiff, Seen
from aiovirt.events.kinds import EventKind
from aiovirt.protocol.states import DomainState, ShutdownReason

RUNNING = DomainState.RUNNING
PAUSED = DomainState.PAUSED
U1, U2, U3 = (uuid.UUID(int=n) for n in (1, 2, 3))


def seen(domid: int, u: uuid.UUID, state: DomainState = RUNNING, code: int | None = None,
         memory: int = 65536, max_mem: int = 131072, vcpus: int = 1) -> Seen:
    return Seen(domid, u, state, code, memory, max_mem, vcpus)


def scan(*records: Seen) -> dict[int, Seen]:
    return {r.domid: r for r in records}


class Driver:
    """Plays the source's part: answers each plan with handles named after the ids."""

    def __init__(self, *baseline: Seen, kept: set[uuid.UUID] | None = None) -> None:
        self.diff: LifecycleDiff[str] = LifecycleDiff()
        self.diff.baseline(baseline, {r.domid: f"dom{r.domid}" for r in baseline})
        self.kept = kept or set()
        self.nameless: set[int] = set()
        self.now = 0.0
        self.asked_vm: list[uuid.UUID] = []

    def step(self, *records: Seen, after: float = 0.1) -> list[tuple[str, EventKind, str]]:
        self.now += after
        current = scan(*records)
        plan = self.diff.plan(current)
        handles = {d: f"dom{d}" for d in plan.lookups if d not in self.nameless}
        self.asked_vm.extend(plan.vm_checks)
        kept = {u for u in plan.vm_checks if u in self.kept}
        result = self.diff.apply(current, self.now, handles, kept)
        self.recheck = result.recheck
        return [(c.handle, c.kind, c.detail) for c in result.changes]


def test_what_exists_at_the_baseline_is_not_news() -> None:
    d = Driver(seen(1, U1, PAUSED), seen(2, U2, DomainState.SHUTOFF, ShutdownReason.POWEROFF))
    assert d.step(seen(1, U1, PAUSED), seen(2, U2, DomainState.SHUTOFF,
                                             ShutdownReason.POWEROFF)) == []
    # ... but a change from the baseline is
    assert d.step(seen(1, U1), seen(2, U2, DomainState.SHUTOFF, ShutdownReason.POWEROFF)) == [
        ("dom1", EventKind.RESUMED, "unpaused")]


def test_a_new_domain_starts_and_a_vanished_one_is_destroyed() -> None:
    d = Driver(seen(1, U1))
    assert d.step(seen(1, U1), seen(2, U2)) == [("dom2", EventKind.STARTED, "booted")]
    assert d.step(seen(1, U1)) == [("dom2", EventKind.STOPPED, "destroyed")]
    assert d.asked_vm == [U2]


def test_a_kept_vm_record_means_saved_and_the_return_is_a_restore() -> None:
    d = Driver(seen(1, U1), kept={U1})
    assert d.step() == [("dom1", EventKind.STOPPED, "saved")]
    assert d.step(seen(5, U1)) == [("dom5", EventKind.STARTED, "restored")]


def test_poweroff_is_reported_at_once_but_a_reboot_when_the_domain_goes() -> None:
    d = Driver(seen(1, U1), seen(2, U2))
    shut = DomainState.SHUTOFF
    assert d.step(seen(1, U1, shut, ShutdownReason.POWEROFF),
                  seen(2, U2, shut, ShutdownReason.REBOOT)) == [
        ("dom1", EventKind.STOPPED, "shutdown")]
    assert d.step(seen(1, U1, shut, ShutdownReason.POWEROFF)) == [
        ("dom2", EventKind.STOPPED, "rebooted")]
    assert d.step(seen(1, U1, shut, ShutdownReason.POWEROFF), seen(3, U2)) == [
        ("dom3", EventKind.STARTED, "restarted")]
    assert d.step(seen(3, U2)) == []  # dom1 goes: its stop was already reported
    assert d.asked_vm == []  # every reason was known without the store


def test_a_shutdown_request_tells_why_a_domain_went() -> None:
    d = Driver(seen(1, U1), seen(2, U2))
    d.diff.shutdown_requested(1, "reboot")
    d.diff.shutdown_requested(2, "halt")
    assert d.step() == [("dom1", EventKind.STOPPED, "rebooted"),
                        ("dom2", EventKind.STOPPED, "shutdown")]


def test_an_id_reused_between_two_scans_is_a_stop_and_a_start() -> None:
    d = Driver(seen(4, U1))
    d.diff.shutdown_requested(4, "reboot")
    assert d.step(seen(4, U2)) == [("dom4", EventKind.STOPPED, "rebooted"),
                                   ("dom4", EventKind.STARTED, "booted")]
    # the old domain's request does not explain the new one's end
    assert d.step() == [("dom4", EventKind.STOPPED, "destroyed")]


def test_the_creation_pause_is_not_news_but_a_lasting_pause_is() -> None:
    d = Driver()
    assert d.step(seen(1, U1, PAUSED)) == [("dom1", EventKind.STARTED, "booted")]
    assert d.recheck
    assert d.step(seen(1, U1, PAUSED), after=CREATION_GRACE / 2) == []
    assert d.recheck
    assert d.step(seen(1, U1, PAUSED), after=CREATION_GRACE) == [
        ("dom1", EventKind.SUSPENDED, "paused")]
    assert d.step(seen(1, U1)) == [("dom1", EventKind.RESUMED, "unpaused")]
    # a domain unpaused within its grace reports nothing but its start
    assert d.step(seen(1, U1), seen(2, U2, PAUSED)) == [("dom2", EventKind.STARTED, "booted")]
    assert d.step(seen(1, U1), seen(2, U2)) == []


def test_memory_and_vcpu_changes() -> None:
    d = Driver(seen(1, U1))
    assert d.step(seen(1, U1, memory=32768)) == [
        ("dom1", EventKind.MEMORY_CHANGED, "memory=32768 max=131072")]
    assert d.step(seen(1, U1, memory=32768, vcpus=2)) == [
        ("dom1", EventKind.VCPUS_CHANGED, "vcpus=2")]


def test_a_domain_that_appears_crashed_starts_and_stops() -> None:
    d = Driver()
    assert d.step(seen(1, U1, DomainState.CRASHED, ShutdownReason.CRASH)) == [
        ("dom1", EventKind.STARTED, "booted"), ("dom1", EventKind.STOPPED, "crashed")]


def test_a_domain_without_a_name_is_retried_then_given_up() -> None:
    d = Driver()
    d.nameless.add(7)
    for _ in range(19):
        assert d.step(seen(7, U3)) == []
        assert d.recheck
    assert d.step(seen(7, U3)) == []
    assert not d.recheck  # gave up: no more quick rechecks ...
    d.nameless.clear()
    assert d.step(seen(7, U3)) == [("dom7", EventKind.STARTED, "booted")]  # ... but it is
    assert d.step() == [("dom7", EventKind.STOPPED, "destroyed")]  # still asked for each scan


def test_a_restart_under_a_new_id_in_one_scan_needs_no_store_check() -> None:
    d = Driver(seen(1, U1))
    assert d.step(seen(2, U1)) == [("dom1", EventKind.STOPPED, "destroyed"),
                                   ("dom2", EventKind.STARTED, "booted")]
    assert d.asked_vm == []


def test_known_lists_the_domains_of_the_last_scan_with_their_handles() -> None:
    d = Driver(seen(1, U1), seen(2, U2))
    d.step(seen(2, U2, memory=1024), seen(3, U3))
    assert sorted((h, s.domid, s.memory) for h, s in d.diff.known()) == [
        ("dom2", 2, 1024), ("dom3", 3, 65536)]


# -- the table's entries: pure functions of the scans ----------------------------------------

def test_table_rows_follow_scans_keyed_by_uuid() -> None:
    from aiovirt.domain import Domain
    from aiovirt.events.table import ChangeKind, Snapshot, diff_rows, index_rows

    def dom(domid: int, u: uuid.UUID, name: str) -> Domain:
        return Domain(None, name, domid, u)  # type: ignore[arg-type]

    def step(old: Snapshot, known: list, cpu: dict, at: float) -> tuple:
        """Diff with the table's hint (the UUIDs whose row is not the old one) and without it:
        the hint never changes the answer."""
        new = Snapshot(index_rows(known), cpu, at)
        changes = diff_rows(old, new)
        touched = [u for u in {**old.rows, **new.rows} if old.rows.get(u) is not new.rows.get(u)]
        assert diff_rows(old, new, touched=touched) == changes
        return new, changes

    a, b, b2 = dom(1, U1, "a"), dom(2, U2, "b"), dom(7, U2, "b")
    first = [(a, seen(1, U1)), (b, seen(2, U2))]
    scan, changes = step(Snapshot({}, {}, 0.0), first, {1: 10, 2: 20}, 1.0)
    assert [c.kind for c in changes] == [ChangeKind.ADDED, ChangeKind.ADDED]
    assert [(c.entry.id, c.entry.cpu_time, c.entry.confirmed_at) for c in changes] == [
        (1, 10, 1.0), (2, 20, 1.0)]
    # b restarts under id 7, a's memory changes, CPU times move: one row per UUID still
    second = [(a, seen(1, U1, memory=1024)), (b2, seen(7, U2))]
    new, changes = step(scan, second, {1: 15, 7: 0}, 2.0)
    assert [(c.kind, c.entry.name if c.entry else None, set(c.fields)) for c in changes] == [
        (ChangeKind.UPDATED, "a", {"memory"}), (ChangeKind.UPDATED, "b", {"id"})]
    assert changes[1].previous == scan.entry(first[1])
    assert new.rows[U2][1].domid == 7 and new.rows[U2][0] is b2
    assert new.entry(new.rows[U1])[-2:] == (15, 2.0)  # cpu_time, confirmed_at
    # only CPU times moved: no change reported, with or without the hint
    again, changes = step(new, second, {1: 25, 7: 3}, 3.0)
    assert changes == [] and again.entry(again.rows[U1]).cpu_time == 25
    # a goes; a dying b and its successor share a UUID: the live one is the row
    dying = dom(8, U2, "b")
    fourth = [(b2, seen(7, U2, DomainState.SHUTDOWN)), (dying, seen(8, U2))]
    last = Snapshot(index_rows(fourth), {7: 3, 8: 0}, 4.0)
    changes = diff_rows(again, last)
    assert [c.kind for c in changes] == [ChangeKind.REMOVED, ChangeKind.UPDATED]
    assert last.rows[U2][1].domid == 8 and len(last.rows) == 1
    assert changes[0].entry == again.entry(second[0])


def test_table_diff_reuses_entries_already_made() -> None:
    from aiovirt.domain import Domain
    from aiovirt.events.table import Snapshot, diff_rows, index_rows

    a = Domain(None, "a", 1, U1)  # type: ignore[arg-type]
    old = Snapshot(index_rows([(a, seen(1, U1))]), {1: 5}, 1.0)
    made = {U1: old.entry(old.rows[U1])}
    new = Snapshot(index_rows([(a, seen(1, U1, DomainState.PAUSED))]), {1: 5}, 2.0)
    store: dict = {}
    (change,) = diff_rows(old, new, old_entries=made, new_entries=store)
    assert change.previous is made[U1] and store[U1] is change.entry
