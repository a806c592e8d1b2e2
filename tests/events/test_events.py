"""Lifecycle events produced by real actions on a simulated node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import aiovirt
from aiovirt.connection import Connection
from aiovirt.events import DomainEvent, EventKind, EventStream, domain_events
from aiovirt.events.source import EventSource
from aiovirt.sim.node import SimNode
from aiovirt.sim.xend_views import config_sxpr
from tests.events.conftest import wait_until

# Polling only has to find pauses and memory changes; keep it fast so the tests are.
INTERVAL = 0.05

CREATE_XML = """<domain type='xen'>
  <name>{name}</name>
  <os><type>linux</type><kernel>/boot/vmlinuz-xen</kernel><root>/dev/sda1</root></os>
  <memory>131072</memory>
  <vcpu>2</vcpu>
  <devices>
    <disk type='file'><source file='/srv/{name}.img'/><target dev='sda1'/></disk>
  </devices>
</domain>
"""


async def next_event(stream: EventStream, limit: float = 5.0) -> DomainEvent:
    async with asyncio.timeout(limit):
        return await anext(stream)


def source_of(conn: Connection) -> EventSource:
    """The connection's own event source (it creates it on first use and owns it)."""
    source = conn._events
    assert source is not None
    return source


def watching(conn: Connection) -> bool:
    return conn._events is not None and conn._events.watching


def running(conn: Connection) -> bool:
    return conn._events is not None and conn._events.running


def saw_shut_down(conn: Connection, domid: int) -> bool:
    """Return True once a scan of the connection's event source has seen ``domid`` shut down."""
    run = source_of(conn)._run
    if run is None:
        return False
    return any(getattr(handle, "id", None) == domid and seen.shutdown_code is not None
               for handle, seen in run.diff.known())


async def expect(stream: EventStream, name: str, kind: EventKind, detail: str | None = None,
                 ) -> DomainEvent:
    """Read the next event and check it is ``kind`` for domain ``name``."""
    event = await next_event(stream)
    assert event.domain is not None, event
    got = (event.domain.name, event.kind, event.detail if detail is not None else None)
    assert got == (name, kind, detail), f"expected {name} {kind} {detail}, got {event}"
    return event


async def test_every_kind_is_reported_once_in_order(node: SimNode, conn: Connection,
                                                    tmp_path: Path) -> None:
    image = str(tmp_path / "vm2.save")
    async with conn.events(interval=INTERVAL) as events:
        vm1 = await conn.lookup_by_name("vm1")
        await vm1.suspend()
        await expect(events, "vm1", EventKind.SUSPENDED, "paused")
        await vm1.resume()
        await expect(events, "vm1", EventKind.RESUMED, "unpaused")
        await vm1.set_memory(65536)
        mem = await expect(events, "vm1", EventKind.MEMORY_CHANGED)
        assert mem.detail.startswith("memory=65536 ")
        info = await vm1.info()
        await vm1.set_max_memory(info.max_mem + 1024)
        await expect(events, "vm1", EventKind.MEMORY_CHANGED,
                     f"memory=65536 max={info.max_mem + 1024}")
        # xend reaps a shut-down domain when the same @releaseDomain firing that makes the
        # source rescan reaches it: which comes first is a race on a real node too, and a
        # domain reaped before any scan saw its shutdown code can only be reported as
        # destroyed (docs/events.md). Holding xend back decides the race for the scan, so
        # what is asserted is what is guaranteed: a shutdown a scan sees has its reason.
        node.hold_reaps()
        await vm1.shutdown()
        await expect(events, "vm1", EventKind.STOPPED, "shutdown")
        node.release_reaps()

        vm2 = await conn.lookup_by_name("vm2")
        await vm2.save(image)
        await expect(events, "vm2", EventKind.STOPPED, "saved")
        await conn.restore(image)
        restored = await expect(events, "vm2", EventKind.STARTED, "restored")
        assert restored.domain is not None and restored.domain.uuid == vm2.uuid
        assert restored.domain.id != vm2.id

        vm3 = await conn.lookup_by_name("vm3")
        await vm3.destroy()
        await expect(events, "vm3", EventKind.STOPPED, "destroyed")

        new = await conn.create_linux(CREATE_XML.format(name="fresh"))
        started = await expect(events, "fresh", EventKind.STARTED, "booted")
        assert started.domain == new
        node.set_vcpus("fresh", 1)  # no public call for this yet: act as xend's set_vcpus
        await expect(events, "fresh", EventKind.VCPUS_CHANGED, "vcpus=1")
        node.hold_reaps()
        await new.reboot()
        # a reboot is reported when the domain goes: let xend restart it once a scan saw it
        await wait_until(lambda: saw_shut_down(conn, new.id))
        node.release_reaps()
        await expect(events, "fresh", EventKind.STOPPED, "rebooted")
        again = await expect(events, "fresh", EventKind.STARTED, "restarted")
        assert again.domain is not None and again.domain.id != new.id

        node.hold_reaps()
        node.crash("vm4")  # a guest crashing is not something the API can do
        await expect(events, "vm4", EventKind.STOPPED, "crashed")
        node.release_reaps()
        await expect(events, "vm4", EventKind.STARTED, "restarted")  # on_crash = restart

        # Nothing else is queued: the next event is the one for this last action.
        assert events.get_nowait() is None
        last = await conn.lookup_by_name("vm2")
        await last.destroy()
        await expect(events, "vm2", EventKind.STOPPED, "destroyed")


