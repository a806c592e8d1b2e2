"""Domain states and the two ways Xen reports them: hypervisor flags and xend's state string.

One source of truth for the simulator (which produces both) and the client (which reads either),
so the state a user sees does not depend on which backend answered.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "DOMINF_BLOCKED",
    "DOMINF_DYING",
    "DOMINF_PAUSED",
    "DOMINF_RUNNING",
    "DOMINF_SHUTDOWN",
    "DomainState",
    "ShutdownReason",
    "flags_for",
    "state_from_flags",
    "state_from_xend",
    "xend_state_string",
]

# Bits of the hypervisor's domain-info flags (XEN_DOMINF_*); the shutdown code sits in 16-23.
DOMINF_DYING = 1 << 0
DOMINF_SHUTDOWN = 1 << 2
DOMINF_PAUSED = 1 << 3
DOMINF_BLOCKED = 1 << 4
DOMINF_RUNNING = 1 << 5
DOMINF_SHUTDOWN_SHIFT = 16
DOMINF_SHUTDOWN_MASK = 0xFF


class DomainState(IntEnum):
    """libvirt's ``virDomainState``."""

    NOSTATE = 0
    RUNNING = 1
    BLOCKED = 2
    PAUSED = 3
    SHUTDOWN = 4
    SHUTOFF = 5
    CRASHED = 6


class ShutdownReason(IntEnum):
    """Xen's shutdown codes (SHUTDOWN_* in ``sched.h``)."""

    POWEROFF = 0
    REBOOT = 1
    SUSPEND = 2
    CRASH = 3
    WATCHDOG = 4


def state_from_flags(flags: int) -> DomainState:
    """Decide the state from hypervisor flags by priority (DESIGN.md), not 0.0.6's exact match.

    dying -> SHUTDOWN, shut down with crash -> CRASHED, shut down -> SHUTOFF, paused -> PAUSED,
    blocked -> BLOCKED, running -> RUNNING, none of them -> NOSTATE.
    """
    if flags & DOMINF_DYING:
        return DomainState.SHUTDOWN
    if flags & DOMINF_SHUTDOWN:
        code = (flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
        return DomainState.CRASHED if code == ShutdownReason.CRASH else DomainState.SHUTOFF
    if flags & DOMINF_PAUSED:
        return DomainState.PAUSED
    if flags & DOMINF_BLOCKED:
        return DomainState.BLOCKED
    if flags & DOMINF_RUNNING:
        return DomainState.RUNNING
    return DomainState.NOSTATE


def state_from_xend(state: str | None) -> DomainState:
    """Decide the state from xend's six-letter ``rbpscd`` string with the same priority.

    ``d`` (dying) -> SHUTDOWN, ``c`` -> CRASHED, ``s`` -> SHUTOFF, ``p``, ``b``, ``r``: so the
    answer agrees with :func:`state_from_flags` for the same domain.
    """
    if not state:
        return DomainState.NOSTATE
    if "d" in state:
        return DomainState.SHUTDOWN
    if "c" in state:
        return DomainState.CRASHED
    if "s" in state:
        return DomainState.SHUTOFF
    if "p" in state:
        return DomainState.PAUSED
    if "b" in state:
        return DomainState.BLOCKED
    if "r" in state:
        return DomainState.RUNNING
    return DomainState.NOSTATE


def xend_state_string(flags: int) -> str:
    """Return xend's six-letter state string for hypervisor ``flags``."""
    shutdown = bool(flags & DOMINF_SHUTDOWN)
    crashed = shutdown and (
        (flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
    ) == ShutdownReason.CRASH
    return "".join((
        "r" if flags & DOMINF_RUNNING else "-",
        "b" if flags & DOMINF_BLOCKED else "-",
        "p" if flags & DOMINF_PAUSED else "-",
        "s" if shutdown and not crashed else "-",
        "c" if crashed else "-",
        "d" if flags & DOMINF_DYING else "-",
    ))


def flags_for(
    *, running: bool = False, blocked: bool = False, paused: bool = False,
    shutdown: ShutdownReason | None = None, dying: bool = False,
) -> int:
    """Compose hypervisor flags (the simulator's way of saying what a domain is doing)."""
    flags = 0
    if running:
        flags |= DOMINF_RUNNING
    if blocked:
        flags |= DOMINF_BLOCKED
    if paused:
        flags |= DOMINF_PAUSED
    if shutdown is not None:
        flags |= DOMINF_SHUTDOWN | (int(shutdown) << DOMINF_SHUTDOWN_SHIFT)
    if dying:
        flags |= DOMINF_DYING
    return flags
