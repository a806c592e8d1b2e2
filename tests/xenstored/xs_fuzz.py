"""Seeded random xenstore request sequences, run byte for byte against a xenstore daemon.

Used by ``test_fuzz_differential.py`` (the real C xenstored 4.17 against the simulated one) and
runnable by hand to count how many sequences agree::

    PYTHONPATH=$PWD python -m tests.xenstored.xs_fuzz --count 400 [--seed 0] [--show 3]

A sequence is a list of :class:`Step` on one to three connections: valid and invalid paths
(relative, ``@`` names, bad characters, too long), binary values, permission strings as a user
might type them, watches, transactions left open and interleaved across connections (ids used on
the wrong connection, or after they ended), domain ops and malformed payloads. Each step is sent
on its connection and its reply awaited; then every connection that has asked for a watch (this
one included) is synced with a marker request, so each connection's frames (replies and events)
are recorded in the order its daemon queued them. Two faithful daemons give the same record.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aiovirt.protocol.xs_wire import HEADER, FrameDecoder, Message, XsOp

O = XsOp  # noqa: E741 (short, the tables below are long)

#: req_id of the marker requests (GET_DOMAIN_PATH 0) that sync a connection.
MARK = 0xFFFF0000
#: tx_id sent when a step names a transaction whose START failed (never a valid id here).
NO_SUCH_TX = 0xBAD
#: Marks the step whose reply the C daemon's stale errno decides (see ``normalise``).
STALE = "<stale errno>"
#: The entry that ends a record where the C daemon aborted (see ``normalise``).
CRASH = ("<C daemon aborted: record ends>",)


@dataclass(frozen=True)
class Step:
    """One request: on connection ``conn``; ``tx`` is a literal tx_id or the name a START
    step saved its id under; ``stale`` marks payloads whose C errno is stale (see below)."""

    conn: int
    op: int
    payload: bytes
    tx: int | str = 0
    save: str | None = None
    stale: bool = False
    raw: bytes | None = None  # sent instead of a well-formed frame (a bad header)


@dataclass
class Sequence:
    seed: int
    nconn: int
    steps: list[Step] = field(default_factory=list)


# ----------------------------------------------------------------------------- generating

_NAMES = ("a", "b", "c")
_VALID = (
    "/", "/a", "/b", "/a/b", "/a/c", "/b/a", "/a/b/c", "/a/b/a", "/c/a/b", "/tool",
    "/tool/xenstored", "/tool/xenstored/x", "/local", "/local/domain/0", "/local/domain/0/a",
    "/local/domain/0/a/b", "/local/domain/5/a", "a", "a/b", "b", "/t/a@b", "/-_@",
)
_INVALID = (
    "", "/a b", "//", "//a", "/a/", "a//b", "/a/b/", "a/", "/a\tb", "/\u00e9",
    "@introduceDomain", "@releaseDomain", "@x", "@", "@a/b", "@introduceDomain/x",
    "/" + "a" * 2048, "/local/domain/5/" + "b" * 2049,
)
_LONG_VALID = ("/" + "a" * 2047, "/local/domain/5/" + "b" * 2048)
# The domains the hypervisor has, for both daemons (the C one through its stub): permission
# entries and domain ops also name others, which exist only while introduced.
HYPERVISOR_DOMAINS = (0, 1, 2, 3)

_PERMS = (
    "n0", "r0", "w0", "b0", "n1", "r1", "w2", "b3", "r5", "b-1", "n-2", "r4294967295",
    "b99999999999", "n0x10", "r010", "w08", "b0x", "q0", "r", "", "r0junk", "n 5", "b+3",
    "n-0", "R1",
)
_TOKENS = ("t1", "t2", "", "tok-3", "@t")
_SPECIALS = ("@introduceDomain", "@releaseDomain", "@x", "@releaseDomain/1")


def _path(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.78:
        return rng.choice(_VALID)
    if r < 0.97:
        return rng.choice(_INVALID)
    return rng.choice(_LONG_VALID)


def _value(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.3:
        return b""
    if r < 0.8:
        return rng.choice((b"v", b"1", b"x\0y", b"\xff\x00", b"hello world"))
    if r < 0.97:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    return b"z" * rng.choice((2048, 4000, 4096))


def _b(*parts: str | bytes) -> bytes:
    out = b""
    for p in parts:
        out += p.encode("utf-8", "surrogateescape") if isinstance(p, str) else p
    return out


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq = Sequence(seed, self.rng.choice((1, 2, 2, 3, 3)))
        self.txs: list[list[str]] = [[] for _ in range(self.seq.nconn)]  # open (likely)
        self.ended: list[str] = []
        self.ntx = 0

    def tx(self, conn: int) -> int | str:
        """Return the tx_id for a step: mostly one of the connection's open transactions,
        sometimes none, an ended one, another connection's or a made-up number."""
        rng = self.rng
        mine = self.txs[conn]
        r = rng.random()
        if mine and r < 0.55:
            return mine[-1] if rng.random() < 0.6 else rng.choice(mine)
        if r < 0.58 and self.ended:
            return rng.choice(self.ended)
        if r < 0.61:
            others = [t for c, ts in enumerate(self.txs) if c != conn for t in ts]
            if others:
                return rng.choice(others)
        if r < 0.62:
            return rng.choice((1, 2, 99, 0xFFFFFFFF))
        return 0

    def step(self) -> Step:
        rng = self.rng
        conn = rng.randrange(self.seq.nconn)
        kinds: list[tuple[float, Callable[[int], Step]]] = [
            (14, self.write), (10, self.read), (5, self.mkdir), (8, self.rm),
            (7, self.directory), (3, self.directory_part), (4, self.get_perms),
            (6, self.set_perms), (6, self.watch), (3, self.unwatch), (6, self.tx_start),
            (6, self.tx_end), (1, self.reset_watches), (2, self.domain_op),
            (4, self.malformed), (0.5, self.odd_op),
        ]
        total = sum(w for w, _ in kinds)
        r = rng.random() * total
        for weight, make in kinds:
            r -= weight
            if r < 0:
                return make(conn)
        return kinds[0][1](conn)

    def write(self, conn: int) -> Step:
        path = _b(_path(self.rng), b"\0")
        value = _value(self.rng)
        if len(value) > 4000 and self.rng.random() < 0.7:
            value = value[:4096 - len(path)]  # exactly the payload limit
        return Step(conn, O.WRITE, path + value, self.tx(conn))

    def read(self, conn: int) -> Step:
        return Step(conn, O.READ, _b(_path(self.rng), b"\0"), self.tx(conn))

    def mkdir(self, conn: int) -> Step:
        return Step(conn, O.MKDIR, _b(_path(self.rng), b"\0"), self.tx(conn))

    def rm(self, conn: int) -> Step:
        return Step(conn, O.RM, _b(_path(self.rng), b"\0"), self.tx(conn))

    def directory(self, conn: int) -> Step:
        return Step(conn, O.DIRECTORY, _b(_path(self.rng), b"\0"), self.tx(conn))

    def directory_part(self, conn: int) -> Step:
        offset = self.rng.choice(("0", "0", "2", "4", "999", "abc", "-1", ""))
        return Step(conn, O.DIRECTORY_PART, _b(_path(self.rng), b"\0", offset, b"\0"),
                    self.tx(conn))

    def get_perms(self, conn: int) -> Step:
        path = self.rng.choice(_SPECIALS) if self.rng.random() < 0.1 else _path(self.rng)
        return Step(conn, O.GET_PERMS, _b(path, b"\0"), self.tx(conn))

    def set_perms(self, conn: int) -> Step:
        rng = self.rng
        path = rng.choice(_SPECIALS) if rng.random() < 0.15 else _path(rng)
        perms = [rng.choice(_PERMS) for _ in range(rng.choice((0, 1, 1, 2, 3)))]
        if path == "/" and perms:
            # Never a domain the domain ops may release as the owner of /: C 4.17 would then
            # delete the root node itself (domain_tree_remove() reaches rm_node("/")), after
            # which it is not a xenstore any more.
            perms[0] = rng.choice(("n0", "r0", "b0", "b-1", "w0x0", "q0"))
        payload = _b(path, b"\0", *(p + "\0" for p in perms))
        # An @ name other than the two specials: C's set_perms_special() returns EINVAL but
        # do_set_perms() answers with errno instead, which nothing set (see normalise()).
        stale = path[:1] == "@" and path not in _SPECIALS[:2] and bool(perms)
        return Step(conn, O.SET_PERMS, payload, self.tx(conn), stale=stale)

    def watch(self, conn: int) -> Step:
        rng = self.rng
        path = rng.choice(_SPECIALS) if rng.random() < 0.2 else _path(rng)
        return Step(conn, O.WATCH, _b(path, b"\0", rng.choice(_TOKENS), b"\0"), self.tx(conn))

    def unwatch(self, conn: int) -> Step:
        rng = self.rng
        path = rng.choice(_SPECIALS) if rng.random() < 0.2 else _path(rng)
        return Step(conn, O.UNWATCH, _b(path, b"\0", rng.choice(_TOKENS), b"\0"),
                    self.tx(conn))

    def tx_start(self, conn: int) -> Step:
        self.ntx += 1
        name = f"t{self.ntx}"
        self.txs[conn].append(name)
        tx = self.tx(conn) if self.rng.random() < 0.15 else 0
        return Step(conn, O.TRANSACTION_START, b"\0", tx, save=name)

    def tx_end(self, conn: int) -> Step:
        rng = self.rng
        arg = rng.choice((b"T\0", b"T\0", b"T\0", b"F\0", b"X\0", b"T", b"", b"T\0F\0"))
        tx = self.tx(conn)
        if tx == 0 and self.txs[conn] and rng.random() < 0.8:
            tx = self.txs[conn][-1]
        if isinstance(tx, str) and arg in (b"T\0", b"F\0"):
            for ts in self.txs:
                if tx in ts:
                    ts.remove(tx)
                    self.ended.append(tx)
        return Step(conn, O.TRANSACTION_END, arg, tx)

    def reset_watches(self, conn: int) -> Step:
        return Step(conn, O.RESET_WATCHES, b"\0", self.tx(conn))

    def domain_op(self, conn: int) -> Step:
        rng = self.rng
        dom = rng.choice(("0", "1", "2", "5", "7", "abc", "-3", "32752"))
        kind = rng.randrange(7)
        if kind == 0:
            evtchn = rng.choice(("1", "3", "0", "-1"))
            return Step(conn, O.INTRODUCE, _b(dom, b"\0", b"1\0", evtchn, b"\0"))
        if kind == 1:
            return Step(conn, O.RELEASE, _b(dom, b"\0"))
        if kind == 2:
            return Step(conn, O.RESUME, _b(dom, b"\0"))
        if kind == 3:
            return Step(conn, O.IS_DOMAIN_INTRODUCED, _b(dom, b"\0"))
        if kind == 4:
            return Step(conn, O.GET_DOMAIN_PATH, _b(dom, b"\0"), self.tx(conn))
        if kind == 5:
            other = rng.choice(("1", "2", "5"))
            return Step(conn, O.SET_TARGET, _b(dom, b"\0", other, b"\0"))
        cmd = rng.choice((b"check\0", b"help\0", b"quota\0", b"bogus\0", b"print\0hi\0", b""))
        return Step(conn, O.CONTROL, cmd, self.tx(conn))

    def malformed(self, conn: int) -> Step:
        rng = self.rng
        path = rng.choice(_VALID)
        op = rng.choice((O.READ, O.DIRECTORY, O.GET_PERMS, O.MKDIR, O.RM))
        kind = rng.randrange(12)
        if kind < 3:
            # One-argument ops without exactly one NUL at the end: C's answer is a stale errno.
            payload = rng.choice((_b(path), _b(path, b"\0x\0"), b"", _b(path, b"\0x")))
            return Step(conn, op, payload, self.tx(conn), stale=True)
        if kind == 3:
            return Step(conn, O.WRITE, _b(path), self.tx(conn))
        if kind == 4:
            n = rng.choice((1, 3))
            return Step(conn, rng.choice((O.WATCH, O.UNWATCH)), _b(*(path + "\0",) * n))
        if kind == 5:
            return Step(conn, O.DIRECTORY_PART, _b(path, b"\0"), self.tx(conn))
        if kind == 6:
            return Step(conn, O.SET_PERMS, _b(path, b"\0"), self.tx(conn))
        if kind in (7, 9, 10):
            return Step(conn, O.GET_DOMAIN_PATH, rng.choice((b"", b"1", b"1\0002\0")))
        # A header announcing more than 4096 bytes: the daemon drops the connection.
        return Step(conn, O.READ, b"", raw=encode(O.READ, 0, 0, b"")[:12] + (5000).to_bytes(
            4, sys.byteorder))

    def odd_op(self, conn: int) -> Step:
        op = self.rng.choice((20, 23, 99, O.WATCH_EVENT, O.ERROR))
        return Step(conn, op, b"\0", self.tx(conn))


