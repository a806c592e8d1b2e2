"""The xenstore client, usable on its own: ``xs = await aiovirt.xenstore.connect()``.

Pipelined asyncio access to xenstored with watches and transactions::

    async with aiovirt.xenstore.connect() as xs:
        name = await xs.read("/local/domain/1/name")
        async with xs.watch("/local/domain") as events:
            async for event in events:          # WatchEvent(path, token, ...)
                ...
        await xs.run_transaction(increment)     # retried on EAGAIN

See :mod:`aiovirt.backends.xenstore` for the behaviour (cancellation, reconnection, overflow).
"""

from __future__ import annotations

from aiovirt.backends.xenstore import (
    DEFAULT_SOCKET_PATH,
    Watch,
    WatchEvent,
    XenStoreClient,
    XenStoreError,
    XenStoreTransaction,
    connect,
    default_socket_path,
)
from aiovirt.protocol.xs_wire import Perm, PermAccess

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "Perm",
    "PermAccess",
    "Watch",
    "WatchEvent",
    "XenStoreClient",
    "XenStoreError",
    "XenStoreTransaction",
    "connect",
    "default_socket_path",
]
