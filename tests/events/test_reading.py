"""Hypervisor records made scan records: what they say, and that an unchanged domain keeps its
record object from one listing to the next (the diff and the table compare by identity)."""

from __future__ import annotations

import uuid

from aiovirt.events.diff import Seen
from aiovirt.events.reading import RecordReader
from aiovirt.protocol.privcmd import PAGE_KIB, DomainInfoRecord
from aiovirt.protocol.states import (
    DOMINF_BLOCKED,
    DOMINF_PAUSED,
    DOMINF_SHUTDOWN,
    DOMINF_SHUTDOWN_SHIFT,
    DomainState,
    ShutdownReason,
)

U1, U2 = uuid.UUID(int=0x1111), uuid.UUID(int=0x2222)


def record(domid: int, u: uuid.UUID, *, flags: int = DOMINF_BLOCKED, pages: int = 1024,
           cpu: int = 5, vcpus: int = 1) -> DomainInfoRecord:
    return DomainInfoRecord(domid, flags, pages, 2 * pages, 0, cpu, vcpus, vcpus - 1, 0, u.bytes)


def test_records_become_scan_records_with_their_cpu_times_beside() -> None:
    crashed = DOMINF_SHUTDOWN | (int(ShutdownReason.CRASH) << DOMINF_SHUTDOWN_SHIFT)
    scan = RecordReader().read([record(1, U1, cpu=7, vcpus=2), record(2, U2, flags=crashed)])
    assert scan.seen == [
        Seen(1, U1, DomainState.BLOCKED, None, 1024 * PAGE_KIB, 2048 * PAGE_KIB, 2),
        Seen(2, U2, DomainState.CRASHED, int(ShutdownReason.CRASH), 1024 * PAGE_KIB,
             2048 * PAGE_KIB, 1)]
    assert scan.cpu == {1: 7, 2: 5}


def test_an_unchanged_domain_keeps_its_record_and_a_changed_one_gets_a_new_one() -> None:
    reader = RecordReader()
    first = reader.read([record(1, U1), record(2, U2)])
    second = reader.read([record(1, U1, cpu=99), record(2, U2, flags=DOMINF_PAUSED)])
    assert second.seen[0] is first.seen[0] and second.cpu[1] == 99  # only CPU time moved
    assert second.seen[1] is not first.seen[1] and second.seen[1].state is DomainState.PAUSED
    # a probe shares the records; a listing forgets the domains it no longer has
    probed, cpu = reader.read_one(record(1, U1, cpu=100))
    assert probed is first.seen[0] and cpu == 100
    reader.read([record(2, U2, flags=DOMINF_PAUSED)])
    again = reader.read([record(1, U1), record(2, U2, flags=DOMINF_PAUSED)])
    assert again.seen[0] is not first.seen[0] and again.seen[0] == first.seen[0]
    # another domain under a reused id is another record
    other = reader.read([record(1, U2), record(2, U2, flags=DOMINF_PAUSED)])
    assert other.seen[0].uuid == U2 and other.seen[0] is not again.seen[0]
