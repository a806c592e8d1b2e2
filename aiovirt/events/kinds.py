"""What an event says: its kind, why a domain stopped, and the event tuple itself."""

from __future__ import annotations

import enum
import uuid as uuidlib
from typing import Generic, NamedTuple, Protocol, TypeVar

__all__ = ["DomainEvent", "DomainHandle", "EventKind", "H", "StopReason"]


class DomainHandle(Protocol):
    """What the events need of a domain's handle (:class:`aiovirt.Domain` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def id(self) -> int: ...

    @property
    def uuid(self) -> uuidlib.UUID: ...


H = TypeVar("H", bound=DomainHandle)


class EventKind(enum.Enum):
    """What happened to a domain."""

    STARTED = "started"
    """The domain appeared on the node (detail: ``booted``, or ``restored`` when the stream saw
    it saved)."""
    STOPPED = "stopped"
    """The domain stopped running (detail: a :class:`StopReason` value)."""
    SUSPENDED = "suspended"
    """The domain was paused."""
    RESUMED = "resumed"
    """The domain was unpaused."""
    MEMORY_CHANGED = "memory-changed"
    """The domain's current or maximum memory changed (detail: ``memory=KiB max=KiB``)."""
    VCPUS_CHANGED = "vcpus-changed"
    """The number of online vCPUs changed (detail: ``vcpus=N``)."""
    OVERFLOW = "overflow"
    """This consumer fell behind and events were dropped for it (detail: how many). The
    consumer should re-read what it needs (``conn.list_domains()``); ``domain`` is None."""


class StopReason(enum.StrEnum):
    """Why a domain stopped, as far as the node tells (the detail of a STOPPED event)."""

    SHUTDOWN = "shutdown"
    """The guest shut itself down, or did so when asked (``poweroff``/``halt``)."""
    DESTROYED = "destroyed"
    """The domain went away with no shutdown seen: destroyed."""
    CRASHED = "crashed"
    """The guest crashed (shutdown code ``crash`` or ``watchdog``)."""
    SAVED = "saved"
    """The guest suspended itself for a save and was then torn down."""
    REBOOTED = "rebooted"
    """The guest shut down to reboot; its successor arrives as a new STARTED domain."""


class DomainEvent(NamedTuple, Generic[H]):
    """One change of one domain: ``(domain, kind, detail, timestamp)``.

    ``domain`` is the :class:`~aiovirt.domain.Domain` (None for OVERFLOW); after STOPPED its
    cached name, id and UUID stay readable. ``timestamp`` is ``time.time()`` when the change was
    detected.
    """

    domain: H | None
    kind: EventKind
    detail: str
    timestamp: float