async def test_a_shutdown_is_reported_from_the_release_firing_not_a_poll(
        node: SimNode, conn: Connection) -> None:
    # xenstored fires @releaseDomain when a domain shuts down (VIRQ_DOM_EXC), not only when it
    # is gone; with xend holding the domain and no poll due, only that firing can report it.
    async with conn.events(interval=3600) as events:
        await source_of(conn).ready()
        node.hold_reaps()
        await (await conn.lookup_by_name("vm1")).shutdown()
        await expect(events, "vm1", EventKind.STOPPED, "shutdown")
        node.crash("vm2")
        await expect(events, "vm2", EventKind.STOPPED, "crashed")
        node.release_reaps()
        await expect(events, "vm2", EventKind.STARTED, "restarted")


async def test_creation_pause_is_not_reported_but_a_lasting_pause_is(
        node: SimNode, conn: Connection) -> None:
    async with conn.events(interval=INTERVAL) as events:
        template = config_sxpr(node.get("vm1"))
        config = [item for item in template
                  if not (isinstance(item, list) and item and item[0] in ("name", "uuid"))]
        node.create([*config, ["name", "held"]])  # xend leaves a new domain paused
        await expect(events, "held", EventKind.STARTED, "booted")
        await expect(events, "held", EventKind.SUSPENDED, "paused")  # after the grace period
        node.unpause("held")
        await expect(events, "held", EventKind.RESUMED, "unpaused")


async def test_every_consumer_gets_every_event(conn: Connection) -> None:
    async with conn.events(interval=INTERVAL) as first, \
            conn.events(interval=INTERVAL) as second:
        # one source, owned by the connection, serves both
        assert first._source is second._source is source_of(conn)
        for name in ("vm1", "vm2", "vm3"):
            await (await conn.lookup_by_name(name)).destroy()
        got_first = [await next_event(first) for _ in range(3)]
        got_second = [await next_event(second) for _ in range(3)]
    assert got_first == got_second
    assert [(e.domain.name if e.domain else None, e.kind) for e in got_first] == [
        ("vm1", EventKind.STOPPED), ("vm2", EventKind.STOPPED), ("vm3", EventKind.STOPPED)]


async def test_a_stalled_consumer_overflows_without_blocking_others(
        node: SimNode, conn: Connection) -> None:
    async with conn.events(interval=INTERVAL, queue_size=2) as stalled, \
            conn.events(interval=INTERVAL) as reader:
        for step in range(5):
            node.set_memory_target("vm1", 65536 + 4096 * step)
            event = await next_event(reader)
            assert event.kind is EventKind.MEMORY_CHANGED
            assert event.detail.startswith(f"memory={65536 + 4096 * step} ")
        assert stalled.dropped == 3
        kinds = [(await next_event(stalled)).kind for _ in range(3)]
        assert kinds == [EventKind.MEMORY_CHANGED, EventKind.MEMORY_CHANGED, EventKind.OVERFLOW]
        assert stalled.dropped == 0
        # after the overflow the stalled consumer receives new events again
        node.set_memory_target("vm1", 131072)
        assert (await next_event(stalled)).kind is EventKind.MEMORY_CHANGED


async def test_leaving_the_loop_releases_the_watches(node: SimNode, conn: Connection) -> None:
    daemon = node._xenstored
    before = daemon.connection_count

    async def destroy_once_watching() -> None:
        await wait_until(lambda: watching(conn))
        await (await conn.lookup_by_name("vm1")).destroy()

    actor = asyncio.create_task(destroy_once_watching())
    async for event in conn.events(interval=INTERVAL):
        assert daemon.connection_count == before + 1  # the source's own watch connection
        assert event.kind is EventKind.STOPPED
        break
    await actor
    # a bare `break` drops the stream; the source notices and stops
    await wait_until(lambda: not running(conn))
    await wait_until(lambda: daemon.connection_count == before)


async def test_async_with_exit_releases_the_watches(node: SimNode, conn: Connection) -> None:
    daemon = node._xenstored
    before = daemon.connection_count
    async with conn.events(interval=INTERVAL):
        assert daemon.connection_count == before + 1
    assert not running(conn)
    await wait_until(lambda: daemon.connection_count == before)


