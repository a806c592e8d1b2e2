"""Fixtures for the simulated xenstored's tests: an in-process daemon and a raw wire client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiovirt.protocol.xs_wire import Message, XsOp, encode
from aiovirt.sim.store import XenStoreDB
from aiovirt.sim.xenstored import XenStored
from tests.support.xs_raw import RawXsConnection

TIMEOUT = 5.0


class RawClient(RawXsConnection):
    """A raw xenstore wire client: requests with chosen req_id/tx_id, events kept apart."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.frames: list[Message] = []
        self.next_req = 1

    def send(self, op: int, payload: bytes, *, tx: int = 0, req: int | None = None) -> int:
        if req is None:
            req = self.next_req
            self.next_req += 1
        self.writer.write(encode(op, req, tx, payload))
        return req

    async def _fill(self) -> None:
        frames = await asyncio.wait_for(self.read_frames(), TIMEOUT)
        if frames is None:
            raise EOFError("daemon closed the connection")
        self.frames.extend(frames)

    async def reply(self, req: int) -> Message:
        """Return the reply to request ``req`` (events stay queued in ``frames``)."""
        while True:
            for i, m in enumerate(self.frames):
                if m.op != XsOp.WATCH_EVENT and m.req_id == req:
                    del self.frames[i]
                    return m
            await self._fill()

    async def call(self, op: int, payload: bytes, *, tx: int = 0) -> Message:
        return await self.reply(self.send(op, payload, tx=tx))

    async def ok(self, op: int, payload: bytes, *, tx: int = 0) -> bytes:
        m = await self.call(op, payload, tx=tx)
        assert m.op == op, f"{XsOp(op).name} {payload!r} -> {m}"
        return m.payload

    async def err(self, op: int, payload: bytes, *, tx: int = 0) -> str:
        m = await self.call(op, payload, tx=tx)
        assert m.op == XsOp.ERROR, f"{XsOp(op).name} {payload!r} expected an error, got {m}"
        return m.payload.rstrip(b"\0").decode()

    async def event(self) -> tuple[str, str]:
        """Return the next watch event (path, token)."""
        while True:
            for i, m in enumerate(self.frames):
                if m.op == XsOp.WATCH_EVENT:
                    del self.frames[i]
                    path, token = m.payload.split(b"\0")[:2]
                    return path.decode(), token.decode()
            await self._fill()

    async def sync(self) -> None:
        """Round-trip a no-op so every event queued before it has arrived."""
        await self.call(XsOp.GET_DOMAIN_PATH, b"0\0")

    def pending_events(self) -> list[tuple[str, str]]:
        out = []
        for m in [m for m in self.frames if m.op == XsOp.WATCH_EVENT]:
            self.frames.remove(m)
            path, token = m.payload.split(b"\0")[:2]
            out.append((path.decode(), token.decode()))
        return out

    async def events_after_sync(self) -> list[tuple[str, str]]:
        await self.sync()
        return self.pending_events()

    async def watch(self, path: str, token: str) -> None:
        await self.ok(XsOp.WATCH, f"{path}\0{token}\0".encode())
        assert await self.event() == (path, token)  # the initial event

    async def tx_start(self) -> int:
        return int((await self.ok(XsOp.TRANSACTION_START, b"\0")).rstrip(b"\0"))


@dataclass
class Daemon:
    db: XenStoreDB
    server: XenStored
    path: str
    ro_path: str
    directory: str

    async def client(self, *, read_only: bool = False) -> RawClient:
        return await RawClient.open(self.ro_path if read_only else self.path)


@pytest.fixture
def short_dir(short_dir: Path) -> str:
    """Return the suite's short socket directory as a string (this area's tests join with +)."""
    return str(short_dir)


@pytest.fixture
async def daemon(short_dir: str) -> AsyncIterator[Daemon]:
    db = XenStoreDB()
    server = XenStored(db, f"{short_dir}/socket", f"{short_dir}/socket_ro")
    await server.start()
    clients: list[RawClient] = []
    d = Daemon(db, server, server.socket_path, f"{short_dir}/socket_ro", short_dir)
    orig = d.client

    async def tracked(*, read_only: bool = False) -> RawClient:
        c = await orig(read_only=read_only)
        clients.append(c)
        return c

    d.client = tracked  # type: ignore[method-assign]
    try:
        yield d
    finally:
        for c in clients:
            await c.close()
        await server.close()


@pytest.fixture
async def xs(daemon: Daemon) -> RawClient:
    return await daemon.client()
