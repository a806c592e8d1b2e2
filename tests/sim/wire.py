"""Byte-level clients of the simulated node's servers: raw HTTP, xenstore frames, privcmd.

Deliberately raw, so the tests pin what goes over the wire, not what one of our own clients
makes of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiovirt.protocol.privcmd import (
    REPLY,
    REQUEST,
    DomainInfoRecord,
    PrivcmdOp,
    decode_domain_infos,
)
from aiovirt.protocol.xs_wire import Message, XsOp, encode
from aiovirt.sim import SimNode
from tests.support.xs_raw import RawXsConnection


@dataclass
class HttpReply:
    """One HTTP reply as it came over the wire."""

    status_line: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status(self) -> int:
        """Return the numeric status."""
        return int(self.status_line.split(" ", 2)[1])

    @property
    def reason(self) -> str:
        """Return the reason phrase."""
        return self.status_line.split(" ", 2)[2]

    def header(self, name: str) -> str | None:
        """Return the first header called ``name`` (case-insensitive)."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def text(self) -> str:
        """Return the body as text."""
        return self.body.decode()


async def read_reply(reader: asyncio.StreamReader) -> HttpReply | None:
    """Read one reply (body by Content-length); None if the server closed first."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = await reader.read(1)
        if not chunk:
            return None
        head += chunk
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:] if line]
    reply = HttpReply(lines[0], [(k, v) for k, v in headers], b"")
    length = int(reply.header("Content-length") or 0)
    reply.body = await reader.readexactly(length) if length else b""
    return reply


def build_request(method: str, path: str, body: str | bytes | None = None, *,
                  headers: dict[str, str] | None = None, form: bool = True) -> bytes:
    """Return request bytes shaped like libvirt's (no User-Agent, no Accept) unless told."""
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost:8000", "Accept-Encoding: identity"]
    data = body.encode() if isinstance(body, str) else (body or b"")
    if form:
        lines.append("Content-Type: application/x-www-form-urlencoded")
    if body is not None:
        lines.append(f"Content-Length: {len(data)}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def http(node: SimNode, method: str, path: str, body: str | bytes | None = None, *,
               headers: dict[str, str] | None = None, form: bool = True,
               tcp: bool = False) -> HttpReply:
    """Send one request on a new connection to the node's xend and return the reply."""
    if tcp:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.xend_port)
    else:
        reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    try:
        writer.write(build_request(method, path, body, headers=headers, form=form))
        await writer.drain()
        async with asyncio.timeout(10):
            reply = await read_reply(reader)
        assert reply is not None, f"xend closed the connection on {method} {path}"
        return reply
    finally:
        writer.close()


class RawXs(RawXsConnection):
    """A raw xenstore connection: send frames, read replies and events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.pending: list[Message] = []
        self.req_id = 0

    async def next(self) -> Message | None:
        """Return the next frame (reply or event), None at end of stream."""
        while not self.pending:
            frames = await self.read_frames()
            if frames is None:
                return None
            self.pending.extend(frames)
        return self.pending.pop(0)

    async def call(self, op: XsOp, *args: str) -> Message:
        """Send one request and return its reply (events are skipped)."""
        self.req_id += 1
        payload = b"".join(a.encode() + b"\0" for a in args)
        if op in (XsOp.WRITE,) and args:
            payload = payload[:-1]  # WRITE: path NUL value, no trailing NUL
        self.writer.write(encode(op, self.req_id, 0, payload))
        async with asyncio.timeout(10):
            while True:
                msg = await self.next()
                assert msg is not None, "xenstored closed the connection"
                if msg.op != XsOp.WATCH_EVENT and msg.req_id == self.req_id:
                    return msg


async def privcmd_records(path: str, first: int = 0, count: int = 8192) -> list[DomainInfoRecord]:
    """Return GETDOMAININFOLIST from the node's hypercall endpoint, over its socket."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(REQUEST.pack(PrivcmdOp.GETDOMAININFOLIST, 1, first, count, 0))
        head = await reader.readexactly(REPLY.size)
        _op, _seq, result, length = REPLY.unpack(head)
        payload = await reader.readexactly(length)
        assert result >= 0, f"GETDOMAININFOLIST failed with {result}"
        return decode_domain_infos(payload, result)
    finally:
        writer.close()


async def privcmd_call(path: str, op: PrivcmdOp, domid: int = 0, value: int = 0) -> int:
    """Make one privcmd call and return its result (``-errno`` on failure)."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(REQUEST.pack(op, 1, domid, 0, value))
        _op, _seq, result, length = REPLY.unpack(await reader.readexactly(REPLY.size))
        await reader.readexactly(length)
        return int(result)
    finally:
        writer.close()
