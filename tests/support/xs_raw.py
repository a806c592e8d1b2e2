"""A raw xenstore wire connection for tests: frames encoded by hand, replies decoded as they come.

Deliberately not our client: tests that pin what goes over the wire build on this, adding how
they want replies and events sorted (``tests/xenstored``'s ``RawClient``, ``tests/sim``'s
``RawXs``).
"""

from __future__ import annotations

import asyncio
from typing import Self

from aiovirt.backends.xenstore import _connect_unix
from aiovirt.protocol.xs_wire import FrameDecoder, Message


class RawXsConnection:
    """One unix-socket connection to a xenstore daemon and the decoder of what it sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()

    @classmethod
    async def open(cls, path: str) -> Self:
        """Connect to the daemon listening at ``path`` (waiting, as the client does, while its
        one-slot listen backlog is full: asyncio alone would hand back an unconnected socket)."""
        async with asyncio.timeout(10.0):
            sock = await _connect_unix(path)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    async def read_frames(self) -> list[Message] | None:
        """Return the frames the next chunk read completes (maybe none); None at end of stream."""
        data = await self.reader.read(65536)
        if not data:
            return None
        return self.decoder.feed(data)

    async def close(self) -> None:
        """Close the connection (a daemon that already dropped it is no error)."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, BrokenPipeError):
            pass