def _scenario(gen: _Gen) -> list[Step]:
    """Return a few steps that set up a case random steps rarely reach: transaction
    conflicts through a missing node's ancestors, RM in a transaction of a subtree changed
    outside it, two transactions on the same nodes, a node created and removed inside one."""
    rng = gen.rng
    n = gen.seq.nconn
    a = rng.randrange(n)
    b = rng.randrange(n) if n > 1 else a
    base = rng.choice(("/a", "/b", "/a/b", "a", "/local/domain/0/a"))
    gen.ntx += 1
    t = f"t{gen.ntx}"
    gen.txs[a].append(t)
    start = Step(a, O.TRANSACTION_START, b"\0", save=t)
    end = Step(a, O.TRANSACTION_END, rng.choice((b"T\0", b"T\0", b"F\0")), t)
    gen.txs[a].remove(t)
    gen.ended.append(t)
    kind = rng.randrange(5)
    other = rng.choice(("/z", "/a/z", base + "/c", "/b/a", base))
    if kind == 0:  # read a missing node in the tx, change something outside, look again
        steps = [start, Step(a, O.READ, _b(base, "/x/y\0"), t),
                 Step(b, O.WRITE, _b(other, b"\0v")),
                 Step(a, O.DIRECTORY, rng.choice((b"/\0", _b(base, "\0"))), t)]
    elif kind == 1:  # RM in the tx of a subtree changed outside since the tx saw it
        steps = [Step(b, O.WRITE, _b(base, "/c/d\0")), Step(b, O.WRITE, _b(base, "/e\0")),
                 start, Step(a, rng.choice((O.DIRECTORY, O.READ)), _b(base, "\0"), t),
                 Step(b, rng.choice((O.RM, O.WRITE)), _b(base, rng.choice(("/c\0", "/e\0",
                                                                        "/f\0")))),
                 Step(a, O.RM, _b(rng.choice((base, _parent_of(base))), "\0"), t),
                 Step(a, O.DIRECTORY, _b(base, "\0"), t)]
    elif kind == 2:  # two transactions on the same node
        gen.ntx += 1
        u = f"t{gen.ntx}"
        steps = [start, Step(b, O.TRANSACTION_START, b"\0", save=u),
                 Step(a, O.READ, _b(base, "\0"), t), Step(b, O.READ, _b(base, "\0"), u),
                 Step(a, O.WRITE, _b(base, "\0A"), t), Step(b, O.WRITE, _b(base, "\0B"), u),
                 Step(b, O.TRANSACTION_END, b"T\0", u)]
        gen.ended.append(u)
    elif kind == 3:  # created and removed inside the tx, with a watcher
        steps = [Step(b, O.WATCH, _b(_parent_of(base), "\0w\0")), start,
                 Step(a, O.READ, _b(base, "/n\0"), t), Step(a, O.WRITE, _b(base, "/n/m\0"), t),
                 Step(a, rng.choice((O.RM, O.MKDIR)), _b(base, "/n\0"), t)]
    else:  # permissions in and out of a tx
        perm = rng.choice(_PERMS)
        steps = [Step(b, O.MKDIR, _b(base, "\0")), start,
                 Step(a, O.SET_PERMS, _b(base, "\0", perm, "\0r1\0"), t),
                 Step(a, O.GET_PERMS, _b(base, "\0"), t), Step(b, O.GET_PERMS, _b(base, "\0"))]
    return [*steps, end]


