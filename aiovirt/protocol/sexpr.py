"""xend's S-expressions, read and written as xend 3.x emits and accepts them (sans-IO).

Representation: an atom is a ``str`` (xend has no numbers on the wire, every atom is text) and a
list is a Python ``list``. ``parse("(domain (domid 3) (name vm1))")`` gives
``["domain", ["domid", "3"], ["name", "vm1"]]`` and :func:`dumps` gives the text back.

Reader (xend's ``sxp.py``): ``(`` and ``)``; whitespace; ``#`` comments to end of line; strings
in ``'`` or ``"`` with C/Python escapes (``\\n``, ``\\xHH``, ``\\ooo`` ...; an unknown escape keeps
its backslash, as xend 4.x does); any other run of characters is an atom (a quote inside an
atom is literal). Writer: one space between items, atoms bare when they consist only of
``A-Z a-z 0-9 . - _ : / ~`` (or are ``@`` or empty), otherwise quoted like Python 2's
``repr(str)``: single quotes unless the text holds ``'`` and no ``"``.

Both directions have a fast path through the C ``json`` module for the regular text xend sends
(a 1,000-domain list is about 700 KB), and an item-by-item path that handles everything else
and gives the exact errors; tests compare both with plain reference implementations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import TypeAlias

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError

SExpr: TypeAlias = str | list["SExpr"]
# What dumps() writes: also Python numbers and booleans anywhere, printed as xend prints them.
SExprOut: TypeAlias = str | int | float | Sequence["SExprOut"]

__all__ = [
    "SExpr",
    "SExprOut",
    "SexprError",
    "dumps",
    "find_all",
    "format_float",
    "lookup",
    "lookup_list",
    "parse",
    "parse_all",
    "to_dict",
]


class SexprError(VirtError, ValueError):
    """Malformed S-expression text; ``offset`` is where in the input the reader gave up."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(
            ErrorNumber.PARSE_FAILED,
            ErrorDomain.SEXPR,
            f"S-expression: {reason} at offset {offset}",
            int1=offset,
        )
        self.reason = reason
        self.offset = offset


_TOKEN = re.compile(
    r"""
      (?P<ws>[ \t\n\r\v\f]+)
    | (?P<comment>\#[^\n]*)
    | (?P<open>\()
    | (?P<close>\))
    | (?P<sq>'(?:[^'\\]|\\.)*')
    | (?P<dq>"(?:[^"\\]|\\.)*")
    | (?P<badq>['"])
    | (?P<atom>[^ \t\n\r\v\f()\#'"][^ \t\n\r\v\f()\#]*)
    """,
    re.VERBOSE | re.DOTALL,
)

_SIMPLE_ESCAPES = {
    "a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13,
    "\\": 92, "'": 39, '"': 34,
}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", re.DOTALL)


def _utf8(text: str) -> bytes:
    # Text that came from bytes carries undecodable bytes as surrogate escapes; a lone surrogate
    # from elsewhere is kept as its (invalid) UTF-8 form rather than crashing the reader.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(body):
        out += _utf8(body[pos:m.start()])
        esc = m.group(1)
        if esc[0] == "x" and len(esc) == 3:
            out.append(int(esc[1:], 16))
        elif esc[0] in "01234567":
            out.append(int(esc, 8) & 0xFF)
        elif esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
        else:
            out += _utf8("\\" + esc)
        pos = m.end()
    out += _utf8(body[pos:])
    return out.decode("utf-8", "surrogateescape")


MAX_DEPTH = 200  # xend's deepest expressions nest 5 levels; this only stops hostile input


# The fast reader. xend's replies are large (about 700 KB for 1,000 domains) and regular, so
# rather than match one token at a time in Python it rewrites the text as JSON with a few
# C-level string passes and lets the json module build the lists. It only vouches for text
# whose reading it can prove equal to _scan_values's: quoted strings that start a token, no
# comment, no character that would mean something else in JSON or to str.split(), nesting
# within MAX_DEPTH, balanced lists. Anything else (including every malformed text) goes to
# _scan_values, which gives the same values or the exact error.

