"""Domain lifecycle events: what changed on a node, as an async iterator.

``async for event in conn.events():`` (or :func:`domain_events`) yields a :class:`DomainEvent`
for each change of a domain: it started, stopped (and why, when the node says), was suspended
or resumed, or its memory or vCPU count changed.

The package, top down:

* :mod:`~aiovirt.events.kinds`: what an event says (:class:`EventKind`, :class:`StopReason`,
  :class:`DomainEvent`).
* :mod:`~aiovirt.events.diff`: the pure core, snapshots in, changes out (no I/O, no clock).
* :mod:`~aiovirt.events.stream`: one consumer's bounded queue with its overflow marker.
* :mod:`~aiovirt.events.source`: the connection's one source, which watches xenstore
  (``@introduceDomain``, ``@releaseDomain``, ``/local/domain``), scans the domain list on each
  firing and every ``interval`` seconds (pauses, unpauses and memory changes fire no watch),
  and fans every event out. Its connection owns it and closes it.
* :mod:`~aiovirt.events.reading`: what a scan reads with (the backend is the router's
  choice, :mod:`aiovirt.routing.scan`).
* :mod:`~aiovirt.events.table`: the live domain table, built on the same source.

Each consumer has its own bounded queue, so a consumer that stops reading loses its own events
(and is told so by an :attr:`EventKind.OVERFLOW` event) without slowing the others. If the
xenstore connection drops, the watch client reconnects, registers its watches again and the
source rescans, so what changed in the meantime is reported then.
"""

from __future__ import annotations

from typing import Any

from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.events.kinds import DomainEvent, DomainHandle, EventKind, StopReason
from aiovirt.events.stream import DEFAULT_QUEUE_SIZE, EventStream

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "DomainEvent",
    "DomainHandle",
    "EventKind",
    "EventStream",
    "StopReason",
    "close_event_sources",
    "domain_events",
]


def domain_events(conn: Any, *, interval: float = 1.0,
                  queue_size: int = DEFAULT_QUEUE_SIZE) -> EventStream[Any]:
    """Return a stream of :class:`DomainEvent` for every domain of ``conn``'s node.

    ``conn`` is an :class:`aiovirt.Connection` (this module imports nothing of the face).

    The same as ``conn.events(interval=..., queue_size=...)``. ``interval`` is how often
    (seconds) the domain list is polled for the changes no watch announces (pause, unpause,
    memory); ``queue_size`` bounds this consumer's backlog, beyond which its events are dropped
    and an :attr:`EventKind.OVERFLOW` event says how many. Use as ``async for event in
    domain_events(conn):`` or ``async with domain_events(conn) as events:`` (which returns once
    the baseline is taken, so later actions are all reported).
    """
    stream: EventStream[Any] = conn.events(interval=interval, queue_size=queue_size)
    return stream


def check_interval(interval: float) -> float:
    """Return ``interval`` if it is a usable poll interval, else raise INVALID_ARG."""
    if not isinstance(interval, int | float) or not interval > 0:
        raise VirtError(ErrorNumber.INVALID_ARG, info=f"interval must be > 0, not {interval!r}")
    return float(interval)


async def close_event_sources(conn: Any) -> None:
    """Stop ``conn``'s event source now: its streams end, its watches are released.

    A later consumer starts watching again. :meth:`Connection.close
    <aiovirt.connection.Connection.close>` does this (for good) itself.
    """
    await conn._event_source().stop()
