"""xend's S-expression dialect: reading, writing, lookups and parse errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.sexpr import (
    SExpr,
    SexprError,
    dumps,
    find_all,
    format_float,
    lookup,
    lookup_list,
    parse,
    parse_all,
    to_dict,
)

DATA = Path(__file__).parent / "data"

# Every S-expression quoted in the references (xend-http.md, libvirt-0.0.6.md).
REFERENCE_EXAMPLES = [
    "(Domain-0 vm1)",
    "(ls )",
    "(ls  node domain vnet)",
    "(xend.err 'Cannot pause privileged domain 0')",
    "(xend.err \"can't connect: Connection refused\")",
    "(xend.err \"'reason'\")",
    "(vbd (dom 3 id 2064))",
    "\"{'cap': 0, 'weight': 256}\"",
    "(sedf (domain 3) (period '20000000') (slice '5000000') (latency '0') (extratime 1) "
    "(weight 0))",
    "(node (system Linux) (host xenhost1) (release 2.6.16.29-xen) "
    "(version '#1 SMP Tue Oct 17 10:22:51 BST 2006') (machine x86_64) (nr_cpus 2) "
    "(hw_caps bfebfbff:20100800:00000000:00000140:0000e3bd:00000000:00000001) "
    "(xen_caps 'xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64') "
    "(cc_compiler 'gcc version 4.1.1 20060525 (Red Hat 4.1.1-1)') (xend_config_format 2))",
    "(domain (domid 3) (state '??????'))",
    "(vbd (backend 0) (dev sda1:disk) (uname file:/var/lib/xen/images/vm1.img) (mode w))",
    "(device (vbd (uname phy:/dev/vg/d) (dev sdb) (mode w)))",
]


# Where our writer cannot reproduce xend's text byte for byte: xend wrote an empty string as
# nothing (it reads back as no value at all), and quoted Python longs, whose type the text loses.
REWRITTEN = {
    "(ls )": "(ls)",
    "(ls  node domain vnet)": "(ls node domain vnet)",
    "(sedf (domain 3) (period '20000000') (slice '5000000') (latency '0') (extratime 1) "
    "(weight 0))": "(sedf (domain 3) (period 20000000) (slice 5000000) (latency 0) "
    "(extratime 1) (weight 0))",
}


@pytest.mark.parametrize("text", REFERENCE_EXAMPLES)
def test_reference_examples_read_and_write_back_unchanged(text: str) -> None:
    value = parse(text)
    assert dumps(value) == REWRITTEN.get(text, text)
    assert parse(dumps(value)) == value


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.sexpr")))
def test_fixture_sexprs_round_trip(name: str) -> None:
    text = (DATA / name).read_text().strip()
    value = parse(text)
    assert parse(dumps(value)) == value
    # xend's own emissions come back byte for byte, except `(features )` style empty values.
    assert dumps(value).replace("(features)", "(features )").replace(
        "(bootloader_args)", "(bootloader_args )").replace("(bootloader)", "(bootloader )") == text


def test_atoms_are_strings_and_lists_are_lists() -> None:
    assert parse("(domain (domid 3) (name vm1))") == ["domain", ["domid", "3"], ["name", "vm1"]]
    assert parse("()") == []
    assert parse("atom") == "atom"
    assert parse("'quoted atom'") == "quoted atom"


def test_quote_inside_an_atom_is_literal() -> None:
    assert parse('(ab"c d\'e)') == ["ab\"c", "d'e"]


def test_escapes_are_decoded() -> None:
    text = r"""('a\nb' "c\td" 'it\'s' '\x41\102' 'back\\slash' 'keep\q')"""
    assert parse(text) == ["a\nb", "c\td", "it's", "AB", "back\\slash", "keep\\q"]


def test_utf8_escapes_make_text() -> None:
    assert parse(r"'caf\xc3\xa9'") == "café"
    assert dumps("café") == r"'caf\xc3\xa9'"


def test_comments_and_whitespace_are_skipped() -> None:
    assert parse("(a # comment )\n b\t\r\n c)") == ["a", "b", "c"]


def test_parse_all_returns_every_top_level_value() -> None:
    assert parse_all("(a) b (c d)") == [["a"], "b", ["c", "d"]]
    assert parse_all("") == []
    assert parse_all(b"  ") == []


def test_bytes_input_with_invalid_utf8_is_read() -> None:
    value = parse(b"(name \xff\xfe)")
    assert isinstance(value, list) and value[0] == "name"
    assert parse(dumps(value)) == value


@pytest.mark.parametrize(
    ("atom", "written"),
    [
        ("vm1", "vm1"),
        ("/boot/vmlinuz-2.6.16-xen", "/boot/vmlinuz-2.6.16-xen"),
        ("00:16:3e:5a:0c:1f", "00:16:3e:5a:0c:1f"),
        ("~user_1.x", "~user_1.x"),
        ("@", "@"),
        ("/dev/sda1 ro", "'/dev/sda1 ro'"),
        ("console=tty0", "'console=tty0'"),
        ("can't", '"can\'t"'),
        ("both ' and \"", "'both \\' and \"'"),
        ("a\nb\tc\\", "'a\\nb\\tc\\\\'"),
        ("#x", "'#x'"),
        ("(x)", "'(x)'"),
        ("??????", "'??????'"),
        ("\x01", "'\\x01'"),
    ],
)
def test_writer_quotes_like_xend(atom: str, written: str) -> None:
    assert dumps(atom) == written
    assert parse(written) == atom


def test_writer_formats_python_values_like_xend() -> None:
    assert dumps(["cpu_time", 18.732104588, "vcpus", 2, "ok", True]) == (
        "(cpu_time 18.732104588 vcpus 2 ok True)"
    )
    assert format_float(1161104725.4305) == "1161104725.43"
    assert format_float(1234.56789012345) == "1234.56789012"
    assert format_float(1.0) == "1.0"
    assert dumps([]) == "()"
    with pytest.raises(TypeError):
        dumps(object())  # type: ignore[arg-type]


def test_empty_string_is_written_bare_as_xend_3_did() -> None:
    assert dumps(["features", ""]) == "(features )"
    assert parse("(features )") == ["features"]


DOMAIN = parse((DATA / "xend-3.0.3-vm1.sexpr").read_text())


def test_lookup_paths() -> None:
    assert lookup(DOMAIN, "domain/memory") == "256"
    assert lookup(DOMAIN, "domain/image/linux/kernel") == "/boot/vmlinuz-2.6.16.29-xen"
    assert lookup(DOMAIN, "domain/image/linux/root") == "/dev/sda1 ro"
    assert lookup(DOMAIN, "/domain/name/") == "vm1"
    assert lookup(DOMAIN, "domain/features") == ""
    assert lookup(DOMAIN, "domain/nosuch") is None
    assert lookup(DOMAIN, "domain/nosuch", "dflt") == "dflt"
    assert lookup(DOMAIN, "node/memory") is None  # the first segment must match the head
    assert lookup("atom", "domain") is None
    assert lookup(DOMAIN, "domain/image") is None  # a list, not an atom


def test_lookup_list_returns_the_tail() -> None:
    assert lookup_list(DOMAIN, "domain/image/linux/args") == ["console=tty0 4"]
    assert lookup_list(DOMAIN, "domain/features") == []
    assert lookup_list(DOMAIN, "domain/nope") is None


def test_find_all_devices_in_order() -> None:
    devices = find_all(DOMAIN, "device")
    assert [d[1][0] for d in devices] == ["vif", "vbd"]
    assert lookup(devices[1][1], "vbd/uname") == "file:/var/lib/xen/images/vm1.img"
    assert find_all("atom", "device") == []


def test_to_dict_plain_values() -> None:
    d = to_dict(parse(
        "(r (a 1) (b) (c x y) (d (e 2)) (a 3) (a 4) (f (g) (h)) (cpumap (0 1 2)) (m x (y)))"
    ))
    assert d == {
        "a": ["1", "3", "4"],
        "b": "",
        "c": ["x", "y"],
        "d": {"e": "2"},
        "f": {"g": "", "h": ""},
        "cpumap": [["0", "1", "2"]],
        "m": ["x", ["y"]],
    }
    image = to_dict(DOMAIN)["image"]
    assert image == {"linux": {"kernel": "/boot/vmlinuz-2.6.16.29-xen",
                               "ramdisk": "/boot/initrd-2.6.16.29-xen.img",
                               "root": "/dev/sda1 ro", "args": "console=tty0 4"}}
    with pytest.raises(TypeError):
        to_dict("atom")


@pytest.mark.parametrize(
    ("text", "offset", "reason"),
    [
        ("(a b", 0, "unterminated list"),
        ("(a (b c", 3, "unterminated list"),
        ("a)", 1, "unbalanced"),
        ("(a 'b c)", 3, "unterminated string"),
        ('"abc', 0, "unterminated string"),
        ("", 0, "no value"),
        ("   # only a comment", 19, "no value"),
        ("(a) (b)", 4, "text after the first value"),
        ("x y", 2, "text after the first value"),
        ("(" * 201, 200, "nested deeper"),
    ],
)
def test_parse_errors_name_the_offset(text: str, offset: int, reason: str) -> None:
    with pytest.raises(SexprError) as info:
        parse(text)
    err = info.value
    assert err.offset == offset
    assert reason in err.reason
    assert f"offset {offset}" in str(err)
    assert isinstance(err, VirtError) and isinstance(err, ValueError)
    assert err.code == ErrorNumber.PARSE_FAILED
    assert err.domain == ErrorDomain.SEXPR
    assert err.int1 == offset


def test_round_trip_of_nested_structure() -> None:
    value: SExpr = ["a", ["b", ["c", "d e", "'"]], [], "x\"y", ["\\"]]
    assert parse(dumps(value)) == value


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        "'" + "\\\n" * 50_000,  # once made the string pattern backtrack exponentially
        '"' + "\\\n" * 50_000,
        "'" + "\\" * 100_001,
        "(" * 150 + "'" + "a\\" * 50_000,
        "(" + "x " * 100_000,
    ],
)
def test_pathological_input_fails_in_linear_time(text: str) -> None:
    with pytest.raises(SexprError):
        parse(text)