_STRING_SPLIT = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.DOTALL)
_SEPARATORS = " \t\n\r\v\f()"
# Bytes (of UTF-8 text outside quoted strings) that need no closer look: the separators and
# the ASCII a plain atom may hold, less quotes, comments, backslashes and JSON's brackets.
_PLAIN_ASCII = bytes(b for b in range(0x20, 0x80) if chr(b) not in "'\"#\\[]") + b"\t\n\r\v\f"
_NOT_PARENS = bytes(b for b in range(256) if b not in b"()")
# The closer look: those characters, the C0 controls JSON refuses raw, and what str.split()
# takes for whitespace beyond [ \t\n\r\v\f].
_NOT_PLAIN = re.compile(
    "['\"#\\\\\\[\\]\x00-\x08\x0e-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_STRING_MARK = "\x00"  # stands for a quoted string while the rest becomes JSON


def _plain_and_nested_within_limit(plain: str) -> bool:
    """Return True if ``plain`` (text outside strings) holds only separators and plain atoms,
    and its lists are balanced and nest at most MAX_DEPTH deep."""
    raw = plain.encode("utf-8", "surrogatepass")
    if raw.translate(None, _PLAIN_ASCII) and _NOT_PLAIN.search(plain) is not None:
        return False
    parens = raw.translate(None, _NOT_PARENS)
    # Each pass removes every innermost list, so the passes needed are the deepest nesting.
    for _ in range(MAX_DEPTH):
        if not parens:
            return True
        parens = parens.replace(b"()", b"")
    return not parens


def _read_values(text: str) -> list[SExpr] | None:
    """Return every value in ``text``, or None when only :func:`_scan_values` may read it."""
    strings: list[str] = []
    if "'" in text or '"' in text:
        pieces = _STRING_SPLIT.split(text)
        plains = pieces[0::2]
        for before, quoted in zip(plains[:-1], pieces[1::2], strict=True):
            if before and before[-1] not in _SEPARATORS:
                return None  # a quote inside an atom is literal: leave it to the scanner
            strings.append(json.dumps(_unescape(quoted[1:-1]), ensure_ascii=False))
        plain = "".join(plains)
        if strings:
            text = f" {_STRING_MARK} ".join(plains)
    else:
        plain = text
    if not _plain_and_nested_within_limit(plain):
        return None
    tokens = text.replace("(", " [ ").replace(")", " ] ").split()
    if not tokens:
        return []
    # Every atom quoted, then the (proven balanced) list markers unquoted: [] first, then an
    # opening marker with its following comma and a closing one with its preceding comma.
    doc = ('["' + '","'.join(tokens) + '"]').replace('"[","]"', "[]")
    doc = doc.replace('"[",', "[").replace(',"]"', "]")
    if strings:
        parts = doc.split(f'"{_STRING_MARK}"')
        doc = "".join([x for pair in zip(parts[:-1], strings, strict=True) for x in pair]
                      + parts[-1:])
    try:
        values: list[SExpr] = json.loads(doc)
    except ValueError:  # pragma: no cover - the checks above make the JSON well formed
        return None
    return values


def _values(text: str) -> Iterator[SExpr]:
    """Yield every value of ``text``; raise :class:`SexprError` where the text goes wrong."""
    values = _read_values(text)
    if values is None:
        return _scan_values(text)
    return iter(values)


def _scan_values(text: str) -> Iterator[SExpr]:
    """Yield the values of ``text`` one token at a time (exact in its errors and offsets)."""
    stack: list[list[SExpr]] = []
    opened: list[int] = []
    pos = 0
    end = len(text)
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:  # pragma: no cover - every character starts some token
            raise SexprError("unexpected character", pos)
        kind = m.lastgroup
        if kind == "atom":
            value: SExpr = m.group()
        elif kind == "open":
            if len(stack) >= MAX_DEPTH:
                raise SexprError(f"lists nested deeper than {MAX_DEPTH}", pos)
            stack.append([])
            opened.append(pos)
            pos = m.end()
            continue
        elif kind == "close":
            if not stack:
                raise SexprError("unbalanced ')'", pos)
            value = stack.pop()
            opened.pop()
        elif kind == "sq" or kind == "dq":
            value = _unescape(m.group()[1:-1])
        elif kind == "badq":
            raise SexprError("unterminated string", pos)
        else:
            pos = m.end()
            continue
        pos = m.end()
        if stack:
            stack[-1].append(value)
        else:
            yield value
    if stack:
        raise SexprError("unterminated list opened", opened[-1])


def _as_text(data: str | bytes | bytearray | memoryview) -> str:
    if isinstance(data, str):
        return data
    return bytes(data).decode("utf-8", "surrogateescape")


def parse_all(data: str | bytes | bytearray | memoryview) -> list[SExpr]:
    """Return every top-level value in ``data`` (possibly none)."""
    return list(_values(_as_text(data)))


def parse(data: str | bytes | bytearray | memoryview) -> SExpr:
    """Return the single value in ``data``; raise :class:`SexprError` if there is none or more."""
    text = _as_text(data)
    values = _values(text)
    first = next(values, None)
    if first is None:
        raise SexprError("no value in input", len(text))
    for _extra in values:
        raise SexprError("text after the first value", _offset_of_second(text))
    return first


def _offset_of_second(text: str) -> int:
    depth = 0
    seen = False
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover
            return pos
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            pass
        elif seen and depth == 0:
            return pos
        elif kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
            seen = seen or depth == 0
        else:
            seen = seen or depth == 0
        pos = m.end()
    return pos


_BARE = re.compile(r"[A-Za-z0-9.\-_:/~]*\Z")
_REPR_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(text: str) -> str:
    quote = '"' if ("'" in text and '"' not in text) else "'"
    out = [quote]
    for ch in text:
        if ch in _REPR_ESCAPES:
            out.append(_REPR_ESCAPES[ch])
        elif ch == quote:
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in _utf8(ch))
    out.append(quote)
    return "".join(out)