async def test_after_a_xenstore_reconnect_what_changed_meanwhile_is_reported(
        node: SimNode, conn: Connection) -> None:
    # A long interval: only the resynchronisation can report the change in time.
    async with domain_events(conn, interval=60) as events:
        source = source_of(conn)
        node.destroy("vm1")
        await expect(events, "vm1", EventKind.STOPPED, "destroyed")
        await wait_until(lambda: source.idle)
        daemon = node._xenstored
        await daemon.close()            # xenstored goes away, dropping every client ...
        node.destroy("vm2")             # ... a domain goes while nobody watches ...
        await daemon.start()            # ... and xenstored comes back
        await expect(events, "vm2", EventKind.STOPPED, "destroyed")
        assert source.reconnects == 1
        # and the stream goes on as before
        node.destroy("vm3")
        await expect(events, "vm3", EventKind.STOPPED, "destroyed")


async def test_invalid_arguments_are_refused(conn: Connection) -> None:
    from aiovirt.errors import ErrorNumber, VirtError

    with pytest.raises(VirtError) as info:
        domain_events(conn, interval=0)
    assert info.value.code == ErrorNumber.INVALID_ARG
    with pytest.raises(VirtError):
        domain_events(conn, queue_size=0)


async def test_a_read_only_connection_gets_events_through_xend(node: SimNode) -> None:
    # read-only: no hypervisor, so the stream polls xend's domain list instead
    async with aiovirt.open_read_only(node.uri) as conn:
        assert "hypervisor" not in conn.backends
        async with conn.events(interval=INTERVAL) as events:
            node.pause("vm1")
            await expect(events, "vm1", EventKind.SUSPENDED, "paused")
            node.unpause("vm1")
            await expect(events, "vm1", EventKind.RESUMED, "unpaused")
            node.hold_reaps()  # the crash must be seen before xend restarts vm2
            node.crash("vm2")
            await expect(events, "vm2", EventKind.STOPPED, "crashed")
            node.release_reaps()
            await expect(events, "vm2", EventKind.STARTED, "restarted")
            node.destroy("vm3")
            await expect(events, "vm3", EventKind.STOPPED, "destroyed")


async def test_closing_the_sources_ends_every_stream(conn: Connection) -> None:
    from aiovirt.events import close_event_sources

    async with conn.events(interval=INTERVAL) as events:
        await close_event_sources(conn)
        with pytest.raises(StopAsyncIteration):
            await next_event(events)
    assert not running(conn)


async def test_closing_the_connection_ends_its_streams_at_once(node: SimNode) -> None:
    daemon = node._xenstored
    before = daemon.connection_count
    conn = await aiovirt.connection.open(node.uri)
    # A long interval: the stream must end because the connection closed, not at a poll.
    async with conn.events(interval=60.0) as events:
        reader = asyncio.create_task(next_event(events, limit=2.0))
        await wait_until(lambda: watching(conn))
        await conn.close()
        with pytest.raises(StopAsyncIteration):
            await reader
    assert not running(conn)
    await wait_until(lambda: daemon.connection_count == before)


async def test_state_from_before_the_stream_began_is_not_reported(
        node: SimNode, conn: Connection) -> None:
    vm1 = await conn.lookup_by_name("vm1")
    await vm1.suspend()
    async with conn.events(interval=INTERVAL) as events:
        await events.ready()
        vm2 = await conn.lookup_by_name("vm2")
        await vm2.suspend()
        # vm1 was paused before watching began: the first news is vm2's pause, then vm1's resume
        await expect(events, "vm2", EventKind.SUSPENDED, "paused")
        await vm1.resume()
        await expect(events, "vm1", EventKind.RESUMED, "unpaused")
        assert events.get_nowait() is None


async def test_each_connection_owns_its_source_and_a_closed_one_refuses_events(
        node: SimNode) -> None:
    from aiovirt.errors import VirtError

    async with aiovirt.open(node.uri) as one, aiovirt.open(node.uri) as two:
        async with one.events(interval=INTERVAL) as first, \
                two.events(interval=INTERVAL) as second:
            assert first._source is source_of(one)
            assert second._source is source_of(two)
            assert source_of(one) is not source_of(two)
            await two.close()
            with pytest.raises(StopAsyncIteration):  # the closed connection's stream ended
                await next_event(second)
            node.destroy("vm1")  # the other connection's stream goes on
            await expect(first, "vm1", EventKind.STOPPED, "destroyed")
        with pytest.raises(VirtError):
            two.events()


async def test_after_a_xenstored_restart_new_domains_are_still_named(
        node: SimNode, conn: Connection) -> None:
    # The source names a new domain through the connection's own xenstore client: that client
    # must come back with the daemon, or every later domain stays nameless (never reported).
    async with conn.events(interval=INTERVAL) as events:
        daemon = node._xenstored
        assert daemon is not None
        await daemon.close()
        await daemon.start()
        await wait_until(lambda: source_of(conn).reconnects == 1)
        await conn.create_linux(CREATE_XML.format(name="after"))
        await expect(events, "after", EventKind.STARTED, "booted")
        assert (await conn.lookup_by_name("after")).name == "after"
