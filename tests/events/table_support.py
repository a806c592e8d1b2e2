"""Helpers shared by the domain table tests: the node's truth, and replaying a change feed."""

from __future__ import annotations

import uuid

import aiovirt
from aiovirt.events.table import ChangeFeed, ChangeKind, DomainTable, TableChange, TableEntry

Row = tuple[int, str, object, int, int, int]


def row(e: TableEntry) -> Row:
    """An entry as a comparable row (cpu_time moves on all the time; it is checked apart)."""
    return (e.id, e.name, e.state, e.memory, e.max_memory, e.vcpus)


def rows_of_table(table: DomainTable) -> dict[uuid.UUID, Row]:
    return {e.uuid: row(e) for e in table.values()}


def rows_of_entries(entries: dict[uuid.UUID, TableEntry]) -> dict[uuid.UUID, Row]:
    return {u: row(e) for u, e in entries.items()}


async def truth(uri: str) -> dict[uuid.UUID, Row]:
    """What a fresh connection to the node sees: ``domain_infos()``, field by field."""
    async with aiovirt.open(uri) as conn:
        return {dom.uuid: (dom.id, dom.name, info.state, info.memory, info.max_mem,
                           info.nr_virt_cpu)
                for dom, info in await conn.domain_infos()}


class Replay:
    """Applies a feed's changes to its snapshot; fails on a change that cannot follow.

    An ADDED entry that is already there, or a REMOVED or UPDATED one that is not, would mean
    a change reported twice or one missed between the snapshot and the feed.
    """

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        self.entries = dict(feed.snapshot)
        self.log: list[TableChange] = []

    def take(self) -> list[TableChange]:
        """Apply every queued change; return them."""
        taken = []
        while (change := self.feed.get_nowait()) is not None:
            taken.append(change)
            self.apply(change)
        return taken

    def apply(self, change: TableChange) -> None:
        self.log.append(change)
        entry = change.entry
        if change.kind is ChangeKind.OVERFLOW:
            raise AssertionError("unexpected overflow")
        assert entry is not None
        if change.kind is ChangeKind.ADDED:
            assert entry.uuid not in self.entries, f"added twice: {change}"
            self.entries[entry.uuid] = entry
        elif change.kind is ChangeKind.REMOVED:
            assert entry.uuid in self.entries, f"removed but never there: {change}"
            del self.entries[entry.uuid]
        else:
            assert entry.uuid in self.entries, f"updated but never there: {change}"
            before = self.entries[entry.uuid]
            assert change.previous is not None
            assert row(before) == row(change.previous), f"out of order: {change}"
            self.entries[entry.uuid] = entry