def _parent_of(path: str) -> str:
    cut = path.rfind("/")
    return path[:cut] if cut > 0 else ("/" if path.startswith("/") else path)


def generate(seed: int) -> Sequence:
    """Return the sequence for ``seed`` (the same seed always gives the same sequence)."""
    gen = _Gen(seed)
    steps = gen.seq.steps
    length = gen.rng.randrange(8, 45)
    while len(steps) < length:
        if gen.rng.random() < 0.08:
            steps.extend(_scenario(gen))
        else:
            steps.append(gen.step())
    return gen.seq


def sequences(first_seed: int, count: int) -> Iterator[Sequence]:
    for seed in range(first_seed, first_seed + count):
        yield generate(seed)


# ----------------------------------------------------------------------------- running

Entry = tuple[int, int, tuple]  # (step index, connection, frame)


class _Conn:
    def __init__(self, path: str) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)  # blocking: waits while the C daemon's one-slot backlog is full
        s.settimeout(30)  # generous: CI machines can be very loaded
        self.sock = s
        self.dec = FrameDecoder(max_payload=1 << 20)
        self.pending: list[Message] = []
        self.closed = False
        self.watched = False

    def sync(self, marker: int) -> list[tuple]:
        """Return the frames (events) queued before the reply to a marker request."""
        if self.closed:
            return []
        try:
            self.sock.sendall(encode(O.GET_DOMAIN_PATH, marker, 0, b"0\0"))
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return [("EOF",)]
        frames = self.until(marker)
        return frames if frames and frames[-1][0] == "EOF" else frames[:-1]

    def until(self, req: int) -> list[tuple]:
        """Return every frame up to and including the reply to ``req`` (or EOF)."""
        got: list[tuple] = []
        while True:
            for i, m in enumerate(self.pending):
                if m.op != O.WATCH_EVENT and m.req_id == req:
                    got.extend(_fmt(x) for x in self.pending[:i + 1])
                    del self.pending[:i + 1]
                    return got
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                got.extend(_fmt(x) for x in self.pending)
                self.pending.clear()
                got.append(("EOF",))
                self.closed = True
                return got
            self.pending.extend(self.dec.feed(data))