def _dump_atom(atom: str) -> str:
    if atom == "@" or _BARE.match(atom):
        return atom
    return _quote(atom)


def dumps(expr: SExprOut) -> str:
    """Return ``expr`` written the way xend does: ``(a b (c d))``, atoms quoted only if needed.

    Lists and tuples are lists; ints, floats and booleans are written as xend's Python did.
    """
    text = _write_json_shaped(expr)
    return _write(expr) if text is None else text


def _write(expr: SExprOut) -> str:
    """Return ``expr`` written item by item: the reference writer, for every kind of value."""
    if isinstance(expr, list | tuple):
        return "(" + " ".join(_write(item) for item in expr) + ")"
    if isinstance(expr, bool):
        return "True" if expr else "False"
    if isinstance(expr, int):
        return str(expr)
    if isinstance(expr, float):
        return format_float(expr)
    if isinstance(expr, str):
        return _dump_atom(expr)
    raise TypeError(f"cannot write {type(expr).__name__} as an S-expression")


# The fast writer: json.dumps (C) writes lists and strings; a run of list markers and bare atoms
# then becomes S-expression text with a few string replacements, and only the atoms that need
# quoting go through Python. A number, a boolean or anything else JSON-shaped differently
# leaves a gap in the runs, and then _write does the whole job.
_JSON_RUN = re.compile(
    r'((?:[\[\],]*+"(?:[A-Za-z0-9.\-_:/~]*+|@)")*+[\[\],]*+)("(?:[^"\\]|\\.)*")?')


