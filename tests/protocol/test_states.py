"""Domain states: hypervisor flags and xend's state string agree for every combination."""

from __future__ import annotations

import itertools

import pytest

from aiovirt.protocol.states import (
    DOMINF_BLOCKED,
    DOMINF_DYING,
    DOMINF_PAUSED,
    DOMINF_RUNNING,
    DOMINF_SHUTDOWN,
    DomainState,
    ShutdownReason,
    flags_for,
    state_from_flags,
    state_from_xend,
    xend_state_string,
)

REASONS: list[ShutdownReason | None] = [None, *ShutdownReason]
COMBINATIONS = list(itertools.product([False, True], [False, True], [False, True], REASONS,
                                      [False, True]))


def test_libvirt_numbers() -> None:
    assert [(s.name, int(s)) for s in DomainState] == [
        ("NOSTATE", 0), ("RUNNING", 1), ("BLOCKED", 2), ("PAUSED", 3), ("SHUTDOWN", 4),
        ("SHUTOFF", 5), ("CRASHED", 6),
    ]
    assert (DOMINF_DYING, DOMINF_SHUTDOWN, DOMINF_PAUSED, DOMINF_BLOCKED, DOMINF_RUNNING) == (
        1, 4, 8, 16, 32)
    assert int(ShutdownReason.CRASH) == 3 and int(ShutdownReason.POWEROFF) == 0


@pytest.mark.parametrize(("running", "blocked", "paused", "shutdown", "dying"), COMBINATIONS)
def test_flags_and_xend_string_agree(
    running: bool, blocked: bool, paused: bool, shutdown: ShutdownReason | None, dying: bool
) -> None:
    flags = flags_for(running=running, blocked=blocked, paused=paused, shutdown=shutdown,
                      dying=dying)
    text = xend_state_string(flags)
    assert len(text) == 6
    assert state_from_xend(text) == state_from_flags(flags)
    # Extra bits (CPU number, other shutdown codes' high bits) never change the answer.
    assert state_from_flags(flags | (5 << 8)) == state_from_flags(flags)


@pytest.mark.parametrize(
    ("kwargs", "text", "state"),
    [
        ({}, "------", DomainState.NOSTATE),
        ({"running": True}, "r-----", DomainState.RUNNING),
        ({"blocked": True}, "-b----", DomainState.BLOCKED),
        ({"paused": True}, "--p---", DomainState.PAUSED),
        ({"paused": True, "blocked": True}, "-bp---", DomainState.PAUSED),
        ({"shutdown": ShutdownReason.POWEROFF}, "---s--", DomainState.SHUTOFF),
        ({"shutdown": ShutdownReason.SUSPEND}, "---s--", DomainState.SHUTOFF),
        ({"shutdown": ShutdownReason.CRASH}, "----c-", DomainState.CRASHED),
        ({"dying": True}, "-----d", DomainState.SHUTDOWN),
        ({"dying": True, "shutdown": ShutdownReason.CRASH}, "----cd", DomainState.SHUTDOWN),
    ],
)
def test_typical_states(kwargs: dict[str, object], text: str, state: DomainState) -> None:
    flags = flags_for(**kwargs)  # type: ignore[arg-type]
    assert xend_state_string(flags) == text
    assert state_from_flags(flags) == state
    assert state_from_xend(text) == state


def test_unknown_or_missing_xend_state() -> None:
    assert state_from_xend(None) == DomainState.NOSTATE
    assert state_from_xend("") == DomainState.NOSTATE
    assert state_from_xend("??????") == DomainState.NOSTATE