def encode(op: int, req: int, tx: int, payload: bytes) -> bytes:
    """Return one frame, also one over the payload limit (the daemon must refuse it)."""
    return HEADER.pack(op, req, tx, len(payload)) + payload


def _fmt(m: Message) -> tuple:
    name = O(m.op).name if m.op in O._value2member_map_ else str(m.op)
    return (name, m.req_id, m.tx_id, m.payload)


def run(path: str, seq: Sequence) -> list[Entry]:
    """Send ``seq`` to the daemon at ``path``; return every frame received, in order."""
    conns = [_Conn(path) for _ in range(seq.nconn)]
    saved: dict[str, int] = {}
    log: list[Entry] = []
    marker = MARK
    try:
        for n, step in enumerate(seq.steps):
            c = conns[step.conn]
            if c.closed:
                log.append((n, step.conn, ("closed",)))
                continue
            tx = saved.get(step.tx, NO_SUCH_TX) if isinstance(step.tx, str) else step.tx
            req = n + 1
            try:
                c.sock.sendall(step.raw if step.raw is not None
                               else encode(step.op, req, tx, step.payload))
            except (BrokenPipeError, ConnectionResetError):
                c.closed = True
                log.append((n, step.conn, ("EOF",)))
                continue
            if step.op == O.WATCH:
                c.watched = True
            for frame in c.until(req):
                log.append((n, step.conn, frame))
                if step.save and frame[0] == "TRANSACTION_START":
                    saved[step.save] = int(frame[3].rstrip(b"\0"))
            # Every connection that may get events is drained before the next step (also this
            # one: C queues a WATCH's initial event after its reply, and drops what is still
            # queued when it closes a connection).
            for i, other in enumerate(conns):
                if other.watched:
                    marker += 1
                    log.extend((n, i, f) for f in other.sync(marker))
        for i, c in enumerate(conns):  # events still queued at the end
            marker += 1
            log.extend((len(seq.steps), i, f) for f in c.sync(marker))
    finally:
        for c in conns:
            c.sock.close()
    return log


