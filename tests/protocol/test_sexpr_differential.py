"""The S-expression reader and writer against plain reference implementations kept here.

``aiovirt.protocol.sexpr`` reads through a fast path (the text rewritten as JSON) and falls back
to a token scanner; it writes through ``json.dumps`` and falls back to an item-by-item writer.
The references below are written the obvious way, one character (or item) at a time, straight
from the dialect's description; for any text (generated S-expressions, near-misses, arbitrary
strings and bytes) the module must give the same values, or the same error reason and offset.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aiovirt.protocol import sexpr
from aiovirt.protocol.sexpr import MAX_DEPTH, SExpr, SexprError, dumps, parse, parse_all

pytestmark = pytest.mark.timeout(120)

# -- the reference reader -----------------------------------------------------------------------

WS = " \t\n\r\v\f"
HEX = "0123456789abcdefABCDEF"
OCTAL = "01234567"
SIMPLE = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, "\\": 92, "'": 39, '"': 34}


class RefError(Exception):
    """The reference reader's complaint: a reason and the offset where it gave up."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason, offset)
        self.reason = reason
        self.offset = offset


def ref_utf8(text: str) -> bytes:
    """Return ``text`` as UTF-8, undecodable bytes back as bytes, other surrogates kept."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def ref_unescape(body: str) -> str:
    """Return the value of a quoted string's ``body`` (C/Python escapes; unknown ones kept)."""
    if "\\" not in body:
        return body
    out = bytearray()
    literal: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 == len(body):
            literal.append(ch)
            i += 1
            continue
        out += ref_utf8("".join(literal))
        literal = []
        nxt = body[i + 1]
        if nxt == "x" and len(body) >= i + 4 and body[i + 2] in HEX and body[i + 3] in HEX:
            out.append(int(body[i + 2:i + 4], 16))
            i += 4
        elif nxt in OCTAL:
            j = i + 1
            while j < len(body) and j < i + 4 and body[j] in OCTAL:
                j += 1
            out.append(int(body[i + 1:j], 8) & 0xFF)
            i = j
        elif nxt in SIMPLE:
            out.append(SIMPLE[nxt])
            i += 2
        else:
            out += ref_utf8("\\" + nxt)
            i += 2
    out += ref_utf8("".join(literal))
    return out.decode("utf-8", "surrogateescape")


