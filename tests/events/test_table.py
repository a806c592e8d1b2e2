"""The live domain table against a simulated node: each failure mode of hand-built caches."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import aiovirt
from aiovirt.connection import Connection
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.events.table import ChangeKind, DomainTable
from aiovirt.protocol.states import DomainState
from aiovirt.sim.node import SimNode
from tests.events.conftest import wait_until
from tests.events.table_support import Replay, rows_of_entries, rows_of_table, truth
from tests.events.test_events import CREATE_XML

ROOT = Path(__file__).resolve().parents[2]
# Long: only watches (and resyncs) can make these tests pass in time, unless a test says so.
SLOW = 60.0
FAST = 0.05


async def settled(table: DomainTable, uri: str, limit: float = 5.0) -> None:
    """Wait until the table equals the node's truth, as told by a fresh connection."""
    async with asyncio.timeout(limit):
        while True:
            want = await truth(uri)
            if rows_of_table(table) == want:
                return
            # the truth is one scan away: wait for the next refresh of the table
            await table.wait_for(lambda t, seen=t_refreshes(table): t.refreshes > seen)


def t_refreshes(table: DomainTable) -> int:
    return table.refreshes


async def test_reads_need_no_io_and_entries_are_immutable_snapshots(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        assert rows_of_table(table) == await truth(node.uri)
        vm1 = table.by_name("vm1")
        assert vm1 is not None
        assert table[vm1.uuid] is vm1 and table.by_id(vm1.id) is vm1 and vm1.uuid in table
        assert vm1.domain.name == "vm1" and vm1.domain.uuid == vm1.uuid
        assert vm1.state is DomainState.BLOCKED or vm1.state is DomainState.RUNNING
        assert vm1.confirmed_at > 0 and vm1.cpu_time >= 0
        assert len(table) == len(list(table)) == len(table.values())
        assert table.by_name("nosuch") is None and table.by_id(4242) is None
        with pytest.raises(AttributeError):
            vm1.name = "other"  # type: ignore[misc]


async def test_the_first_fill_and_the_changes_join_without_a_gap(
        node: SimNode, conn: Connection) -> None:
    # Slow every xenstore reply, so the table's first fill takes long, and act on the node
    # while it is being filled: after the watches are up, before the first snapshot is done.
    assert node.faults.xenstore is not None
    node.faults.xenstore.delay = 0.05

    async def act_during_the_fill() -> None:
        # the table has started the source's run (before its first await): wait for its
        # watches to be registered; the first snapshot is being taken then
        assert conn._events is not None and conn._events._run is not None
        await asyncio.wait_for(conn._events._run.watching.wait(), 5)
        assert not conn._events.watching  # the first snapshot is not taken yet
        node.destroy("vm1")
        node.pause("vm2")
        await conn.create_linux(CREATE_XML.format(name="during"))

    actor = asyncio.create_task(act_during_the_fill())
    async with conn.domain_table(interval=FAST) as table:
        feed = table.changes()
        replay = Replay(feed)
        await actor
        node.faults.xenstore.delay = 0.0
        await settled(table, node.uri)
        replay.take()  # raises on a change reported twice or out of order
        assert rows_of_entries(replay.entries) == rows_of_table(table)
        assert table.by_name("vm1") is None
        assert table.by_name("during") is not None
        vm2 = table.by_name("vm2")
        assert vm2 is not None and vm2.state is DomainState.PAUSED


async def test_created_and_destroyed_domains_show_at_once_not_at_the_next_poll(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        feed = table.changes()
        dom = await conn.create_linux(CREATE_XML.format(name="fresh"))
        await table.wait_for(lambda t: t.by_name("fresh") is not None, timeout=2)
        entry = table.by_name("fresh")
        assert entry is not None and entry.id == dom.id and entry.uuid == dom.uuid
        await dom.destroy()
        await table.wait_for(lambda t: t.by_name("fresh") is None, timeout=2)
        changes = [(c.kind, c.entry.name if c.entry else None, c.fields) for c in drain(feed)]
        assert changes[0][:2] == (ChangeKind.ADDED, "fresh")
        assert changes[-1][:2] == (ChangeKind.REMOVED, "fresh")
        # in between, at most the end of xend's creation pause, if a listing caught it paused
        assert all(c[:2] == (ChangeKind.UPDATED, "fresh") and c[2] == {"state"}
                   for c in changes[1:-1]) and len(changes) <= 3, changes


def drain(feed):  # type: ignore[no-untyped-def]
    out = []
    while (change := feed.get_nowait()) is not None:
        out.append(change)
    return out


async def test_a_restored_domain_is_the_same_entry_with_its_new_id(
        node: SimNode, conn: Connection, tmp_path: Path) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        before = table.by_name("vm2")
        assert before is not None
        await before.domain.save(str(tmp_path / "vm2.save"))
        await table.wait_for(lambda t: t.by_name("vm2") is None, timeout=2)
        assert table.by_id(before.id) is None  # the old id shows nothing
        await conn.restore(str(tmp_path / "vm2.save"))
        await table.wait_for(lambda t: before.uuid in t, timeout=2)
        after = table[before.uuid]
        assert after.name == "vm2" and after.id != before.id
        assert table.by_id(after.id) is after and table.by_id(before.id) is None
        assert after.domain.id == after.id  # the handle is the new domain's


async def test_a_rebooted_domain_keeps_its_entry_under_the_new_id(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        before = table.by_name("vm3")
        assert before is not None
        await before.domain.reboot()
        await table.wait_for(lambda t: (e := t.get(before.uuid)) is not None
                             and e.id != before.id, timeout=5)
        assert table.by_id(before.id) is None
        assert table[before.uuid].name == "vm3"


async def test_an_old_id_reused_by_another_domain_never_shows_the_old_data(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        old = table.by_name("vm4")
        assert old is not None
        node.destroy("vm4")
        node._next_domid = old.id  # Xen hands out ids again after they wrap
        await conn.create_linux(CREATE_XML.format(name="heir"))
        await table.wait_for(lambda t: t.by_name("heir") is not None, timeout=2)
        heir = table.by_id(old.id)
        assert heir is not None and heir.name == "heir" and heir.uuid != old.uuid
        assert old.uuid not in table and table.by_name("vm4") is None


async def test_pauses_and_memory_changes_show_within_one_interval(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=FAST) as table:
        feed = table.changes()
        node.pause("vm1")  # Xen raises no watch for this: the refresh finds it
        await table.wait_for(lambda t: t.by_name("vm1").state is DomainState.PAUSED,  # type: ignore[union-attr]
                             timeout=2)
        node.set_memory_target("vm1", 65536)
        await table.wait_for(lambda t: t.by_name("vm1").memory == 65536,  # type: ignore[union-attr]
                             timeout=2)
        changes = drain(feed)
        assert [(c.kind, set(c.fields)) for c in changes] == [
            (ChangeKind.UPDATED, {"state"}), (ChangeKind.UPDATED, {"memory"})]
        assert changes[1].previous is not None and changes[1].previous.memory != 65536


async def test_after_a_xenstore_outage_the_table_is_reconciled_and_told_once(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        replay = Replay(table.changes())
        source = conn._events
        assert source is not None
        daemon = node._xenstored
        await daemon.close()        # xenstored goes away, dropping every client ...
        node.destroy("vm1")         # ... domains go and come while nobody watches ...
        node.destroy("vm2")
        await daemon.start()        # ... and it comes back
        await table.wait_for(lambda t: t.by_name("vm1") is None and t.by_name("vm2") is None,
                             timeout=5)
        await wait_until(lambda: source.reconnects == 1)
        await settled(table, node.uri)
        removed = [c.entry.name for c in replay.take() if c.kind is ChangeKind.REMOVED
                   and c.entry is not None]
        assert sorted(removed) == ["vm1", "vm2"]


async def test_a_change_by_another_process_is_seen(node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiovirt", "-c", node.uri, "destroy", "vm3",
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err
        await table.wait_for(lambda t: t.by_name("vm3") is None, timeout=5)


async def test_a_read_only_connection_gets_a_table(node: SimNode) -> None:
    async with aiovirt.open_read_only(node.uri) as conn:
        async with conn.domain_table(interval=FAST) as table:
            assert rows_of_table(table) == await truth(node.uri)
            node.pause("vm1")
            await table.wait_for(
                lambda t: t.by_name("vm1").state is DomainState.PAUSED,  # type: ignore[union-attr]
                timeout=2)
            node.destroy("vm2")
            await table.wait_for(lambda t: t.by_name("vm2") is None, timeout=2)


async def test_a_reader_that_stops_reading_is_cut_off_with_an_overflow_marker(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        stalled = table.changes(queue_size=2)
        reader = Replay(table.changes())
        for name in ("vm1", "vm2", "vm3", "vm4"):
            node.destroy(name)
            await table.wait_for(lambda t, n=name: t.by_name(n) is None, timeout=2)
        assert stalled.pending() == 1  # the backlog became one marker ...
        marker = stalled.get_nowait()
        assert marker is not None and marker.kind is ChangeKind.OVERFLOW and stalled.overflows == 1
        # ... and the table as it is now is the reader's new starting point
        restart = {e.uuid: e for e in table.values()}
        await conn.create_linux(CREATE_XML.format(name="later"))
        await table.wait_for(lambda t: t.by_name("later") is not None, timeout=2)
        change = await asyncio.wait_for(anext(stalled), 2)
        assert change.kind is ChangeKind.ADDED and change.entry is not None
        assert change.entry.name == "later" and change.entry.uuid not in restart
        # the other reader got every change, unaffected
        assert [c.kind for c in reader.take()] == [ChangeKind.REMOVED] * 4 + [ChangeKind.ADDED]


async def test_wait_for_times_out_with_a_virt_error_and_ends_with_the_connection(
        node: SimNode) -> None:
    conn = await aiovirt.open(node.uri)
    async with conn.domain_table(interval=SLOW) as table:
        with pytest.raises(VirtError) as info:
            await table.wait_for(lambda t: len(t) == 99, timeout=0.05)
        assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
        feed = table.changes()
        waiter = asyncio.create_task(table.wait_for(lambda t: len(t) == 99, timeout=5))
        await asyncio.sleep(0)
        await conn.close()
        with pytest.raises(VirtError) as info:
            await waiter
        assert info.value.code == ErrorNumber.OPERATION_FAILED
        with pytest.raises(StopAsyncIteration):
            await anext(feed)
        assert table.by_name("vm1") is not None  # reads still answer, from the last refresh
    with pytest.raises(VirtError):
        conn.domain_table()


async def test_tables_and_streams_share_the_one_source(node: SimNode, conn: Connection) -> None:
    daemon = node._xenstored
    before = daemon.connection_count
    async with conn.domain_table(interval=SLOW) as first, conn.events() as events, \
            conn.domain_table(interval=SLOW) as second:
        assert daemon.connection_count == before + 1  # one watch connection for all three
        node.destroy("vm1")
        event = await asyncio.wait_for(anext(events), 2)
        assert event.domain is not None and event.domain.name == "vm1"
        await first.wait_for(lambda t: t.by_name("vm1") is None, timeout=2)
        await second.wait_for(lambda t: t.by_name("vm1") is None, timeout=2)
    assert conn._events is not None and not conn._events.running


async def test_invalid_table_arguments_are_refused(conn: Connection) -> None:
    for kwargs in ({"interval": 0}, {"interval": -1.0}, {"queue_size": 0}):
        with pytest.raises(VirtError) as info:
            conn.domain_table(**kwargs)  # type: ignore[arg-type]
        assert info.value.code == ErrorNumber.INVALID_ARG
    async with conn.domain_table() as table:
        with pytest.raises(VirtError):
            table.changes(queue_size=0)


async def test_the_docs_orchestrator_restores_a_domain_that_went(
        node: SimNode, conn: Connection, tmp_path: Path) -> None:
    # the example of docs/domain-table.md, run as written
    import re

    page = (ROOT / "docs" / "domain-table.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", page, flags=re.S)
                if "async def guard" in b)
    scope: dict[str, object] = {}
    exec(compile(code, "docs/domain-table.md", "exec"), scope)
    image = str(tmp_path / "vm1.save")
    async with conn.domain_table(interval=SLOW) as table:
        before = table.by_name("vm1")
        assert before is not None
        guard = asyncio.create_task(scope["guard"](conn, {"vm1": image}))  # type: ignore[operator]
        source = conn._events
        assert source is not None
        # the guard's own table is open and its feed started (nothing announces that)
        await wait_until(lambda: any(t is not table and t._feeds for t in source._listeners))
        await before.domain.save(image)
        await table.wait_for(lambda t: t.by_name("vm1") is None, timeout=5)
        await table.wait_for(lambda t: t.by_name("vm1") is not None, timeout=10)
        back = table.by_name("vm1")
        assert back is not None and back.uuid == before.uuid and back.id != before.id
        guard.cancel()
        with pytest.raises(asyncio.CancelledError):
            await guard