def normalise(seq: Sequence, log: list[Entry]) -> list[Entry]:
    """Return ``log`` with the two things the C daemon does that no faithful copy can:

    1. A READ, DIRECTORY, GET_PERMS, MKDIR or RM whose payload is not exactly one
       NUL-terminated string gets no errno of its own from C 4.17 (``onearg()`` fails and
       nothing sets ``errno``): the reply names whatever errno an earlier system call or
       request left behind, which depends on the daemon's poll rounds. The same happens to
       SET_PERMS on an ``@`` name other than ``@introduceDomain``/``@releaseDomain`` (the
       EINVAL that ``set_perms_special()`` returns is dropped for ``errno``). Such a step's
       ERROR frame is compared as ``("ERROR", STALE)``.
    2. When that leftover errno is 0, C 4.17 sends no reply and aborts (``consider_message:
       Assertion 'conn->in == NULL' failed``): every connection reads EOF. A simulation need
       not crash. The record is cut at that step with a ``CRASH`` entry after its (normalised)
       ERROR, so the other daemon must still have answered that step with an ERROR.
    """
    out: list[Entry] = []
    for n, conn, frame in log:
        step = seq.steps[n] if n < len(seq.steps) else None
        if step is not None and step.stale and conn == step.conn:
            if frame == ("EOF",):
                out.append((n, conn, ("ERROR", STALE)))
                out.append((n, -1, CRASH))
                return out
            if frame[0] == "ERROR":
                frame = ("ERROR", STALE)
        out.append((n, conn, frame))
    return out


