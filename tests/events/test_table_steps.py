"""The table's quick path gives what its full path gives: seeded random scans, both ways.

The event source tells the table, after each scan, which domain ids may have moved (came,
went or changed in more than CPU time); the table then looks at those rows only. These tests
drive one :class:`LifecycleDiff` the way the source does (full scans and quick steps, domains
coming, going, restarting under new ids, pausing, ballooning, sharing a UUID while one dies)
and feed two tables from it: one takes the hints, the other is always given the whole scan.
After every step both must hold the same entries (CPU times included) and have reported the
same changes.
"""

from __future__ import annotations

import random
import uuid

import pytest

from aiovirt.domain import Domain
from aiovirt.events.diff import LifecycleDiff, Seen
from aiovirt.events.table import ChangeFeed, DomainTable, TableChange, TableEntry
from aiovirt.protocol.states import DomainState

STATES = (DomainState.RUNNING, DomainState.BLOCKED, DomainState.PAUSED, DomainState.SHUTDOWN)


class _NoSource:
    """The tables here are fed by hand; nothing listens or unsubscribes."""


class Node:
    """A node's truth: domid -> (name, uuid, state, memory, vcpus)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_id = 1
        self.domains: dict[int, list] = {}
        self.handles: dict[int, Domain] = {}
        for _ in range(rng.randint(0, 12)):
            self.create()

    def create(self, name: str | None = None, u: uuid.UUID | None = None) -> int:
        domid, self.next_id = self.next_id, self.next_id + 1
        name = name or f"vm{domid}"
        u = u or uuid.UUID(int=self.rng.getrandbits(128))
        self.domains[domid] = [name, u, DomainState.RUNNING, 65536, 1]
        self.handles[domid] = Domain(None, name, domid, u)  # type: ignore[arg-type]
        return domid

    def seen(self, domid: int) -> Seen:
        _name, u, state, memory, vcpus = self.domains[domid]
        return Seen(domid, u, state, None, memory, memory, vcpus)

    def mutate(self) -> set[int]:
        """Change the node a little; return the ids touched (came, went or changed)."""
        rng, touched = self.rng, set()
        for _ in range(rng.randint(1, 3)):
            action = rng.random()
            ids = list(self.domains)
            if action < 0.25 or not ids:
                touched.add(self.create())
            elif action < 0.4:
                domid = rng.choice(ids)
                del self.domains[domid]
                touched.add(domid)
            elif action < 0.55:  # restarts under a new id (same name and UUID)
                domid = rng.choice(ids)
                name, u = self.domains.pop(domid)[:2]
                touched |= {domid, self.create(name, u)}
            elif action < 0.65:  # a successor while the old one is dying: one UUID, two ids
                domid = rng.choice(ids)
                self.domains[domid][2] = DomainState.SHUTDOWN
                name, u = self.domains[domid][:2]
                touched |= {domid, self.create(name, u)}
            else:
                domid = rng.choice(ids)
                record = self.domains[domid]
                field = rng.choice((2, 3, 4))
                record[field] = rng.choice(STATES) if field == 2 else record[field] * 2
                touched.add(domid)
        return touched


def _table() -> DomainTable:
    table: DomainTable = DomainTable(_NoSource())  # type: ignore[arg-type]
    table._open = True
    return table




def _key(change: TableChange) -> tuple:
    entry = change.entry
    return (change.kind.value, entry.uuid.int if entry else 0, entry.id if entry else 0,
            tuple(sorted(change.fields)))


def _by_uuid(entry: TableEntry) -> int:
    return entry.uuid.int


@pytest.mark.parametrize("seed", range(40))
def test_the_quick_path_gives_what_the_full_path_gives(seed: int) -> None:
    rng = random.Random(seed)
    node = Node(rng)
    diff: LifecycleDiff[Domain] = LifecycleDiff(creation_grace=0.0)
    reuse = seed % 2 == 0  # half the seeds give unchanged domains their last record, as the
    last: dict[int, Seen] = {}  # hypervisor's reader does; the others a new, equal one

    def read(domid: int) -> Seen:
        seen = node.seen(domid)
        if reuse and last.get(domid) == seen:
            return last[domid]
        last[domid] = seen
        return seen

    diff.baseline([read(d) for d in node.domains], node.handles)
    cpu = {d: 0 for d in node.domains}
    hinted, whole = _table(), _table()
    at = 1.0
    hinted._scanned(diff, cpu, at)
    whole._scanned(diff, cpu, at)
    hinted_feed = hinted.changes(queue_size=10_000)  # held: a table holds its feeds weakly
    whole_feed = whole.changes(queue_size=10_000)
    reported = 0
    for step in range(60):
        touched = node.mutate()
        if rng.random() < 0.3:  # a full scan: every record read again, CPU times moved
            at += 1.0
            current = {d: read(d) for d in node.domains}
            cpu = {d: cpu.get(d, 0) + rng.randint(0, 9) for d in node.domains}
            only = None
        else:  # a quick step reads only the ids the watches named
            current = diff.seen_by_id()
            cpu = dict(cpu)
            for domid in touched:
                if domid in node.domains:
                    current[domid] = read(domid)
                    cpu[domid] = cpu.get(domid, 0) + 1
                else:
                    current.pop(domid, None)
                    cpu.pop(domid, None)
            only = touched | diff.unsettled()  # and those still settling, as the source does
        plan = diff.plan(current, only)
        handles = {d: node.handles[d] for d in plan.lookups if d in node.handles}
        result = diff.apply(current, float(step), handles, (), only)
        hinted._scanned(diff, cpu, at, result.moved)
        whole._scanned(diff, cpu, at)
        hinted_changes = _drain(hinted_feed)
        whole_changes = _drain(whole_feed)
        assert sorted(map(_key, hinted_changes)) == sorted(map(_key, whole_changes)), step
        reported += len(whole_changes)
        assert len(hinted) == len(whole) and set(hinted) == set(whole)
        assert sorted(hinted.values(), key=_by_uuid) == sorted(whole.values(), key=_by_uuid)
        for entry in whole.values():
            assert hinted.by_id(entry.id) == entry
            assert hinted.by_name(entry.name) == whole.by_name(entry.name)
            assert entry.cpu_time == cpu[entry.id] and entry.confirmed_at == at
    assert reported > 60  # the steps changed the table (every seed does)


def _drain(feed: ChangeFeed) -> list[TableChange]:
    out = []
    while (change := feed.get_nowait()) is not None:
        out.append(change)
    return out
