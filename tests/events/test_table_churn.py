"""Churn: a node in another process changes fast while a domain table follows it.

Several tasks suspend, resume, save, restore, shut down, destroy and create domains through
one connection, another process does some of it with ``aiovirsh``, and in the middle round the
node's xenstored is stopped and started again (``python -m aiovirt.sim`` does that on SIGUSR1
and SIGUSR2). A second connection holds the table. After each round (a quiet point) the table
must equal what a fresh connection reads with ``domain_infos()``, field by field, and the
table's change feed, replayed from its snapshot, must give the same table: no change lost or
reported twice, each domain's changes in the order its actions happened.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import aiovirt
from aiovirt.connection import Connection
from aiovirt.events.table import ChangeKind, DomainTable, TableChange, TableEntry
from aiovirt.protocol.states import DomainState
from tests.events.table_support import Replay, rows_of_entries, rows_of_table, truth
from tests.events.test_events import CREATE_XML
from tests.support.sim_process import start_sim_process, stop_process

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 15.0  # generous: the suite shares two cores with other work


class Node:
    """The node process and what the test needs of it."""

    def __init__(self, proc: subprocess.Popen[str], uri: str, directory: str) -> None:
        self.proc = proc
        self.uri = uri
        self.directory = directory

    def xenstored(self, up: bool) -> None:
        self.proc.send_signal(signal.SIGUSR2 if up else signal.SIGUSR1)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    directory = tempfile.mkdtemp(prefix="avchurn")
    proc, info = start_sim_process(directory, "--domains", "6", "--seed", "11",
                                   "--shutdown-delay", "0.02", "--log-level", "WARNING")
    try:
        yield Node(proc, info["uri"], directory)
    finally:
        stop_process(proc)
        shutil.rmtree(directory, ignore_errors=True)


def present(name: str) -> Callable[[DomainTable], bool]:
    def check(t: DomainTable) -> bool:
        e = t.by_name(name)
        return e is not None and e.state is not DomainState.PAUSED
    return check


def paused(name: str) -> Callable[[DomainTable], bool]:
    def check(t: DomainTable) -> bool:
        e = t.by_name(name)
        return e is not None and e.state is DomainState.PAUSED
    return check


def gone(name: str) -> Callable[[DomainTable], bool]:
    return lambda t: t.by_name(name) is None


class Actors:
    """Acts on the node and remembers, per UUID, the milestones each action must produce."""

    def __init__(self, conn: Connection, table: DomainTable, workdir: str) -> None:
        self.conn = conn
        self.table = table
        self.workdir = workdir
        self.expected: dict[uuid.UUID, list[str]] = {}

    def expect(self, name: str, milestone: str) -> None:
        entry = self.table.by_name(name)
        assert entry is not None
        self.expected.setdefault(entry.uuid, []).append(milestone)

    async def until(self, predicate: Callable[[DomainTable], bool]) -> None:
        await self.table.wait_for(predicate, timeout=LIMIT)

    async def cycle(self, name: str, round_no: int) -> None:
        """One round of actions on ``name``: what it does depends on the round."""
        dom = await self.conn.lookup_by_name(name)
        await dom.suspend()
        await self.until(paused(name))
        self.expect(name, "paused")
        await dom.resume()
        await self.until(present(name))
        self.expect(name, "running")
        if round_no == 0:
            image = os.path.join(self.workdir, f"{name}.save")
            self.expect(name, "gone")
            await dom.save(image)
            await self.until(gone(name))
            await self.conn.restore(image)
            await self.until(present(name))
            self.expect(name, "present")  # the same UUID comes back under a new id
        else:
            self.expect(name, "gone")
            if round_no == 1:
                await dom.destroy()
            else:
                await dom.shutdown()
            await self.until(gone(name))
            await self.conn.create_linux(CREATE_XML.format(name=name))
            await self.until(present(name))
            self.expect(name, "present")  # a new UUID

    async def by_aiovirsh(self, name: str, round_no: int) -> None:
        """Another process acts: ``aiovirsh suspend``, ``resume``, ``destroy``, by round."""
        verb, wait, milestone = (("suspend", paused, "paused"), ("resume", present, "running"),
                                 ("destroy", gone, "gone"))[round_no]
        self.expect(name, milestone)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiovirt", "-c", self.conn.uri, verb, name,
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        await self.until(wait(name))


def milestones(changes: list[TableChange]) -> dict[uuid.UUID, list[str]]:
    """Each UUID's changes as the milestones the actors expect."""
    seen: dict[uuid.UUID, list[str]] = {}
    for change in changes:
        entry: TableEntry | None = change.entry
        assert entry is not None
        marks = seen.setdefault(entry.uuid, [])
        if change.kind is ChangeKind.ADDED:
            marks.append("present")
        elif change.kind is ChangeKind.REMOVED:
            marks.append("gone")
        elif "state" in change.fields:
            assert change.previous is not None
            if entry.state is DomainState.PAUSED:
                marks.append("paused")
            elif change.previous.state is DomainState.PAUSED:
                marks.append("running")
    return seen


def in_order(wanted: list[str], got: list[str]) -> bool:
    """Whether ``wanted`` happens within ``got`` in order (``got`` may hold more: a domain
    being built is seen paused, one shutting down is seen shut off)."""
    it = iter(got)
    return all(any(mark == g for g in it) for mark in wanted)


async def test_the_table_follows_a_churning_node_and_a_xenstored_restart(node: Node) -> None:
    workdir = tempfile.mkdtemp(prefix="avchurnimg")
    try:
        async with aiovirt.open(node.uri) as watcher, aiovirt.open(node.uri) as actor_conn:
            async with watcher.domain_table(interval=0.2) as table:
                replay = Replay(table.changes(queue_size=100_000))
                actors = Actors(actor_conn, table, workdir)
                for round_no in range(3):
                    if round_no == 1:
                        node.xenstored(False)  # killed mid-churn ...
                    async with asyncio.TaskGroup() as tg:
                        for name in ("vm1", "vm2", "vm3", "vm4", "vm5"):
                            tg.create_task(actors.cycle(name, round_no))
                        tg.create_task(actors.by_aiovirsh("vm6", round_no))
                        if round_no == 1:
                            await asyncio.sleep(0.3)  # the outage lasts a while
                            node.xenstored(True)  # ... and back while the actors work
                    # a quiet point: the table equals the node's truth, field by field
                    want = await truth(node.uri)
                    await table.wait_for(lambda t, w=want: rows_of_table(t) == w, timeout=LIMIT)
                    replay.take()
                    assert rows_of_entries(replay.entries) == rows_of_table(table)
                source = watcher._events
                assert source is not None and source.reconnects == 1
        observed = milestones(replay.log)
        for key, wanted in actors.expected.items():
            assert in_order(wanted, observed.get(key, [])), (key, wanted, observed.get(key))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
