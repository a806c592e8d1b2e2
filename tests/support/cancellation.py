"""Cancel a call at a chosen await point, for "cancellation leaves the connection usable"."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


async def cancelled_after(steps: int, call: Coroutine[Any, Any, _T]) -> _T | None:
    """Run ``call`` as a task for ``steps`` turns of the loop, then cancel it.

    Return its result when it finished first, None when the cancellation took. Any other
    exception of the call propagates. Stepping ``steps`` through ``range(n)`` cancels the call
    at each of its first ``n`` await points.
    """
    task = asyncio.create_task(call)
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return None
