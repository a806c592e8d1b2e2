"""A daemon that breaks the framing: the client answers what came before, then fails clearly."""

from __future__ import annotations

import asyncio
import struct

import pytest

import aiovirt.xenstore as xenstore
from aiovirt.errors import ErrorNumber
from aiovirt.protocol.xs_wire import FrameDecoder, XsOp, encode
from aiovirt.xenstore import XenStoreError


async def test_oversized_reply_header_fails_the_connection_after_earlier_replies(
        short_dir: str) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        got: list[int] = []
        while len(got) < 2:
            got += [m.req_id for m in decoder.feed(await reader.read(4096))]
        # The first reply is sound; the header after it announces 64 MiB.
        writer.write(encode(XsOp.READ, got[0], 0, b"v")
                     + struct.pack("=IIII", XsOp.READ, got[1], 0, 1 << 26))
        await writer.drain()
        await reader.read()  # until the client hangs up

    path = f"{short_dir}/fake"
    server = await asyncio.start_unix_server(serve, path)
    async with server, xenstore.connect(path, timeout=5.0) as xs:
        first, second = await asyncio.gather(xs.read("/a"), xs.read("/b"),
                                             return_exceptions=True)
        assert first == b"v"
        assert isinstance(second, XenStoreError)
        assert second.code == ErrorNumber.RPC
        assert "67108864-byte payload" in str(second)
        assert not xs.connected
        with pytest.raises(XenStoreError) as info:
            await xs.read("/a")
        assert info.value.code == ErrorNumber.RPC
