"""Fault injection for the simulated node: slow, failing, dropped and stalled replies.

A test (or ``python -m aiovirt.sim --xend-...`` on the command line) sets knobs on the node's
:class:`Faults`; the servers consult them on every request. The xend knobs live here; the
xenstore daemon's own knobs are its ``XsFaults`` (owned by ``aiovirt.sim.xenstored``) and are
reached as ``node.faults.xenstore`` once the daemon runs.

xend requests are named by their op for matching: a POST's ``op`` field (``pause``, ``create``
...), and for GETs ``list`` (``/xend/domain``), ``domain`` (``/xend/domain/<dom>``), ``node``
(``/xend/node`` and below), ``ls`` (``/`` and ``/xend``), ``vnet``. ``"*"`` matches every op.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Faults", "XendFaults"]

ANY_OP = "*"


@dataclass
class XendFaults:
    """Knobs for the simulated xend; all off by default.

    - ``delay``: seconds added before every reply; ``op_delays`` adds more per op.
    - ``fail_ops``: ops answered ``500 Request failed: <op>`` with ``(xend.err 'injected fault')``
      instead of being performed.
    - ``stall_ops``: ops whose reply never comes; the request hangs until :meth:`release_stalls`,
      :meth:`clear` or the node closes, and then its connection is dropped without a reply.
    - ``drop_after``: once a connection has been answered this many requests, the next request on
      it is dropped (the socket closed without a reply). ``0`` drops every request.
    """

    delay: float = 0.0
    op_delays: dict[str, float] = field(default_factory=dict)
    fail_ops: set[str] = field(default_factory=set)
    stall_ops: set[str] = field(default_factory=set)
    drop_after: int | None = None
    fail_message: str = "injected fault"
    _release: asyncio.Event | None = field(default=None, repr=False, compare=False)

    def delay_for(self, op: str) -> float:
        """Return the seconds to wait before answering ``op``."""
        return self.delay + self.op_delays.get(op, 0.0) + self.op_delays.get(ANY_OP, 0.0)

    def fails(self, op: str) -> bool:
        """Return True if ``op`` must be answered with an injected 500."""
        return op in self.fail_ops or ANY_OP in self.fail_ops

    def stalls(self, op: str) -> bool:
        """Return True if the reply to ``op`` must never come."""
        return op in self.stall_ops or ANY_OP in self.stall_ops

    def drops(self, answered_on_connection: int) -> bool:
        """Return True if a request after ``answered_on_connection`` replies must be dropped."""
        return self.drop_after is not None and answered_on_connection >= self.drop_after

    async def wait_stall(self) -> None:
        """Block until stalled requests are released (by :meth:`release_stalls` or close)."""
        if self._release is None or self._release.is_set():
            self._release = asyncio.Event()
        await self._release.wait()

    def release_stalls(self) -> None:
        """Let every stalled request end (its connection is dropped without a reply)."""
        if self._release is not None:
            self._release.set()
            self._release = None

    def clear(self) -> None:
        """Turn every xend fault off and release stalled requests."""
        self.delay = 0.0
        self.op_delays.clear()
        self.fail_ops.clear()
        self.stall_ops.clear()
        self.drop_after = None
        self.release_stalls()


@dataclass
class Faults:
    """All of a node's fault knobs: ``xend`` (:class:`XendFaults`) and ``xenstore``.

    ``xenstore`` is the xenstore daemon's ``XsFaults`` object once the node has started
    (``None`` before, or if the daemon has no fault knobs).
    """

    xend: XendFaults = field(default_factory=XendFaults)
    xenstore: Any = None

    def clear(self) -> None:
        """Turn every fault off."""
        self.xend.clear()
        clear = getattr(self.xenstore, "clear", None)
        if callable(clear):
            clear()