def ref_values(text: str) -> Iterator[tuple[int, SExpr]]:
    """Yield (offset where it starts, value) for each top-level value, reading lazily."""
    stack: list[tuple[int, list[SExpr]]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        value: SExpr
        if ch in WS:
            i += 1
            continue
        if ch == "#":
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
            continue
        start = i
        if ch == "(":
            if len(stack) >= MAX_DEPTH:
                raise RefError(f"lists nested deeper than {MAX_DEPTH}", i)
            stack.append((i, []))
            i += 1
            continue
        if ch == ")":
            if not stack:
                raise RefError("unbalanced ')'", i)
            start, value = stack.pop()
            i += 1
        elif ch in "'\"":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise RefError("unterminated string", i)
            value = ref_unescape(text[i + 1:j])
            i = j + 1
        else:
            j = i + 1
            while j < n and text[j] not in WS + "()#":
                j += 1
            value = text[i:j]
            i = j
        if stack:
            stack[-1][1].append(value)
        else:
            yield start, value
    if stack:
        raise RefError("unterminated list opened", stack[-1][0])


def as_text(data: str | bytes) -> str:
    """Return ``data`` as text, undecodable bytes as surrogate escapes."""
    return data if isinstance(data, str) else data.decode("utf-8", "surrogateescape")


def ref_parse_all(data: str | bytes) -> list[SExpr]:
    """Return every top-level value of ``data``."""
    return [value for _, value in ref_values(as_text(data))]


def ref_parse(data: str | bytes) -> SExpr:
    """Return the single value of ``data``; complain about none, or about a second one."""
    text = as_text(data)
    values = ref_values(text)
    first = next(values, None)
    if first is None:
        raise RefError("no value in input", len(text))
    for start, _ in values:
        raise RefError("text after the first value", start)
    return first[1]


def outcome(reader: Any, data: str | bytes) -> tuple[str, Any]:
    """Return ("value", v) or ("error", (reason, offset)) for ``reader(data)``."""
    try:
        return "value", reader(data)
    except (SexprError, RefError) as err:
        return "error", (err.reason, err.offset)


def assert_reads_alike(data: str | bytes) -> None:
    """Check parse and parse_all against the references on ``data``."""
    assert outcome(parse_all, data) == outcome(ref_parse_all, data)
    assert outcome(parse, data) == outcome(ref_parse, data)


# -- the reference writer -----------------------------------------------------------------------

BARE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_:/~")


def ref_quote(text: str) -> str:
    """Return ``text`` quoted as Python 2's repr() of a byte string did."""
    quote = '"' if "'" in text and '"' not in text else "'"
    out = [quote]
    for ch in text:
        if ch in "\\\n\t\r":
            out.append({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif ch == quote:
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ref_utf8(ch))
    out.append(quote)
    return "".join(out)


def ref_dumps(expr: Any) -> str:
    """Return ``expr`` written as xend writes it."""
    if isinstance(expr, list | tuple):
        return "(" + " ".join(ref_dumps(item) for item in expr) + ")"
    if isinstance(expr, bool):
        return "True" if expr else "False"
    if isinstance(expr, int):
        return str(expr)
    if isinstance(expr, float):
        text = f"{expr:.12g}"
        if not any(c in text for c in ".e") and math.isfinite(expr):
            text += ".0"
        return text
    if isinstance(expr, str):
        return expr if expr == "@" or all(c in BARE for c in expr) else ref_quote(expr)
    raise TypeError(f"cannot write {type(expr).__name__} as an S-expression")


# -- strategies ---------------------------------------------------------------------------------

# Characters that matter to one reader or the other: separators, quotes, comments, escapes,
# JSON's specials, C0 controls, what str.split() (but not xend) takes for whitespace, non-ASCII,
# surrogates (lone, escaped bytes and halves of a pair).
TRICKY = [*"()'\"\\#[]{},:@ \t\n\r\v\f", "\x00", "\x01", "\x1c", "\x1f", "\x7f", "\x85", "\xa0",
          "\u1680", "\u2003", "\u2028", "\u3000", "\u00e9", "\u20ac", "\U0001f600", "\ud83d",
          "\ude00", "\udc80", "\udcff", "\ud800", *"ax0x7z"]
tricky_text = st.lists(st.sampled_from(TRICKY), max_size=60).map("".join)
atom_text = st.one_of(
    st.text(alphabet="abcxyz0129.-_:/~", min_size=1, max_size=8),
    st.lists(st.sampled_from(TRICKY), min_size=1, max_size=6).map("".join),
)
escapes = st.sampled_from(["\\n", "\\t", "\\x41", "\\xe9", "\\xc3\\xa9", "\\x4", "\\101", "\\7",
                           "\\0000", "\\777", "\\q", "\\'", '\\"', "\\\\", "\\\n", "\\\ud800"])
string_body = st.lists(st.one_of(st.sampled_from(TRICKY), escapes), max_size=6).map("".join)
tokens = st.one_of(
    st.sampled_from(["(", ")", "()", "( )", "#c\n", "# c", " ", "\n", "\t "]),
    atom_text,
    string_body.map(lambda b: "'" + b.replace("'", "\\'") + "'"),
    string_body.map(lambda b: '"' + b.replace('"', '\\"') + '"'),
    st.sampled_from(["'", '"', "'unterminated", "\\"]),
)
separators = st.sampled_from(["", " ", "\n", "\t", "  ", "\r\n", "\x0b", "\xa0"])
token_text = st.lists(st.tuples(tokens, separators), max_size=40).map(
    lambda pairs: "".join(t + s for t, s in pairs))

# Noise a reader must skip between tokens: whitespace, xend's and str.split()'s, and comments.
noise = st.sampled_from([" ", "  ", "\n", "\t", "\r\n", " # note (\n", "\n#)'\"\n", "#\n",
                         "\x0b\x0c ", " \xa0 ", "\u2003"])
values: st.SearchStrategy[SExpr] = st.recursive(
    st.one_of(atom_text, st.text(min_size=1, max_size=8),
              st.sampled_from(["@", "@@", "a b", "[", "]", "[,]", '","'])),
    lambda kids: st.lists(kids, max_size=5), max_leaves=40)
out_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(atom_text, st.text(max_size=8), st.integers(), st.booleans(),
              st.floats(allow_nan=False), st.sampled_from(["", "@", "a,b", '"', "[]", "1"])),
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.lists(kids, max_size=3).map(tuple)),
    max_leaves=40)


# -- the reader ---------------------------------------------------------------------------------


@given(values)
def test_written_values_read_alike(value: SExpr) -> None:
    assert_reads_alike(dumps(value))


@given(st.lists(values, max_size=4), separators)
def test_several_written_values_read_alike(items: list[SExpr], sep: str) -> None:
    text = sep.join(dumps(v) for v in items)
    assert_reads_alike(text)
    assert_reads_alike(text.encode("utf-8", "surrogatepass"))


@given(values, st.lists(noise, min_size=1, max_size=8))
def test_written_values_with_comments_and_odd_spacing_read_alike(
        value: SExpr, gaps: list[str]) -> None:
    pieces = dumps(value).split(" ")
    text = "".join(p + gaps[i % len(gaps)] for i, p in enumerate(pieces))
    assert_reads_alike(text)