def _write_json_shaped(expr: SExprOut) -> str | None:
    """Return ``expr`` written, if it holds only lists, tuples and strings; else None."""
    try:
        doc = json.dumps(expr, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None
    out: list[str] = []
    pos = 0
    end = len(doc)
    # The pattern matches (maybe emptily) wherever a match may start, so the matches are
    # contiguous until the first empty one, which is at the end or at a gap.
    for m in _JSON_RUN.finditer(doc):
        run, atom = m.group(1, 2)
        if run:
            out.append(run.replace('"', "").replace(",", " ").replace("[", "(")
                       .replace("]", ")"))
        elif atom is None:
            return "".join(out) if pos == end else None
        if atom is not None:
            out.append(_dump_atom(json.loads(atom)))
        pos = m.end()
    return None  # pragma: no cover - finditer always ends with an empty match at the end


def format_float(value: float) -> str:
    """Format a float as Python 2's ``str()`` did: 12 significant digits, ``1.0`` stays."""
    text = f"{value:.12g}"
    if "e" not in text and "." not in text and "inf" not in text and "nan" not in text:
        text += ".0"
    return text


def _children(expr: SExpr, head: str) -> Iterator[list[SExpr]]:
    if isinstance(expr, list):
        for item in expr[1:]:
            if isinstance(item, list) and item and item[0] == head:
                yield item


def lookup_list(expr: SExpr, path: str) -> list[SExpr] | None:
    """Return the tail of the list at ``a/b/c`` (first match at each step), or None.

    The first segment must equal the root's head, as in libvirt and xend.
    """
    parts = path.strip("/").split("/")
    if not isinstance(expr, list) or not expr or expr[0] != parts[0]:
        return None
    node: list[SExpr] = expr
    for part in parts[1:]:
        found = next(_children(node, part), None)
        if found is None:
            return None
        node = found
    return node[1:]


def lookup(expr: SExpr, path: str, default: str | None = None) -> str | None:
    """Return the atom value at ``a/b/c``; a key with no value (``(features )``) gives ``""``."""
    tail = lookup_list(expr, path)
    if tail is None:
        return default
    if not tail:
        return ""
    first = tail[0]
    return first if isinstance(first, str) else default


def find_all(expr: SExpr, head: str) -> list[list[SExpr]]:
    """Return every direct child list of ``expr`` whose head atom is ``head``."""
    return list(_children(expr, head))


_NUMBER = re.compile(r"[-+]?[0-9][0-9.]*\Z")


def _is_field(expr: SExpr) -> bool:
    # A sub-list reads as a named field unless its head is a number (``(cpumap (0 1 2))``).
    return (isinstance(expr, list) and bool(expr) and isinstance(expr[0], str)
            and not _NUMBER.match(expr[0]))


def to_dict(expr: SExpr) -> dict[str, object]:
    """Turn a record ``(head (k v) (k2 (sub ...)) (k3))`` into ``{"k": "v", "k2": {...}, ...}``.

    A key with no value maps to ``""``, one with a single atom to that atom, one whose values
    are all named fields to a nested dict, anything else to a list of plain values (atoms and
    lists); a key that repeats maps to a list of its values in order.
    """
    if not isinstance(expr, list):
        raise TypeError("to_dict needs a list")
    result: dict[str, object] = {}
    repeated: set[str] = set()
    for item in expr[1:]:
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            continue
        key = item[0]
        tail = item[1:]
        value: object
        if not tail:
            value = ""
        elif len(tail) == 1 and isinstance(tail[0], str):
            value = tail[0]
        elif all(_is_field(t) for t in tail):
            value = to_dict(item)
        else:
            value = [_plain(t) for t in tail]
        if key in result:
            prev = result[key]
            if isinstance(prev, list) and key in repeated:
                prev.append(value)
            else:
                result[key] = [prev, value]
                repeated.add(key)
        else:
            result[key] = value
    return result


def _plain(expr: SExpr) -> object:
    if isinstance(expr, str):
        return expr
    return [_plain(e) for e in expr]
