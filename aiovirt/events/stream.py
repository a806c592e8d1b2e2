"""One consumer's events: a bounded queue with an overflow marker, read with ``async for``."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Generic

from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.events.kinds import DomainEvent, EventKind, H

if TYPE_CHECKING:
    from aiovirt.events.source import EventSource

__all__ = ["DEFAULT_QUEUE_SIZE", "EventStream"]

DEFAULT_QUEUE_SIZE = 4096


class EventStream(Generic[H]):
    """One consumer's view of a connection's events: an async iterator and context manager.

    Leaving ``async for`` (or ``async with``), or dropping the stream, unsubscribes; the
    connection's source stops watching with its last consumer.
    """

    def __init__(self, source: EventSource[H], queue_size: int, interval: float) -> None:
        self._source: EventSource[H] | None = None
        if queue_size < 1:
            raise VirtError(ErrorNumber.INVALID_ARG,
                            info=f"queue_size must be at least 1, not {queue_size}")
        self._queue: deque[DomainEvent[H]] = deque()
        self._queue_size = queue_size
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._error: BaseException | None = None
        self.interval = interval
        source.subscribe(self)
        self._source = source

    # called by the source, on the event loop
    def _put(self, event: DomainEvent[H]) -> None:
        if len(self._queue) >= self._queue_size:
            self._dropped += 1
        else:
            self._flush_overflow_marker()
            if len(self._queue) < self._queue_size:
                self._queue.append(event)
            else:
                self._dropped += 1
        self._wakeup.set()

    def _flush_overflow_marker(self) -> None:
        if self._dropped and len(self._queue) < self._queue_size:
            self._queue.append(DomainEvent(None, EventKind.OVERFLOW,
                                           f"{self._dropped} events dropped", time.time()))
            self._dropped = 0

    def _fail(self, exc: BaseException | None) -> None:
        self._error = exc
        self._source = None
        self._wakeup.set()

    @property
    def dropped(self) -> int:
        """Return how many events were dropped for this consumer and not yet signalled."""
        return self._dropped

    async def ready(self) -> None:
        """Wait until the source watches the node and has taken its first snapshot.

        Actions taken after this returns are reported; what was there before is the baseline.
        """
        if self._source is not None:
            await self._source.ready()

    def __aiter__(self) -> EventStream[H]:
        return self

    async def __anext__(self) -> DomainEvent[H]:
        """Return the next event, waiting for one."""
        while True:
            if not self._queue:
                self._flush_overflow_marker()
            if self._queue:
                return self._queue.popleft()
            if self._source is None:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def get_nowait(self) -> DomainEvent[H] | None:
        """Return the next queued event, or None if there is none."""
        if not self._queue:
            self._flush_overflow_marker()
        return self._queue.popleft() if self._queue else None

    async def aclose(self) -> None:
        """Stop receiving events; the last consumer to leave stops the source's watching."""
        source, self._source = self._source, None
        self._wakeup.set()
        if source is not None:
            await source.unsubscribe(self)

    async def __aenter__(self) -> EventStream[H]:
        await self.ready()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __del__(self) -> None:
        source = getattr(self, "_source", None)
        if source is not None:
            self._source = None
            source.unsubscribe_soon(self)