@given(token_text)
@example("(a 'b c' d)")
@example("(a'b 'c d')")
@example("(a'b 'c)")
@example("(x'y' z)")
@example("'a''b'")
@example("'abc'def")
@example("(a) b")
@example("(a) (b")
@example("(a) )")
@example(")(")
@example("(()")
@example("(a\xa0b)")
@example("(a [b] c)")
@example("(a [ ] b)")
@example("([ x ] [] ( ))")
@example("(a # b\n c)")
@example("(a #b (\n c) d)")
@example("('\ud83d\ude00' \"\ud83d\ude00\" '\udc80\\x41')")
@example("(a \"[\" ( ) \"]\" ())")
@example("('\ud83d' '\ude00' \ud83d\ude00)")
@example("(# comment (\n a)")
def test_token_soup_reads_alike(text: str) -> None:
    assert_reads_alike(text)


@given(tricky_text)
def test_tricky_text_reads_alike(text: str) -> None:
    assert_reads_alike(text)


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_arbitrary_text_and_bytes_read_alike(data: str | bytes) -> None:
    assert_reads_alike(data)


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 50])
@pytest.mark.parametrize("shape", ["chain", "wide", "unbalanced", "closed-early"])
def test_nesting_around_the_limit_reads_alike(depth: int, shape: str) -> None:
    chain = "(a " * depth + "x" + ")" * depth
    text = {
        "chain": chain,
        "wide": "(" + " ".join(["(b (c))"] * 150 + [chain]) + ")",
        "unbalanced": chain[:-1],
        "closed-early": ")" + chain,
    }[shape]
    assert_reads_alike(text)


def test_a_large_xend_like_reply_reads_alike() -> None:
    domain = ("(domain (domid {i}) (uuid 35bf992d-c9e9-c616-612e-7696a6cecc1b) (vcpus 1) "
              "(features ) (name vm{i}) (image (linux (kernel /boot/vmlinuz) (root '/dev/sda1 ro')"
              " (args \"it's\"))) (cpu_time 12.5) (state -b----))")
    text = "(" + "\n".join(domain.format(i=i) for i in range(300)) + ")"
    assert_reads_alike(text)
    assert_reads_alike(text.encode())


def test_the_fast_path_reads_xend_replies() -> None:
    # Not a behaviour a caller sees, only speed: xend's own replies must not fall back to the
    # token scanner.
    data = Path(__file__).parent / "data"
    texts = [p.read_text() for p in sorted(data.glob("*.sexpr"))]
    texts.append("(domain (domid 3) (features ) (x ()) (image (linux (root '/dev/sda1 ro'))))")
    assert texts
    for text in texts:
        assert sexpr._read_values(text) == ref_parse_all(text), text[:60]
        assert sexpr._write_json_shaped(ref_parse(text)) is not None


def test_split_whitespace_is_either_a_separator_or_refused_by_the_fast_path() -> None:
    # The fast path splits with str.split(); any other character it would split on must be
    # one it refuses, or an atom holding it would be read as two.
    for code in range(0x110000):
        ch = chr(code)
        if ch.isspace() and ch not in WS:
            assert sexpr._NOT_PLAIN.search(ch), hex(code)


# -- the writer ---------------------------------------------------------------------------------


def write_outcome(expr: Any) -> tuple[str, Any]:
    """Return ("text", t) or ("error", exception type) for dumps and ref_dumps alike."""
    try:
        return "text", dumps(expr)
    except (TypeError, RecursionError) as err:
        return "error", type(err)


def ref_write_outcome(expr: Any) -> tuple[str, Any]:
    """Return what :func:`write_outcome` returns, from the reference writer."""
    try:
        return "text", ref_dumps(expr)
    except (TypeError, RecursionError) as err:
        return "error", type(err)


@given(out_values)
@example(["a", ["b", ("c", 1)], True, 1.5, -3])
@example(["a,b", "[", "]", "@", "@x", "", " "])
@example(["\ud83d", "\ude00", "\udcff", "\x00\x1f\x7f", "caf\u00e9"])
@example(["a b\ud83d\ude00", "\ud83d\ude00"])
@example(float("inf"))
@example({"a": "b"})
@example(["ok", None])
def test_dumps_writes_as_the_reference(expr: Any) -> None:
    assert write_outcome(expr) == ref_write_outcome(expr)


def test_dumps_of_a_cycle_fails_as_the_reference() -> None:
    cycle: list[Any] = ["a"]
    cycle.append(cycle)
    assert write_outcome(cycle) == ref_write_outcome(cycle) == ("error", RecursionError)


def test_dumps_of_str_and_int_subclasses_writes_their_text() -> None:
    class Name(str):
        __slots__ = ()

    class Count(int):
        def __str__(self) -> str:
            return "count"

    items: Sequence[Any] = [Name("vm 1"), Name("vm2"), Count(3)]
    assert dumps(items) == ref_dumps(items) == "('vm 1' vm2 count)"
