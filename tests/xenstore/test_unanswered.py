"""A request the daemon never answers costs that request alone: it times out, nothing hangs.

oxenstored never answers a frame with an empty payload (a WRITE of length 0, say) until more
bytes arrive. The client never sends one (every request carries at least a NUL), and any
request left unanswered fails with OPERATION_TIMEOUT while the connection goes on working.
"""

from __future__ import annotations

import pytest

from aiovirt.errors import ErrorNumber
from aiovirt.protocol.xs_wire import XsOp
from aiovirt.xenstore import XenStoreClient, XenStoreError
from tests.xenstore.conftest import Daemon


async def test_the_client_never_sends_an_empty_payload(xs: XenStoreClient, base: str) -> None:
    link = xs._link
    assert link is not None
    sent: list[tuple[int, bytes]] = []
    enqueue = link._enqueue

    def spy(fut: object, op: int, payload: bytes, *args: object) -> None:
        sent.append((op, payload))
        enqueue(fut, op, payload, *args)  # type: ignore[arg-type]

    link._enqueue = spy  # type: ignore[method-assign,assignment]
    try:
        await xs.write(f"{base}/e", b"")
        await xs.mkdir(f"{base}/d")
        assert await xs.read(f"{base}/e") == b""
        await xs.directory(f"{base}")
        await xs.get_perms(f"{base}/e")
        async with xs.transaction() as t:
            await t.write(f"{base}/t", b"")
        async with xs.watch(f"{base}/w") as events:
            await events.get(5.0)
        await xs.rm(f"{base}/e")
        await xs.get_domain_path(0)
        await xs.read("/")  # a round trip: the UNWATCH went out before it
    finally:
        link._enqueue = enqueue  # type: ignore[method-assign]
    ops = {op for op, _ in sent}
    assert {XsOp.WRITE, XsOp.TRANSACTION_START, XsOp.TRANSACTION_END, XsOp.UNWATCH} <= ops
    assert all(payload for _, payload in sent), [s for s in sent if not s[1]]


async def test_an_unanswered_request_times_out_and_the_connection_lives(
        daemon: Daemon, xs: XenStoreClient, base: str) -> None:
    link = xs._link
    assert link is not None
    with pytest.raises(XenStoreError) as info:
        await link.submit(XsOp.WRITE, b"", 0, None, 0.5)  # a frame with no payload at all
    if daemon.kind == "oxenstored":
        assert info.value.code == ErrorNumber.OPERATION_TIMEOUT
        assert "no reply" in str(info.value)
    else:
        assert info.value.errno_name == "EINVAL"
    # Later calls are answered, and a late reply to the first (when oxenstored gets more bytes
    # and answers it) is read and dropped, never taken for another request's.
    await xs.write(f"{base}/after", "1")
    assert await xs.read(f"{base}/after") == b"1"
    assert xs.connected
