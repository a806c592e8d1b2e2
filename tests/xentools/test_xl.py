"""Debian's ``xl`` against a simulated node: it prints what aiovirt reports, and acts on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import aiovirt
from aiovirt.events import EventKind
from aiovirt.protocol.states import DomainState, state_from_xend
from tests.xentools.conftest import XL, XenNode
from tests.xentools.tools import XlRow, aiovirt_view, parse_xl_list, xl_seconds

pytestmark = pytest.mark.interop

_nodes: dict[int, XenNode] = {}


@pytest.fixture
def sized_node(start_node: Callable[..., XenNode]) -> Callable[[int], XenNode]:
    """Return a node of N guests, shared by this module's tests that only read it."""
    def get(guests: int) -> XenNode:
        node = _nodes.get(guests)
        if node is None or not node.directory.exists():
            node = _nodes[guests] = start_node(guests)
        return node
    return get


async def _xl_list_and_view(node: XenNode, *args: str) -> tuple[list[XlRow], dict, dict]:
    async with aiovirt.open(node.uri()) as conn:
        before, _ = await aiovirt_view(conn)
        _, out, _ = await node.run(XL, "list", *args)
        after, _ = await aiovirt_view(conn)
    return parse_xl_list(out), before, after


@pytest.mark.parametrize("guests", [3, 1000])
@pytest.mark.parametrize("verbose", [False, True], ids=["list", "list-v"])
async def test_xl_list_prints_what_aiovirt_reports(sized_node: Callable[[int], XenNode],
                                                   guests: int, verbose: bool) -> None:
    rows, before, after = await _xl_list_and_view(sized_node(guests), *(["-v"] if verbose else []))
    assert len(rows) == guests + 1
    assert [r.domid for r in rows] == sorted(after) == sorted(before)
    for row in rows:
        seen, later = before[row.domid], after[row.domid]
        assert row.name == seen.name
        assert row.mem_mib == seen.info.memory // 1024
        assert row.vcpus == seen.info.nr_virt_cpu
        assert state_from_xend(row.state) == seen.info.state == later.info.state
        # CPU time advances while the tools run: xl's reading lies between aiovirt's two,
        # as xl prints them.
        assert xl_seconds(seen.info.cpu_time) <= row.time_s <= xl_seconds(later.info.cpu_time)
        if verbose:
            assert row.uuid == seen.uuid
        else:
            assert row.uuid is None


async def test_xl_info_prints_the_node_info(sized_node: Callable[[int], XenNode]) -> None:
    node = sized_node(3)
    _, out, _ = await node.run(XL, "info")
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    info = {key.strip(): value.strip() for key, value in fields.items()}
    async with aiovirt.open(node.uri()) as conn:
        ni = await conn.node_info()
        version = await conn.get_version()
    assert int(info["nr_cpus"]) == ni.cpus
    assert int(info["nr_nodes"]) == ni.nodes
    assert int(info["cores_per_socket"]) == ni.cores
    assert int(info["threads_per_core"]) == ni.threads
    assert round(float(info["cpu_mhz"])) == ni.mhz
    assert int(info["total_memory"]) == ni.memory // 1024
    assert int(info["xen_major"]) == version // 1_000_000
    assert int(info["xen_minor"]) == version // 1_000 % 1_000


def _row(rows: list[XlRow], name: str) -> XlRow | None:
    return next((r for r in rows if r.name == name), None)


async def test_xl_pause_unpause_destroy_are_seen_through_every_route(xnode: XenNode) -> None:
    routes = {
        "xend": xnode.uri(xenstore="none", hypervisor="none"),
        "hypervisor": xnode.uri(xend="none"),
        "xenstore": xnode.uri(xend="none", hypervisor="none"),
    }
    async with aiovirt.open(xnode.uri()) as watcher:
        victim = (await watcher.list_domains())[1]
        name = victim.name
        async with watcher.events(interval=0.05) as events:
            await xnode.run(XL, "pause", name)
            await _expect(events, name, EventKind.SUSPENDED)
            for route, uri in routes.items():
                if route == "xenstore":
                    continue  # xenstore carries no paused flag
                async with aiovirt.open(uri) as conn:
                    state = (await (await conn.lookup_by_name(name)).info()).state
                    assert state == DomainState.PAUSED, route

            await xnode.run(XL, "unpause", name)
            await _expect(events, name, EventKind.RESUMED)
            for route, uri in routes.items():
                if route == "xenstore":
                    continue
                async with aiovirt.open(uri) as conn:
                    state = (await (await conn.lookup_by_name(name)).info()).state
                    assert state not in (DomainState.PAUSED, DomainState.SHUTOFF), route

            await xnode.run(XL, "destroy", name)
            await _expect(events, name, EventKind.STOPPED)
        for route, uri in routes.items():
            async with aiovirt.open(uri) as conn:
                assert name not in [d.name for d in await conn.list_domains()], route
    _, out, _ = await xnode.run(XL, "list")
    assert _row(parse_xl_list(out), name) is None


async def _expect(events: aiovirt.events.EventStream, name: str, kind: EventKind) -> None:
    async def wait() -> None:
        async for event in events:
            if event.domain is not None and event.domain.name == name and event.kind is kind:
                return
    await asyncio.wait_for(wait(), 10)


async def test_changes_made_through_aiovirt_show_in_the_next_xl_list(
        xnode: XenNode, conn: aiovirt.Connection) -> None:
    first, second = (await conn.list_domains())[1:3]
    await first.suspend()
    rows = parse_xl_list((await xnode.run(XL, "list"))[1])
    row = _row(rows, first.name)
    assert row is not None and state_from_xend(row.state) == DomainState.PAUSED
    await first.resume()
    await second.destroy()
    rows = parse_xl_list((await xnode.run(XL, "list"))[1])
    row = _row(rows, first.name)
    assert row is not None and state_from_xend(row.state) != DomainState.PAUSED
    assert _row(rows, second.name) is None
    await first.set_max_memory(200 * 1024)
    rows = parse_xl_list((await xnode.run(XL, "list", "-v"))[1])
    row = _row(rows, first.name)
    assert row is not None and row.uuid == first.uuid_string
    assert row.mem_mib == (await first.info()).memory // 1024 <= 200


async def test_xl_vcpu_list_shows_each_domains_vcpus_and_their_time(
        sized_node: Callable[[int], XenNode]) -> None:
    node = sized_node(3)
    async with aiovirt.open(node.uri()) as conn:
        before, _ = await aiovirt_view(conn)
        _, out, _ = await node.run(XL, "vcpu-list")
        after, _ = await aiovirt_view(conn)
    lines = out.splitlines()
    assert lines[0].startswith("Name")
    vcpus: dict[int, list[float]] = {}
    for line in lines[1:]:
        name, domid, _vcpu, _cpu, _state, time_s, affinity = line.split(None, 6)
        assert before[int(domid)].name == name and affinity.strip() == "all / all"
        vcpus.setdefault(int(domid), []).append(float(time_s))
    assert sorted(vcpus) == sorted(before)
    for domid, times in vcpus.items():
        assert len(times) == before[domid].info.nr_virt_cpu
        # The node shares a domain's time between its vCPUs: they add up to it, give or take
        # xl's rounding of each (a tenth) and its narrowing to a C float (2**-24 of the whole).
        low, high = before[domid].info.cpu_time / 1e9, after[domid].info.cpu_time / 1e9
        slack = 0.05 * len(times) + high * 2**-24
        assert low - slack <= sum(times) <= high + slack
