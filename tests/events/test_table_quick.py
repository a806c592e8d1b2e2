"""Domains coming and going reach the table without a listing of the node; the periodic
listing stays the authority and reconciles what a watch did not say."""

from __future__ import annotations

import pytest

from aiovirt.connection import Connection
from aiovirt.events.kinds import EventKind
from aiovirt.events.source import EventSource
from aiovirt.sim.node import SimNode
from tests.events.test_events import CREATE_XML
from tests.events.test_table import SLOW, settled


async def test_a_created_and_a_destroyed_domain_need_no_listing_of_the_node(
        node: SimNode, conn: Connection) -> None:
    async with conn.domain_table(interval=SLOW) as table:
        source = conn._event_source()
        await table.wait_for(lambda t: source.idle, timeout=2)
        scans = source.scans
        dom = await conn.create_linux(CREATE_XML.format(name="quick"))
        await table.wait_for(lambda t: (e := t.by_name("quick")) is not None
                             and e.id == dom.id and e.uuid == dom.uuid, timeout=2)
        await dom.destroy()
        await table.wait_for(lambda t: t.by_name("quick") is None and dom.uuid not in t,
                             timeout=2)
        assert table.by_id(dom.id) is None
        # what a listing costs at 5,000 domains is what made creates and destroys slow
        assert source.scans == scans, "a create or destroy listed the whole node"
        await settled(table, node.uri)


async def test_a_shut_down_domain_still_listed_is_found_by_a_listing_with_its_reason(
        node: SimNode, conn: Connection) -> None:
    # @releaseDomain fires for the shutdown while the domain's store entries are still there:
    # nothing came or went under /local/domain, so the source lists the node at once.
    async with conn.events(interval=SLOW) as events:
        node.request_shutdown("vm2", "poweroff")
        seen = []
        async for event in events:
            seen.append((event.domain.name, event.kind, event.detail))
            if event.kind is EventKind.STOPPED:
                break
        assert seen == [("vm2", EventKind.STOPPED, "shutdown")]


async def test_a_missed_watch_is_reconciled_by_the_next_refresh(
        node: SimNode, conn: Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    async with conn.domain_table(interval=0.2) as table:
        refreshes = table.refreshes

        async def deaf(self: EventSource, run: object, xs: object, path: str) -> None:
            return None  # this firing is lost

        monkeypatch.setattr(EventSource, "_watched", deaf)
        await conn.create_linux(CREATE_XML.format(name="unannounced"))
        node.destroy("vm3")
        await table.wait_for(lambda t: t.by_name("unannounced") is not None
                             and t.by_name("vm3") is None, timeout=5)
        assert table.refreshes > refreshes
        await settled(table, node.uri)
