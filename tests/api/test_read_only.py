"""Read-only connections: no hypervisor, the read-only xenstore socket, no changes at all."""

from __future__ import annotations

import pytest

import aiovirt
from aiovirt import ErrorNumber, VirtError
from aiovirt.sim.node import SimNode
from tests.api.conftest import ROUTES, guests, uri_for

XML = """<domain type='xen'><name>ro-test</name><memory>131072</memory>
<os><type>linux</type><kernel>/boot/vmlinuz</kernel><root>/dev/xvda1</root></os>
<devices><disk type='file'><source file='/tmp/ro.img'/><target dev='xvda1'/></disk></devices>
</domain>"""


@pytest.mark.parametrize("route", ["all", "xend-only", "xenstore-only", "no-xend"])
async def test_read_only_connection_refuses_every_change_before_any_io(
        node: SimNode, route: str, short_dir: str) -> None:
    async with aiovirt.open_read_only(uri_for(node, **ROUTES[route])) as conn:
        assert conn.read_only and conn.hypervisor is None
        dom = await conn.lookup_by_name(guests(node)[0].name)
        before = node.stats
        calls = [
            dom.suspend(), dom.resume(), dom.shutdown(), dom.reboot(), dom.destroy(),
            dom.save(short_dir + "/x.save"), dom.set_max_memory(512 * 1024),
            dom.set_memory(64 * 1024), conn.create_linux(XML),
            conn.restore(short_dir + "/x.save"),
        ]
        for call in calls:
            with pytest.raises(VirtError) as info:
                await call
            assert info.value.code == ErrorNumber.OPERATION_DENIED, call
            assert "read-only" in str(info.value)
        assert node.stats == before
        assert guests(node)[0].consuming  # still running, untouched
        # Reads still work.
        assert (await dom.info()).memory > 0
        assert dom in await conn.list_domains()


async def test_read_only_never_opens_the_hypervisor_or_rw_xenstore(node: SimNode) -> None:
    async with aiovirt.open(node.uri, read_only=True) as conn:
        assert "hypervisor" not in conn.backends
        assert conn.unavailable["hypervisor"] == "not used by read-only connections"
        assert conn.xenstore_path == node.xenstore_ro_path
        assert conn.xenstore is not None and conn.xenstore.read_only


async def test_read_write_connection_uses_every_backend(node: SimNode) -> None:
    async with aiovirt.open(node.uri) as conn:
        assert conn.backends == {"xend", "xenstore", "hypervisor"}
        assert conn.xenstore_path == node.xenstore_path
