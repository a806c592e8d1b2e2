"""Domain XML <-> DomainConfig <-> xend S-expressions, with the fixtures of the references."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from lxml import etree

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.domxml import (
    DiskConfig,
    DomainConfig,
    InterfaceConfig,
    config_to_sexpr,
    config_to_xml,
    parse_domain_xml,
    root_device,
    sexpr_to_config,
    sexpr_to_xml,
    xml_to_sexpr,
)
from aiovirt.protocol.sexpr import dumps, lookup, parse

DATA = Path(__file__).parent / "data"
XML_FIXTURES = sorted(p.name for p in DATA.glob("*.xml"))
CREATE_FIXTURES = ["seed-fc4", "libvirt-create-py"]
XEND_FIXTURES = ["xend-3.0.3-vm1", "xend-3.0.3-domain0", "xend-3.3-vm1"]


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_seed_example_parses_to_its_description() -> None:
    cfg = parse_domain_xml(read("seed-fc4.xml"))
    assert cfg == DomainConfig(
        name="fc4", memory=131072, vcpus=1, os_type="linux",
        kernel="/boot/vmlinuz-2.6.15-1.43_FC5guest",
        initrd="/boot/initrd-2.6.15-1.43_FC5guest.img",
        root="/dev/sda1", cmdline=" ro selinux=0 3",
        disks=(DiskConfig("file", "/u/fc4.img", "sda1"),),
        interfaces=(InterfaceConfig("bridge", bridge="xenbr0", mac="aa:00:00:00:00:11",
                                    script="/etc/xen/scripts/vif-bridge"),),
        id=18,
    )


@pytest.mark.parametrize("name", CREATE_FIXTURES)
def test_xml_gives_the_expected_create_config(name: str) -> None:
    config = xml_to_sexpr(read(f"{name}.xml"))
    assert dumps(config) == read(f"{name}.sexpr").strip()


@pytest.mark.parametrize("name", XML_FIXTURES)
def test_xml_round_trips_unchanged_through_the_description(name: str) -> None:
    text = read(name)
    assert config_to_xml(parse_domain_xml(text)) == text
    assert config_to_xml(parse_domain_xml(text.encode())) == text


@pytest.mark.parametrize("name", [n for n in XML_FIXTURES if "domain0" not in n])
def test_xml_to_sexpr_to_xml(name: str) -> None:
    """What xend is asked to create reads back as the same XML (less the runtime id)."""
    text = read(name)
    cfg = parse_domain_xml(text)
    wire = dumps(xml_to_sexpr(text))
    back = sexpr_to_xml(parse(wire))
    assert back == config_to_xml(dataclasses.replace(cfg, id=None))


@pytest.mark.parametrize("name", XEND_FIXTURES)
def test_xend_domain_sexpr_gives_the_fixture_xml(name: str) -> None:
    assert sexpr_to_xml(read(f"{name}.sexpr")) == read(f"{name}.xml")


def test_xend_3_0_3_record() -> None:
    cfg = sexpr_to_config(read("xend-3.0.3-vm1.sexpr"))
    assert cfg.id == 3
    assert cfg.uuid == uuid.UUID("8f5d6a3e-02c1-9b7e-4d22-a1b0c3e5f719")
    assert cfg.memory == 256 * 1024 and cfg.current_memory == 256 * 1024
    assert cfg.disks == (DiskConfig("file", "/var/lib/xen/images/vm1.img", "sda1"),)
    assert cfg.interfaces[0].bridge == "xenbr0" and cfg.interfaces[0].script == "vif-bridge"
    assert cfg.root == "/dev/sda1 ro" and cfg.cmdline == "console=tty0 4"


def test_domain0_has_a_description_and_uuid_but_cannot_be_created() -> None:
    cfg = sexpr_to_config(read("xend-3.0.3-domain0.sexpr"))
    assert cfg.name == "Domain-0" and cfg.id == 0 and cfg.kernel is None
    assert cfg.uuid == uuid.UUID(int=0)
    assert cfg.memory == 1715 * 1024 and cfg.vcpus == 2
    xml = sexpr_to_xml(read("xend-3.0.3-domain0.sexpr"))
    assert "<uuid>00000000-0000-0000-0000-000000000000</uuid>" in xml
    assert parse_domain_xml(xml) == dataclasses.replace(cfg, current_memory=None)
    with pytest.raises(VirtError) as info:
        config_to_sexpr(cfg)
    assert info.value.code == ErrorNumber.NO_KERNEL


def test_later_xend_formats() -> None:
    cfg = sexpr_to_config(read("xend-3.3-vm1.sexpr"))
    assert cfg.disks[0].target == "xvda"  # ':disk' stripped
    assert cfg.root is None and root_device(cfg) == "/dev/xvda1"
    # Any field order, (status N), 4.x '' empties, maxmem above memory.
    text = ("(domain (status 2) (memory 256) (maxmem 512) (name v) (features '') "
            "(device (tap (uname tap:aio:/img/v.img) (dev xvdb:cdrom) (mode r))) "
            "(device (vbd (uname phy:/dev/vg/v) (dev /dev/xvda) (mode w!))) "
            "(device (vif (ip 10.0.0.1) (ip 10.0.0.2) (script vif-route))) "
            "(device (vif (ip (10.0.0.3)) (script /etc/xen/scripts/vif-bridge))) "
            "(device (pci (dev 0))) (device (vbd (dev xvdc))) (device (vbd (uname iscsi:x) "
            "(dev xvdd))) (image (hvm (kernel /usr/lib/xen/boot/hvmloader))))")
    cfg = sexpr_to_config(text)
    assert cfg.id is None and cfg.uuid is None
    assert cfg.memory == 512 * 1024 and cfg.current_memory == 256 * 1024
    assert cfg.os_type == "hvm"
    assert cfg.disks == (
        DiskConfig("file", "/img/v.img", "xvdb", readonly=True),
        DiskConfig("block", "/dev/vg/v", "xvda"),
    )
    assert cfg.interfaces == (
        InterfaceConfig("ethernet", ip="10.0.0.1 10.0.0.2", script="vif-route"),
        InterfaceConfig("bridge", ip="10.0.0.3", script="/etc/xen/scripts/vif-bridge"),
    )
    assert "<type>hvm</type>" in config_to_xml(cfg)


def test_create_config_details() -> None:
    cfg = parse_domain_xml(read("features.xml"))
    config = config_to_sexpr(cfg)
    assert lookup(config, "vm/uuid") == "4dea22b3-1d52-d8f3-2516-782e98ab3fa0"
    assert lookup(config, "vm/memory") == "512" and lookup(config, "vm/maxmem") == "512"
    assert lookup(config, "vm/vcpus") == "2"
    vbds = [d[1] for d in config[1:] if isinstance(d, list) and d[0] == "device"]
    assert [lookup(v, "vbd/uname") for v in vbds[:2]] == [
        "phy:/dev/vg0/web", "file:/srv/iso/it's here.iso"]
    assert [lookup(v, "vbd/mode") for v in vbds[:2]] == ["w", "r"]
    text = dumps(config)
    assert "(uname \"file:/srv/iso/it's here.iso\")" in text
    assert "(name 'web&db \"1\"')" in text
    assert "(ip 10.0.0.5) (ip 10.0.0.6) (vifname vif-web)" in text
    assert parse(text) == config


def test_memory_rounds_down_to_whole_mib() -> None:
    xml = read("seed-fc4.xml").replace("131072", "132000")
    assert lookup(xml_to_sexpr(xml), "vm/memory") == "128"
    xml = read("seed-fc4.xml").replace("131072", "1024")
    assert lookup(xml_to_sexpr(xml), "vm/maxmem") == "1"


def test_vcpu_defaults_to_one_and_type_to_xen_and_linux() -> None:
    xml = (read("seed-fc4.xml").replace("  <vcpu>1</vcpu>\n", "")
           .replace(" type='xen'", "").replace("    <type>linux</type>\n", ""))
    cfg = parse_domain_xml(xml)
    assert cfg.vcpus == 1 and cfg.os_type == "linux"


def test_escaped_values_survive_xml() -> None:
    cfg = DomainConfig(
        name="a<b>&'\"c", memory=65536, kernel="/k", cmdline="x='1' y=\"2\" \t&",
        disks=(DiskConfig("file", "/p/it's <&>\n.img", "xvda"),),
        interfaces=(InterfaceConfig(mac="00:16:3e:00:00:01", script="/s/a'b"),),
    )
    xml = config_to_xml(cfg)
    etree.fromstring(xml.encode())  # well formed
    assert parse_domain_xml(xml) == cfg


def test_xml_cannot_carry_control_characters() -> None:
    cfg = DomainConfig(name="vm", memory=65536, kernel="/k", cmdline="a\x01b")
    with pytest.raises(VirtError) as info:
        config_to_xml(cfg)
    assert info.value.code == ErrorNumber.XML_ERROR
    assert "<cmdline>" in str(info.value)


def test_whitespace_and_text_handling() -> None:
    xml = read("seed-fc4.xml").replace("<name>fc4</name>", "<name>\n  fc4 </name>")
    xml = xml.replace("<memory>131072</memory>", "<memory> 131072 </memory>")
    cfg = parse_domain_xml(xml)
    assert cfg.name == "fc4" and cfg.memory == 131072
    assert cfg.cmdline == " ro selinux=0 3"  # the command line is kept as written


def test_xml_with_declaration_and_encoding() -> None:
    latin = "<?xml version='1.0' encoding='ISO-8859-1'?>\n" + read("seed-fc4.xml").replace(
        "fc4</name>", "f\u00e9</name>")
    assert parse_domain_xml(latin).name == "f\u00e9"
    assert parse_domain_xml(latin.encode("iso-8859-1")).name == "f\u00e9"


SEED = read("seed-fc4.xml")

BAD_XML = [
    ("<domain", ErrorNumber.XML_ERROR, "malformed"),
    ("", ErrorNumber.XML_ERROR, ""),
    ("not xml at all", ErrorNumber.XML_ERROR, "malformed"),
    ("<vm><name>x</name></vm>", ErrorNumber.XML_ERROR, "<vm>"),
    ("<d:domain xmlns:d='urn:x'><name>x</name></d:domain>", ErrorNumber.XML_ERROR,
     "<{urn:x}domain>"),
    (SEED.replace("type='xen'", "type='kvm'"), ErrorNumber.XML_ERROR, "type='kvm'"),
    (SEED.replace("id='18'", "id='abc'"), ErrorNumber.XML_ERROR, "<domain id>"),
    (SEED.replace("<name>fc4</name>", ""), ErrorNumber.NO_NAME, "<name>"),
    (SEED.replace("<name>fc4</name>", "<name>  </name>"), ErrorNumber.NO_NAME, "<name>"),
    (SEED.replace("<memory>131072</memory>", ""), ErrorNumber.XML_ERROR, "<memory>"),
    (SEED.replace("131072", "1023"), ErrorNumber.XML_ERROR, "<memory>"),
    (SEED.replace("131072", "128M"), ErrorNumber.XML_ERROR, "<memory>"),
    (SEED.replace("131072", "-5"), ErrorNumber.XML_ERROR, "<memory>"),
    (SEED.replace("131072", "9" * 5000), ErrorNumber.XML_ERROR, "<memory>"),
    (SEED.replace("<vcpu>1</vcpu>", "<vcpu>0</vcpu>"), ErrorNumber.XML_ERROR, "<vcpu>"),
    (SEED.replace("<vcpu>1</vcpu>", "<vcpu>two</vcpu>"), ErrorNumber.XML_ERROR, "<vcpu>"),
    (SEED.replace("<uuid>", "").replace("<name>fc4</name>", "<name>fc4</name><uuid>zz</uuid>"),
     ErrorNumber.XML_ERROR, "<uuid>"),
    (SEED[:SEED.index("  <os>")] + SEED[SEED.index("  <memory>"):], ErrorNumber.NO_OS, "<os>"),
    (SEED.replace("<type>linux</type>", "<type>hvm</type>"), ErrorNumber.OS_TYPE, "hvm"),
    (SEED.replace("<disk type='file'>", "<disk type='network'>"), ErrorNumber.XML_ERROR,
     "<disk type='network'>"),
    (SEED.replace("<source file='/u/fc4.img'/>", ""), ErrorNumber.NO_SOURCE, "sda1"),
    (SEED.replace("<disk type='file'>", "<disk type='block'>"), ErrorNumber.NO_SOURCE,
     "<source dev="),
    (SEED.replace("<target dev='sda1'/>", ""), ErrorNumber.NO_TARGET, "/u/fc4.img"),
    (SEED.replace("<interface type='bridge'>", "<interface type='user'>"),
     ErrorNumber.XML_ERROR, "<interface type='user'>"),
    (SEED.replace("aa:00:00:00:00:11", "aa:00:00:00:11"), ErrorNumber.INVALID_MAC, "<mac"),
    ("<!DOCTYPE domain [<!ENTITY x 'fc4'>]><domain type='xen'><name>&x;</name></domain>",
     ErrorNumber.XML_ERROR, "DOCTYPE"),
    ("<!DOCTYPE d SYSTEM 'http://example.invalid/d.dtd'><domain/>",
     ErrorNumber.XML_ERROR, "DOCTYPE"),
    ("<domain>\0</domain>", ErrorNumber.XML_ERROR, ""),
    ("<domain type='xen'><name>x\udc80</name></domain>", ErrorNumber.XML_ERROR, ""),
]


@pytest.mark.parametrize(("xml", "code", "named"), BAD_XML)
def test_bad_xml_raises_the_libvirt_code_naming_the_element(
    xml: str, code: ErrorNumber, named: str
) -> None:
    with pytest.raises(VirtError) as info:
        xml_to_sexpr(xml)
    err = info.value
    assert err.code == code, str(err)
    assert err.domain == ErrorDomain.XML
    assert named in str(err)


NOT_CREATABLE = [
    (SEED.replace("    <kernel>/boot/vmlinuz-2.6.15-1.43_FC5guest</kernel>\n", ""),
     ErrorNumber.NO_KERNEL, "<kernel>"),
    (SEED.replace("    <root>/dev/sda1</root>\n", ""), ErrorNumber.NO_ROOT, "<root>"),
    (SEED.replace("    <root>/dev/sda1</root>\n", "").replace(" ro selinux", "root ro selinux"),
     ErrorNumber.NO_ROOT, "<root>"),
]


@pytest.mark.parametrize(("xml", "code", "named"), NOT_CREATABLE)
def test_descriptions_that_cannot_be_created(xml: str, code: ErrorNumber, named: str) -> None:
    parse_domain_xml(xml)  # a valid description ...
    with pytest.raises(VirtError) as info:
        xml_to_sexpr(xml)  # ... of a domain xend cannot build
    assert info.value.code == code
    assert info.value.domain == ErrorDomain.XML
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("cmdline", "root"),
    [(" root=/dev/sda1 ro", "/dev/sda1"), ("ro\troot=/dev/xvda2", "/dev/xvda2"),
     ("root /dev/hda1 3", None), ("noroot=/x", None), ("root=", None), ("", None)],
)
def test_root_from_command_line(cmdline: str, root: str | None) -> None:
    cfg = DomainConfig(name="v", memory=65536, kernel="/k", cmdline=cmdline or None)
    assert root_device(cfg) == root


def test_config_to_sexpr_validates_programmatic_configs() -> None:
    good = DomainConfig(name="v", memory=65536, kernel="/k", root="/dev/xvda1")
    config_to_sexpr(good)
    for bad, code in [
        (dataclasses.replace(good, name=""), ErrorNumber.NO_NAME),
        (dataclasses.replace(good, memory=1000), ErrorNumber.XML_ERROR),
        (dataclasses.replace(good, vcpus=0), ErrorNumber.XML_ERROR),
        (dataclasses.replace(good, os_type="hvm"), ErrorNumber.OS_TYPE),
    ]:
        with pytest.raises(VirtError) as info:
            config_to_sexpr(bad)
        assert info.value.code == code


@pytest.mark.parametrize(
    ("sxpr", "detail"),
    [
        ("(domain (domid 1) (memory 256))", "missing name"),
        ("(domain (name v))", "missing memory"),
        ("(domain (name v) (memory lots))", "memory"),
        ("(domain (name v) (memory -4))", "negative"),
        ("(domain (name v) (memory 4) (domid x))", "domid"),
        ("(domain (name v) (memory 4) (uuid nope))", "uuid"),
        ("(domain (name v) (memory 4) (vcpus many))", "vcpus"),
        ("(node (name v))", "(domain ...)"),
        ("v", "(domain ...)"),
        ("(domain (name v)", "unreadable"),
    ],
)
def test_bad_xend_records(sxpr: str, detail: str) -> None:
    with pytest.raises(VirtError) as info:
        sexpr_to_config(sxpr)
    assert info.value.code == ErrorNumber.INTERNAL_ERROR
    assert info.value.domain == ErrorDomain.XEND
    assert detail in str(info.value)


def test_memory_accepts_float_mib_from_xend() -> None:
    assert sexpr_to_config("(domain (name v) (memory 256.0))").memory == 262144


def test_descriptions_are_frozen() -> None:
    cfg = parse_domain_xml(SEED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    assert cfg.disks[0].uname == "file:/u/fc4.img"
    assert DiskConfig("block", "/dev/vg/x", "xvda").uname == "phy:/dev/vg/x"


def test_type_error_for_non_text() -> None:
    with pytest.raises(TypeError):
        parse_domain_xml(42)  # type: ignore[arg-type]
