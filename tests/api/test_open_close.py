"""Opening (URIs, unreachable endpoints, fallbacks) and closing connections."""

from __future__ import annotations

import asyncio
import os

import pytest

import aiovirt
from aiovirt import ErrorNumber, VirtError
from aiovirt.sim.node import SimNode
from tests.api.conftest import uri_for
from tests.support.cancellation import cancelled_after


async def test_open_is_awaitable_and_an_async_context_manager(node: SimNode) -> None:
    conn = await aiovirt.open(node.uri)
    assert not conn.closed
    await conn.close()
    await conn.close()  # harmless twice
    assert conn.closed
    async with aiovirt.open(node.uri) as conn2:
        assert await conn2.num_of_domains() == len(node.domains)
    assert conn2.closed


async def test_calls_on_a_closed_connection_fail_clearly(node: SimNode) -> None:
    conn = await aiovirt.open(node.uri)
    dom = await conn.lookup_by_name("vm1")
    await conn.close()
    for call in (conn.list_domain_ids(), conn.lookup_by_name("vm1"), dom.info(),
                 conn.get_type()):
        with pytest.raises(VirtError) as info:
            await call
        assert info.value.code == ErrorNumber.INVALID_CONN
        assert "closed" in str(info.value)


async def test_sim_uri_starts_and_stops_a_node_in_process() -> None:
    async with aiovirt.open("sim:///?domains=5&seed=3") as conn:
        node = conn.sim_node
        directory = node.directory
        assert await conn.num_of_domains() == 6
        assert conn.backends == {"xend", "xenstore", "hypervisor"}
    assert not _exists(directory)


async def test_unreachable_endpoints_fail_the_open_naming_them(short_dir: str) -> None:
    xend = os.path.join(short_dir, "no-xend")
    store = os.path.join(short_dir, "no-store")
    uri = f"xen:///?xend=unix:{xend}&xenstore={store}&hypervisor=none"
    with pytest.raises(VirtError) as info:
        await aiovirt.open(uri)
    err = info.value
    assert err.code == ErrorNumber.NO_CONNECT
    assert xend in str(err) and store in str(err)
    assert aiovirt.get_last_error() is err


async def test_unknown_uris_and_parameters_are_refused() -> None:
    for uri, code in [("qemu:///system", ErrorNumber.NO_SUPPORT),
                      ("xen:///?frob=1", ErrorNumber.INVALID_ARG),
                      ("xen:///?hypervisor=kvm", ErrorNumber.INVALID_ARG),
                      ("xen:///?xend=ftp://host/", ErrorNumber.INVALID_ARG),
                      ("sim:///?domains=many", ErrorNumber.INVALID_ARG)]:
        with pytest.raises(VirtError) as info:
            await aiovirt.open(uri)
        assert info.value.code == code
        assert uri.split("?")[-1].split("=")[0] in str(info.value) or uri in str(info.value)


async def test_a_missing_backend_falls_back_to_the_others(node: SimNode,
                                                          short_dir: str) -> None:
    dead = os.path.join(short_dir, "dead")
    # xend unreachable: xenstore and the hypervisor serve.
    async with aiovirt.open(uri_for(node, xend="unix:" + dead)) as conn:
        assert conn.backends == {"xenstore", "hypervisor"}
        assert dead in conn.unavailable["xend"]
        assert await conn.num_of_domains() == len(node.domains)
        dom = await conn.lookup_by_name("vm2")
        await dom.suspend()
        with pytest.raises(VirtError) as info:
            await dom.xml_desc()
        assert info.value.code == ErrorNumber.NO_CONNECT and dead in str(info.value)
    # xenstore and hypervisor unreachable: xend serves.
    async with aiovirt.open(uri_for(node, xenstore=dead, hypervisor="sim:" + dead)) as conn:
        assert conn.backends == {"xend"}
        assert (await (await conn.lookup_by_name("vm2")).info()).state == aiovirt.DomainState.PAUSED


@pytest.mark.parametrize("kind", ["auto", "xenctrl"])
async def test_no_real_hypervisor_here_falls_back_to_xend(node: SimNode, kind: str) -> None:
    async with aiovirt.open(uri_for(node, hypervisor=kind)) as conn:
        assert "hypervisor" not in conn.backends  # no Xen hypervisor on this machine
        assert conn.unavailable["hypervisor"]
        assert await conn.num_of_domains() == len(node.domains)
        dom = await conn.lookup_by_name("vm1")
        await dom.suspend()  # through xend instead
        assert node.get("vm1").paused


async def test_open_cancelled_at_any_point_leaves_the_node_usable(node: SimNode) -> None:
    for steps in range(0, 12):
        conn = await cancelled_after(steps, aiovirt.open(node.uri)._open())
        if conn is not None:
            await conn.close()
    async with aiovirt.open(node.uri) as conn:
        assert await conn.num_of_domains() == len(node.domains)


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def test_events_are_delegated_to_aiovirt_events(node: SimNode) -> None:
    from aiovirt.events import EventKind

    async with aiovirt.open(node.uri) as conn:
        dom = await conn.lookup_by_name("vm3")
        async with conn.events(interval=0.05) as events:
            await dom.destroy()
            async with asyncio.timeout(5):
                async for event in events:
                    if event.kind == EventKind.STOPPED and event.domain == dom:
                        break
