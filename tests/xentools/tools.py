"""Parsers for what ``xl`` and ``xentop`` print, and aiovirt's view of the same node."""

from __future__ import annotations

import re
import struct
import time
from typing import NamedTuple

import aiovirt
from aiovirt.domain import DomainInfo

_XL_ROW = re.compile(
    r"^(?P<name>\S+)\s+(?P<id>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+(?P<state>[-rbpscd]{6})"
    r"\s+(?P<time>\d+\.\d)(?:\s+(?P<uuid>[0-9a-f-]{36})\s+(?P<reason>\S+)\s+(?P<label>\S+))?$")


class XlRow(NamedTuple):
    """One line of ``xl list`` (memory in MiB, time in seconds)."""

    name: str
    domid: int
    mem_mib: int
    vcpus: int
    state: str
    time_s: float
    uuid: str | None


def xl_seconds(cpu_ns: int) -> float:
    """Return the seconds ``xl`` prints for a CPU time in nanoseconds.

    ``xl list`` and ``xl vcpu-list`` print ``(float)cpu_time / 1e9`` with ``%.1f``: the time is
    first narrowed to a C float (24 bits of mantissa, so about 0.02 s off at 300,000 s), then
    rounded to a tenth.  Both steps keep order, so a reading taken between two of aiovirt's lies
    between their ``xl_seconds``.
    """
    narrowed = struct.unpack("f", struct.pack("f", cpu_ns))[0]
    return float(f"{narrowed / 1e9:.1f}")


def parse_xl_list(text: str) -> list[XlRow]:
    """Return the rows of ``xl list`` or ``xl list -v`` output (the header is checked)."""
    lines = text.splitlines()
    assert lines and lines[0].startswith("Name"), text
    rows = []
    for line in lines[1:]:
        m = _XL_ROW.match(line)
        assert m, f"unexpected xl list line: {line!r}"
        rows.append(XlRow(m["name"], int(m["id"]), int(m["mem"]), int(m["vcpus"]), m["state"],
                          float(m["time"]), m["uuid"]))
    return rows


class TopRow(NamedTuple):
    """One domain of ``xentop -b``: CPU time in whole seconds, memory in KiB."""

    name: str
    state: str
    cpu_s: int
    mem_kib: int
    maxmem_kib: int | None
    vcpus: int


def parse_xentop(text: str) -> list[TopRow]:
    """Return the domain rows of one ``xentop -b -i 1`` frame."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and lines[0].split()[0] == "NAME", text
    head = lines[0].split()
    rows = []
    for line in lines[1:]:
        # MAXMEM may read "no limit" (two words, and its percentage "n/a").
        fields = line.replace("no limit", "no-limit").split()
        cols = dict(zip(head, fields, strict=True))
        maxmem = None if cols["MAXMEM(k)"] == "no-limit" else int(cols["MAXMEM(k)"])
        rows.append(TopRow(cols["NAME"], cols["STATE"], int(cols["CPU(sec)"]),
                           int(cols["MEM(k)"]), maxmem, int(cols["VCPUS"])))
    return rows


class Seen(NamedTuple):
    """A domain as aiovirt reports it."""

    domid: int
    name: str
    uuid: str
    info: DomainInfo


async def aiovirt_view(conn: aiovirt.Connection) -> tuple[dict[int, Seen], float]:
    """Return every domain aiovirt reports, by id, and the ``time.monotonic()`` of the read."""
    domains = await conn.list_domains()
    when = time.monotonic()
    infos = await conn.domain_infos(domains)
    return {d.id: Seen(d.id, d.name, d.uuid_string, info) for d, info in infos}, when
