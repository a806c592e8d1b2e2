"""hypothesis fuzzing of every decoder: only the codec's own error, no hang, bounded memory.

The xenstore codec's fuzz lives with its other tests, in ``test_xs_wire.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aiovirt.errors import VirtError
from aiovirt.protocol.domxml import (
    DiskConfig,
    DomainConfig,
    InterfaceConfig,
    InterfaceType,
    config_to_sexpr,
    config_to_xml,
    parse_domain_xml,
    sexpr_to_config,
)
from aiovirt.protocol.sexpr import SExpr, SexprError, dumps, parse, parse_all
from aiovirt.protocol.xen import MAX_MEMORY_KIB

pytestmark = pytest.mark.timeout(60)

SEXPR_CHARS = st.sampled_from([*"()'\"\\# \t\nabc0x7:/-_.~@", "\u00e9", "\x00", "\udcff"])
sexpr_text = st.lists(SEXPR_CHARS, max_size=200).map("".join)
atoms = st.text(min_size=1, max_size=20)
sexprs: st.SearchStrategy[SExpr] = st.recursive(
    atoms, lambda kids: st.lists(kids, max_size=5), max_leaves=30
)


@given(st.one_of(sexpr_text, st.text(max_size=200), st.binary(max_size=200)))
def test_sexpr_parse_raises_only_its_own_error(data: str | bytes) -> None:
    for reader in (parse, parse_all):
        try:
            reader(data)
        except SexprError as err:
            assert 0 <= err.offset <= len(data) + 1


@given(sexprs)
def test_sexpr_write_then_read_is_identity(value: SExpr) -> None:
    assert parse(dumps(value)) == value


@given(st.integers(min_value=0, max_value=5000))
def test_sexpr_deep_nesting_is_refused_not_recursed(depth: int) -> None:
    text = "(" * depth + "x" + ")" * depth
    try:
        value = parse(text)
    except SexprError as err:
        assert "nested" in err.reason
    else:
        assert dumps(value) == text


XML_CHARS = st.sampled_from(
    [*"<>/='\"&; \n", "domain", "name", "memory", "os", "type", "kernel", "devices", "disk",
     "source", "target", "interface", "xen", "linux", "131072", "<!DOCTYPE", "<!ENTITY", "&x;",
     "<?xml", "]>", "\x00", "\u00e9"]
)
xml_text = st.lists(XML_CHARS, max_size=60).map("".join)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(xml_text, st.text(max_size=200), st.binary(max_size=200)))
def test_domain_xml_parse_raises_only_virterror(data: str | bytes) -> None:
    try:
        parse_domain_xml(data)
    except VirtError:
        pass


@given(sexprs)
def test_sexpr_to_config_raises_only_virterror(value: SExpr) -> None:
    try:
        sexpr_to_config(["domain", ["name", "v"], ["memory", "4"], value])
        sexpr_to_config(value)
    except VirtError:
        pass


# Text XML can carry and xend's S-expressions can round-trip (no surrounding blanks; no empty).
xml_safe = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    min_size=1, max_size=15,
).map(str.strip).filter(bool)
paths = xml_safe.map(lambda s: "/" + s)
macs = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02x}" for x in b))
disks = st.builds(DiskConfig, st.sampled_from(["file", "block"]), paths, xml_safe, st.booleans())
nics = st.one_of(
    st.builds(InterfaceConfig, st.just("bridge"), st.one_of(st.none(), xml_safe),
              st.one_of(st.none(), macs), st.none(), st.one_of(st.none(), paths),
              st.one_of(st.none(), xml_safe)),
    st.builds(InterfaceConfig, st.just("ethernet"), st.none(), st.one_of(st.none(), macs),
              st.one_of(st.none(), st.just("10.0.0.1 10.0.0.2")), st.just("vif-route"),
              st.one_of(st.none(), xml_safe)),
)
configs = st.builds(
    DomainConfig,
    name=xml_safe,
    memory=st.integers(1024, MAX_MEMORY_KIB).map(lambda k: k // 1024 * 1024),
    vcpus=st.integers(1, 64),
    kernel=paths,
    initrd=st.one_of(st.none(), paths),
    root=paths,
    cmdline=st.one_of(st.none(), xml_safe),
    disks=st.lists(disks, max_size=3).map(tuple),
    interfaces=st.lists(nics, max_size=3).map(tuple),
    uuid=st.one_of(st.none(), st.uuids()),
)


@given(configs)
def test_config_round_trips_through_xml(cfg: DomainConfig) -> None:
    assert parse_domain_xml(config_to_xml(cfg)) == cfg


def _read_back_type(nic: InterfaceConfig) -> InterfaceType:
    # xend keeps no interface type: a vif with a bridge, or the vif-bridge script, is a bridge.
    script = (nic.script or "").rsplit("/", 1)[-1]
    return "bridge" if nic.bridge or script == "vif-bridge" else "ethernet"


@given(configs)
def test_config_round_trips_through_xends_create_config(cfg: DomainConfig) -> None:
    # xend reports targets without '/dev/' and with ':disk' appended, so both are read away.
    assume(all(not d.target.startswith("/dev/") and ":" not in d.target for d in cfg.disks))
    back = sexpr_to_config(parse(dumps(config_to_sexpr(cfg))))
    assert back == dataclasses.replace(
        cfg,
        current_memory=cfg.memory,
        interfaces=tuple(
            dataclasses.replace(n, type=_read_back_type(n)) for n in cfg.interfaces
        ),
    )
