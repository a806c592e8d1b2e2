"""Creating domains from XML (and back), bad XML, save and restore keeping the UUID."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator

import pytest
from lxml import etree

import aiovirt
from aiovirt import ErrorNumber, VirtError
from aiovirt.sim.node import SimNode
from tests.api.conftest import guests, uri_for

XML = """<domain type='xen'>
  <name>web7</name>
  <os>
    <type>linux</type>
    <kernel>/boot/vmlinuz-2.6-xen</kernel>
    <initrd>/boot/initrd-2.6-xen.img</initrd>
    <root>/dev/sda1</root>
    <cmdline>ro selinux=0 3</cmdline>
  </os>
  <memory>262144</memory>
  <vcpu>2</vcpu>
  <devices>
    <disk type='file'><source file='/var/lib/xen/images/web7.img'/><target dev='sda1'/></disk>
    <disk type='block'><source dev='/dev/vg0/web7-data'/><target dev='sdb'/><readonly/></disk>
    <interface type='bridge'>
      <source bridge='xenbr0'/>
      <mac address='00:16:3e:00:00:07'/>
      <ip address='10.0.0.7'/>
      <script path='/etc/xen/scripts/vif-bridge'/>
    </interface>
  </devices>
</domain>
"""


def _canonical(xml: str) -> bytes:
    root = etree.fromstring(xml.encode())
    root.attrib.pop("id", None)
    for el in root.iter():
        if el.text is not None and not el.text.strip():
            el.text = None
        el.tail = None
    return etree.tostring(root, method="c14n")


@pytest.fixture
async def rw(node: SimNode) -> AsyncIterator[aiovirt.Connection]:
    async with aiovirt.open(node.uri) as conn:
        yield conn


async def test_create_from_xml_and_describe_it_back(rw: aiovirt.Connection,
                                                    node: SimNode) -> None:
    dom = await rw.create_linux(XML)
    assert dom.name == "web7" and dom == await rw.lookup_by_name("web7")
    sim = node.get("web7")
    assert not sim.paused and sim.uuid == dom.uuid  # created, devices up, unpaused
    info = await dom.info()
    assert info.memory == 262144 and info.nr_virt_cpu == 2
    described = await dom.xml_desc()
    root = etree.fromstring(described.encode())
    assert root.get("type") == "xen" and root.get("id") == str(dom.id)
    assert root.findtext("name") == "web7"
    assert root.findtext("uuid") == dom.uuid_string
    assert root.findtext("os/kernel") == "/boot/vmlinuz-2.6-xen"
    assert root.findtext("memory") == "262144"
    disks = root.findall("devices/disk")
    assert [d.get("type") for d in disks] == ["file", "block"]
    assert disks[1].find("readonly") is not None
    iface = root.find("devices/interface")
    assert iface is not None and iface.find("ip").get("address") == "10.0.0.7"
    assert iface.find("script").get("path").endswith("vif-bridge")  # xend 3.0.3: basename
    # The description creates the same domain again (same UUID included).
    await dom.destroy()
    again = await rw.create_linux(described)
    assert again.uuid == dom.uuid and again.id != dom.id
    assert _canonical(await again.xml_desc()) == _canonical(described)


@pytest.mark.parametrize("xml, code", [
    ("<domain type='xen'><name>x</name", ErrorNumber.XML_ERROR),
    ("<notadomain/>", ErrorNumber.XML_ERROR),
    (XML.replace("type='xen'", "type='kvm'"), ErrorNumber.XML_ERROR),
    (XML.replace("<name>web7</name>", ""), ErrorNumber.NO_NAME),
    (XML.replace("<kernel>/boot/vmlinuz-2.6-xen</kernel>", ""), ErrorNumber.NO_KERNEL),
])
async def test_bad_xml_is_refused_before_anything_is_created(
        rw: aiovirt.Connection, node: SimNode, xml: str, code: ErrorNumber) -> None:
    before = len(node.domains)
    with pytest.raises(VirtError) as info:
        await rw.create_linux(xml)
    assert info.value.code == code
    assert len(node.domains) == before


async def test_creating_a_name_twice_is_dom_exist(rw: aiovirt.Connection) -> None:
    with pytest.raises(VirtError) as info:
        await rw.create_linux(XML.replace("web7", "vm1"))
    assert info.value.code == ErrorNumber.DOM_EXIST
    assert "vm1" in str(info.value)


async def test_a_failed_start_destroys_the_half_made_domain(rw: aiovirt.Connection,
                                                           node: SimNode) -> None:
    aiovirt.set_error_handler(lambda ctx, err: None)
    try:
        node.faults.xend.fail_ops.add("unpause")
        with pytest.raises(VirtError) as info:
            await rw.create_linux(XML)
        assert info.value.code == ErrorNumber.POST_FAILED
        await node.wait_for(lambda: node.find("web7") is None)
    finally:
        aiovirt.set_error_handler(None)
        node.faults.xend.clear()


@pytest.mark.parametrize("route", ["all", "xend-only"])
async def test_save_and_restore_keep_the_uuid(node: SimNode, route: str, short_dir: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.api.conftest import ROUTES

    monkeypatch.chdir(short_dir)
    sim = guests(node)[0]
    async with aiovirt.open(uri_for(node, **ROUTES[route])) as conn:
        dom = await conn.lookup_by_name(sim.name)
        await dom.save("saved.img")  # relative: made absolute against the caller's cwd
        assert _exists(os.path.join(short_dir, "saved.img"))
        with pytest.raises(VirtError) as info:
            await dom.info()
        assert info.value.code == ErrorNumber.NO_DOMAIN
        assert sim.name not in [d.name for d in await conn.list_domains()]
        await conn.restore("saved.img")
        back = await conn.lookup_by_name(sim.name)
        assert back.uuid == dom.uuid and back.id != dom.id
        assert back == await conn.lookup_by_uuid(dom.uuid)
        assert (await back.info()).memory == sim.current_kib


async def test_restore_of_a_missing_file_names_it(rw: aiovirt.Connection,
                                                  short_dir: str) -> None:
    aiovirt.set_error_handler(lambda ctx, err: None)
    try:
        missing = os.path.join(short_dir, "nothing.img")
        with pytest.raises(VirtError) as info:
            await rw.restore(missing)
        assert info.value.code == ErrorNumber.POST_FAILED and missing in str(info.value)
    finally:
        aiovirt.set_error_handler(None)


def _exists(path: str) -> bool:
    return os.path.exists(path)


@pytest.mark.parametrize("kib", ["99999999999999999999", str(2097151 * 1024 + 1), "1023"])
async def test_a_memory_size_out_of_range_is_refused_naming_the_range(
        rw: aiovirt.Connection, node: SimNode, kib: str) -> None:
    before = node.stats
    memory = re.search(r"<memory>\d+</memory>", XML)
    assert memory is not None
    with pytest.raises(VirtError) as info:
        await rw.create_linux(XML.replace(memory.group(0), f"<memory>{kib}</memory>"))
    assert info.value.code == ErrorNumber.XML_ERROR  # a value in the XML, as libvirt says
    assert f"(1024..{2097151 * 1024})" in str(info.value)
    assert node.stats["xend.create"] == before["xend.create"]  # nothing reached xend
