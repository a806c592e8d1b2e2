"""Fault injection for the simulated node: slow, failing, dropped and stalled replies.

A test (or ``python -m aiovirt.sim --xend-...``/``--xs-...`` on the command line) sets knobs on
the node's :class:`Faults`; the servers consult them on every request. ``node.faults.xend`` is
an :class:`XendFaults`, ``node.faults.xenstore`` an :class:`XsFaults` (the daemon shares the
object, so knobs set before or after the node starts take effect).

xend requests are named by an :class:`XendOp` for matching: a POST's ``op`` field (``pause``,
``create`` ...), and for GETs ``list`` (``/xend/domain``), ``domain`` (``/xend/domain/<dom>``),
``node`` (``/xend/node`` and below), ``ls`` (``/`` and ``/xend``), ``vnet``. ``XendOp.ANY``
(``"*"``) matches every request. xenstore requests are matched by :class:`XsOp`. Both are str /
int enums, so a plain ``"pause"`` or ``2`` still matches, but a name that is neither is refused
when the knobs are built (:meth:`XendFaults.__post_init__`, :func:`xend_op`, :func:`xs_op`)
instead of silently never matching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from aiovirt.protocol.xs_wire import XsOp

__all__ = ["Faults", "XendFaults", "XendOp", "XsFaults", "xend_op", "xs_op"]


class XendOp(StrEnum):
    """The name by which a xend fault matches a request (see the module's description)."""

    ANY = "*"
    # GETs, named by the resource
    LS = "ls"
    LIST = "list"
    DOMAIN = "domain"
    NODE = "node"
    VNET = "vnet"
    # POST op=... on /xend/domain
    CREATE = "create"
    RESTORE = "restore"
    # POST op=... on /xend/domain/<dom> (vcpuinfo also as a GET)
    PAUSE = "pause"
    UNPAUSE = "unpause"
    SHUTDOWN = "shutdown"
    DESTROY = "destroy"
    SAVE = "save"
    MIGRATE = "migrate"
    RENAME = "rename"
    SYSRQ = "sysrq"
    WAIT_FOR_DEVICES = "wait_for_devices"
    MAXMEM_SET = "maxmem_set"
    MEM_TARGET_SET = "mem_target_set"
    SET_VCPUS = "set_vcpus"
    VCPUINFO = "vcpuinfo"
    PINCPU = "pincpu"
    DEVICES = "devices"
    DOMAIN_SCHED_CREDIT_GET = "domain_sched_credit_get"
    DOMAIN_SCHED_CREDIT_SET = "domain_sched_credit_set"
    # POST op=... on /xend/node (shutdown is shared with the domain op) and its dmesg
    REBOOT = "reboot"
    CLEAR = "clear"


ANY_OP = XendOp.ANY


def xend_op(name: str) -> XendOp:
    """Return the :class:`XendOp` called ``name``; ValueError listing the known ones if none."""
    try:
        return XendOp(name)
    except ValueError:
        known = ", ".join(op.value for op in XendOp)
        raise ValueError(f"unknown xend op {name!r} (known: {known})") from None


def xs_op(name: str | int) -> XsOp:
    """Return the :class:`XsOp` called ``name`` (``READ``, ``read``) or numbered so.

    ValueError if there is none.
    """
    text = str(name).strip()
    try:
        if isinstance(name, int):
            return XsOp(name)
        return XsOp(int(text)) if text.isdigit() else XsOp[text.upper()]
    except (KeyError, ValueError):
        known = ", ".join(op.name for op in XsOp)
        raise ValueError(f"unknown xenstore op {name!r} (known: {known})") from None


def _xend_ops(ops: Iterable[str]) -> set[XendOp]:
    return {xend_op(op) for op in ops}


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

    Ops given to the constructor as strings are checked and converted to :class:`XendOp`.

    ``stalled`` counts the requests held by a stall now; :meth:`wait_stalled` returns once that
    many have arrived, so a test knows its requests reached the node without sleeping.
    """

    delay: float = 0.0
    op_delays: dict[XendOp, float] = field(default_factory=dict)
    fail_ops: set[XendOp] = field(default_factory=set)
    stall_ops: set[XendOp] = field(default_factory=set)
    drop_after: int | None = None
    fail_message: str = "injected fault"
    stalled: int = field(default=0, compare=False)
    _release: asyncio.Event | None = field(default=None, repr=False, compare=False)
    _stalls_changed: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False,
                                               compare=False)

    def __post_init__(self) -> None:
        self.op_delays = {xend_op(op): seconds for op, seconds in self.op_delays.items()}
        self.fail_ops = _xend_ops(self.fail_ops)
        self.stall_ops = _xend_ops(self.stall_ops)

    def delay_for(self, op: str) -> float:
        """Return the seconds to wait before answering ``op``."""
        return self.delay + sum(s for o, s in self.op_delays.items() if o in (op, ANY_OP))

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
        release = self._release
        self.stalled += 1
        async with self._stalls_changed:
            self._stalls_changed.notify_all()
        try:
            await release.wait()
        finally:
            self.stalled -= 1

    async def wait_stalled(self, count: int = 1) -> None:
        """Return once at least ``count`` requests are held by a stall (bound it with a
        timeout)."""
        async with self._stalls_changed:
            await self._stalls_changed.wait_for(lambda: self.stalled >= count)

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
class XsFaults:
    """Fault knobs of the simulated xenstored; all off by default.

    - ``delay``: seconds by which every write to a client (replies and events) is held back;
      order is kept.
    - ``drop_after``: once a connection has been answered this many requests, the next request
      on it closes the connection without a reply (``0`` drops at the first request).
    - ``stall_ops`` / ``stall_paths``: a request is never answered when its op is in
      ``stall_ops`` and/or its first argument starts with one of ``stall_paths`` (each set
      that is non-empty must match). Later requests on the connection are answered.

    Ops given to the constructor as names or numbers are checked and converted to :class:`XsOp`.
    """

    delay: float = 0.0
    drop_after: int | None = None
    stall_ops: set[XsOp] = field(default_factory=set)
    stall_paths: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stall_ops = {xs_op(op) for op in self.stall_ops}

    @property
    def armed(self) -> bool:
        """Return True if any knob is set."""
        return bool(self.delay or self.drop_after is not None or self.stall_ops
                    or self.stall_paths)

    def stalls(self, op: int, payload: bytes) -> bool:
        """Return True if a request with this op and payload must never be answered."""
        if not self.stall_ops and not self.stall_paths:
            return False
        if self.stall_ops and op not in self.stall_ops:
            return False
        if self.stall_paths:
            first = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            return any(first.startswith(p) for p in self.stall_paths)
        return True

    def clear(self) -> None:
        """Turn every knob off."""
        self.delay = 0.0
        self.drop_after = None
        self.stall_ops.clear()
        self.stall_paths.clear()


@dataclass
class Faults:
    """All of a node's fault knobs: ``xend`` (:class:`XendFaults`) and ``xenstore``
    (:class:`XsFaults`, shared with the node's xenstore daemon)."""

    xend: XendFaults = field(default_factory=XendFaults)
    xenstore: XsFaults = field(default_factory=XsFaults)

    def clear(self) -> None:
        """Turn every fault off."""
        self.xend.clear()
        self.xenstore.clear()