def compare(seq: Sequence, real: list[Entry], sim: list[Entry]) -> str | None:
    """Return None if the two records agree, else a short report of the first difference."""
    real, sim = normalise(seq, real), normalise(seq, sim)
    if real and real[-1][2] == CRASH and not (sim and sim[-1][2] == CRASH):
        n = real[-1][0]
        conn = seq.steps[n].conn
        kept = [e for e in sim if e[0] < n]
        for e in sim:  # the step's own frames, up to its reply
            if e[0] == n and e[1] == conn:
                kept.append(e)
                if e[2][0] != "WATCH_EVENT":
                    break
        sim = [*kept, real[-1]]
    if real == sim:
        return None
    pairs = enumerate(zip(real, sim, strict=False))
    i = next((k for k, (a, b) in pairs if a != b), min(len(real), len(sim)))
    lines = [f"seed {seq.seed} ({seq.nconn} connections): first difference at entry {i}"]
    for k in range(max(0, i - 6), min(i + 3, max(len(real), len(sim)))):
        r = real[k] if k < len(real) else None
        s = sim[k] if k < len(sim) else None
        mark = "  " if r == s else "!!"
        lines.append(f"{mark} C:   {_short(r)}")
        if r != s:
            lines.append(f"{mark} sim: {_short(s)}")
    steps = {e[0] for e in (real[i:i + 1] + sim[i:i + 1])}
    for n in sorted(steps):
        if n < len(seq.steps):
            lines.append(f"   step {n}: {_short(seq.steps[n])}")
    return "\n".join(lines)


def _short(x: object) -> str:
    return repr(x)[:220]


def format_sequence(seq: Sequence) -> str:
    """Return the steps of ``seq``, one a line (for a failure report)."""
    return "\n".join(f"{n:3}: {_short(s)}" for n, s in enumerate(seq.steps))


# ----------------------------------------------------------------------------- by hand

def _main() -> None:  # pragma: no cover - a measuring tool
    from aiovirt.sim.store import XenStoreDB
    from aiovirt.sim.xenstored import XenStored
    from tests.support.real_xenstored import real_xenstored, require_real_xenstored

    del require_real_xenstored
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=3, help="differences to print")
    ap.add_argument("--dump", action="store_true", help="print the differing sequences too")
    args = ap.parse_args()

    async def main() -> None:
        agree = 0
        shown = 0
        t0 = time.perf_counter()
        d = tempfile.mkdtemp(prefix="xf")
        for seq in sequences(args.seed, args.count):
            with real_xenstored(d, trace=False, domains=HYPERVISOR_DOMAINS) as real_path:
                real = await asyncio.to_thread(run, real_path, seq)
            db = XenStoreDB(domain_exists=HYPERVISOR_DOMAINS.__contains__)
            async with XenStored(db, f"{d}/sim", None) as server:
                sim = await asyncio.to_thread(run, server.socket_path, seq)
            diff = compare(seq, real, sim)
            if diff is None:
                agree += 1
            elif shown < args.show:
                shown += 1
                print(diff)
                if args.dump:
                    print(format_sequence(seq))
                print()
        print(f"{agree} of {args.count} sequences agree (seeds {args.seed}.."
              f"{args.seed + args.count - 1}) in {time.perf_counter() - t0:.1f} s")

    asyncio.run(main())


if __name__ == "__main__":
    _main()
