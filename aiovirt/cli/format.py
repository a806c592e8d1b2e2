"""Text output of aiovirsh: virsh-like tables and key/value blocks, and JSON values."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiovirt.protocol.states import DomainState

__all__ = ["STATE_NAMES", "format_cpu_time", "key_values", "state_name", "table", "to_json"]

# The words modern virsh uses (0.0.6's had trailing spaces and printed CRASHED as "no state").
STATE_NAMES: dict[DomainState, str] = {
    DomainState.NOSTATE: "no state",
    DomainState.RUNNING: "running",
    DomainState.BLOCKED: "idle",
    DomainState.PAUSED: "paused",
    DomainState.SHUTDOWN: "in shutdown",
    DomainState.SHUTOFF: "shut off",
    DomainState.CRASHED: "crashed",
}


def state_name(state: int) -> str:
    """Return the virsh word for a :class:`DomainState` value."""
    try:
        return STATE_NAMES[DomainState(state)]
    except ValueError:
        return "no state"


def format_cpu_time(ns: int) -> str:
    """Return CPU time in seconds with one decimal, as virsh prints it (``12.3s``)."""
    return f"{ns / 1e9:.1f}s"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
          right: Sequence[bool] | None = None) -> str:
    """Return a virsh-style table: a header line, a rule of dashes, one line per row."""
    body = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    align = right or [False] * len(headers)

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if a else c.ljust(w) for c, w, a in zip(cells, widths, align,
                                                                    strict=True)]
        return (" " + "   ".join(parts)).rstrip()

    out = [line(headers), "-" * (sum(widths) + 3 * (len(widths) - 1) + 2)]
    out.extend(line(row) for row in body)
    return "\n".join(out)


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """Return ``Label:   value`` lines with the labels padded like virsh's ``dominfo``."""
    items = [(f"{k}:", str(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    width = max(width + 1, 16)
    return "\n".join(f"{k.ljust(width)}{v}".rstrip() for k, v in items)


def to_json(value: Any) -> str:
    """Return ``value`` as one line of JSON (enums by name, UUIDs as strings)."""
    import json  # for --json only

    return json.dumps(value, default=_json_default, sort_keys=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, DomainState):
        return state_name(value)
    name = getattr(value, "name", None)
    if name is not None and hasattr(value, "value"):
        return name
    return str(value)
