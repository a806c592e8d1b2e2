"""Differential test: the same request scripts, byte for byte, to the sim's daemon and the real C
xenstored 4.17 (run with the LD_PRELOAD stub); replies and events must be identical.

Each step is sent on one connection and its reply awaited; then every connection is synced with
a marker request (GET_DOMAIN_PATH), so the events each connection received are recorded in the
order the daemon queued them. Known deviations are listed in ``DEVIATIONS`` with the reason.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass

import pytest

from aiovirt.protocol.xs_wire import FrameDecoder, XsOp, encode
from aiovirt.sim.store import XenStoreDB
from aiovirt.sim.xenstored import XenStored
from tests.support.real_xenstored import real_xenstored, require_real_xenstored

pytestmark = pytest.mark.interop

O = XsOp  # noqa: E741 (short, the scripts are tables)
MARK = 0xFFFF0000


@dataclass(frozen=True)
class Step:
    conn: int
    op: int
    payload: bytes
    tx: int | str = 0  # a literal tx_id, or the name a START step saved
    save: str | None = None  # name for the tx id a TRANSACTION_START returns
    req: int | None = None
    stale_errno: bool = False  # see DEVIATIONS


def S(conn: int, op: int, payload: bytes | str, tx: int | str = 0, save: str | None = None,
      req: int | None = None, stale_errno: bool = False) -> Step:
    if isinstance(payload, str):
        payload = payload.encode()
    return Step(conn, op, payload, tx, save, req, stale_errno)


def _recv_until(sock: socket.socket, dec: FrameDecoder, pending: list, req: int) -> list:
    got = []
    while True:
        for i, m in enumerate(pending):
            if m.op != O.WATCH_EVENT and m.req_id == req:
                got.extend(pending[:i + 1])
                del pending[:i + 1]
                return got
        data = sock.recv(65536)
        if not data:
            got.extend(pending)
            pending.clear()
            got.append("EOF")
            return got
        pending.extend(dec.feed(data))


def run_script(path: str, steps: list[Step], nconn: int) -> list[tuple]:
    """Run ``steps`` against the daemon at ``path``; return every frame received, in order."""
    socks = []
    for _ in range(nconn):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        for attempt in range(500):  # C listens with a tiny backlog: connect may get EAGAIN
            try:
                s.connect(path)
                break
            except BlockingIOError:
                if attempt == 499:
                    raise
                time.sleep(0.002)
        socks.append(s)
    decs = [FrameDecoder() for _ in socks]
    pend: list[list] = [[] for _ in socks]
    saved: dict[str, int] = {}
    log: list[tuple] = []
    marker = MARK
    try:
        for n, step in enumerate(steps):
            tx = saved[step.tx] if isinstance(step.tx, str) else step.tx
            req = step.req if step.req is not None else n + 1
            s = socks[step.conn]
            s.sendall(encode(step.op, req, tx, step.payload))
            for m in _recv_until(s, decs[step.conn], pend[step.conn], req):
                log.append((n, step.conn, _fmt(m)))
                if step.save and m != "EOF" and m.op == O.TRANSACTION_START:
                    saved[step.save] = int(m.payload.rstrip(b"\0"))
            for c, other in enumerate(socks):
                marker += 1
                other.sendall(encode(O.GET_DOMAIN_PATH, marker, 0, b"0\0"))
                for m in _recv_until(other, decs[c], pend[c], marker)[:-1]:
                    log.append((n, c, _fmt(m)))
    finally:
        for s in socks:
            s.close()
    return log


def _fmt(m: object) -> tuple:
    if m == "EOF":
        return ("EOF",)
    op, req, tx, payload = m  # type: ignore[misc]
    name = O(op).name if op in O._value2member_map_ else str(op)
    return (name, req, tx, payload)


def w(path: str, value: str = "") -> Step:
    return S(0, O.WRITE, f"{path}\0{value}")


# ---------------------------------------------------------------------------------- scripts

LONG_NAMES = [f"child-with-a-long-name-{i:04d}" for i in range(300)]

SCRIPTS: dict[str, tuple[int, list[Step]]] = {
    "basic_ops": (1, [
        S(0, O.READ, "/\0"), S(0, O.DIRECTORY, "/\0"), S(0, O.GET_PERMS, "/\0"),
        S(0, O.DIRECTORY, "/tool\0"), S(0, O.READ, "/tool/xenstored\0"),
        w("/a/b/c", "hello"), S(0, O.READ, "/a/b/c\0"), S(0, O.READ, "/a\0"),
        S(0, O.DIRECTORY, "/a\0"), S(0, O.WRITE, b"/bin\0\x00\x01\xff value"),
        S(0, O.READ, "/bin\0"), w("/a/x"), w("/a/m"), w("/a/bin"), S(0, O.DIRECTORY, "/a\0"),
        S(0, O.MKDIR, "/a/x\0"), S(0, O.MKDIR, "/d/e\0"), S(0, O.READ, "/d/e\0"),
        S(0, O.RM, "/a/b\0"), S(0, O.DIRECTORY, "/a\0"), S(0, O.RM, "/a/b\0"),
        S(0, O.RM, "/a/b/c/d\0"), S(0, O.RM, "/\0"), S(0, O.DIRECTORY, "/\0"),
        S(0, O.WRITE, "/empty\0"), S(0, O.READ, "/empty\0"),
        S(0, O.WRITE, "/t/a@b\0v"), S(0, O.READ, "/t/a@b\0"),
        S(0, O.WRITE, b"/big\0" + b"x" * 4000), S(0, O.READ, "/big\0"),
    ]),
    "errors": (1, [
        S(0, O.READ, "/missing\0"), S(0, O.DIRECTORY, "/missing\0"),
        S(0, O.GET_PERMS, "/missing\0"), S(0, O.READ, "/missing/deeper\0"),
        S(0, O.READ, "/bad path\0"), S(0, O.READ, "//\0"), S(0, O.READ, "/a/\0"),
        S(0, O.WRITE, "/a//b\0x"), S(0, O.WRITE, "no-nul"),
        S(0, O.MKDIR, "/x\0y\0", stale_errno=True), S(0, O.RM, "/x\0y\0", stale_errno=True),
        S(0, O.RM, "", stale_errno=True), S(0, O.READ, "/x\0y\0", stale_errno=True),
        S(0, O.DIRECTORY, "", stale_errno=True), S(0, O.GET_PERMS, "/\0/\0", stale_errno=True),
        S(0, O.TRANSACTION_END, "X\0"), S(0, O.TRANSACTION_END, "T\0"),
        S(0, O.TRANSACTION_END, "T\0", tx=42), S(0, O.READ, "/\0", tx=42),
        S(0, O.GET_PERMS, "@releaseDomain\0"), S(0, O.SET_PERMS, "/\0"),
        S(0, O.SET_PERMS, "/\0q0\0"), S(0, O.SET_PERMS, "/\0r0junk\0"),
        S(0, O.SET_PERMS, "@other\0n0\0"), S(0, O.SET_PERMS, "/missing\0n0\0"),
        S(0, 20, "\0"), S(0, 99, "\0"), S(0, O.WATCH_EVENT, "\0"), S(0, O.ERROR, "\0"),
        S(0, O.WATCH, "/a\0"), S(0, O.WATCH, "/a\0t\0extra\0"), S(0, O.UNWATCH, "/a\0t\0"),
        S(0, O.DIRECTORY_PART, "/\0"), S(0, O.GET_DOMAIN_PATH, ""),
        S(0, O.GET_DOMAIN_PATH, "1\0"), S(0, O.GET_DOMAIN_PATH, "abc\0"),
        S(0, O.GET_DOMAIN_PATH, "-1\0"), S(0, O.GET_DOMAIN_PATH, " 12x\0"),
        S(0, O.IS_DOMAIN_INTRODUCED, "0\0"), S(0, O.IS_DOMAIN_INTRODUCED, "5\0"),
        S(0, O.IS_DOMAIN_INTRODUCED, "32752\0"), S(0, O.IS_DOMAIN_INTRODUCED, ""),
        S(0, O.RELEASE, "0\0"), S(0, O.RELEASE, "9\0"), S(0, O.RESUME, "9\0"),
        S(0, O.SET_TARGET, "1\0002\0"), S(0, O.INTRODUCE, "5\0"),
        S(0, O.INTRODUCE, "5\0001\0000\0"),
        S(0, O.CONTROL, "check\0"), S(0, O.CONTROL, "help\0"), S(0, O.CONTROL, "print\0hi\0"),
        S(0, O.CONTROL, "bogus\0"), S(0, O.CONTROL, ""), S(0, O.CONTROL, "quota\0"),
        S(0, O.READ, "/" + "a" * 2047 + "\0"), S(0, O.WRITE, "/" + "a" * 2048 + "\0"),
        S(0, O.WRITE, "/local/domain/5/" + "b" * 2048 + "\0v"),
        S(0, O.WRITE, "/local/domain/5/" + "b" * 2049 + "\0v"),
    ]),
    "relative_paths": (1, [
        w("rel/a", "1"), S(0, O.READ, "rel/a\0"), S(0, O.READ, "/local/domain/0/rel/a\0"),
        S(0, O.DIRECTORY, "rel\0"), S(0, O.WATCH, "rel\0tok\0"), w("/local/domain/0/rel/b"),
        S(0, O.WATCH, "/local/domain/0/rel/b\0tok\0"), w("rel/b", "2"),
        S(0, O.UNWATCH, "/local/domain/0/rel\0tok\0"), w("rel/b", "3"),
        S(0, O.UNWATCH, "rel/b\0tok\0"), S(0, O.RM, "rel\0"), S(0, O.READ, "\0"),
        S(0, O.MKDIR, "rel2\0"), S(0, O.GET_PERMS, "rel2\0"),
    ]),
    "watches": (2, [
        S(1, O.WATCH, "/w\0tw\0"), S(1, O.WATCH, "/\0root\0"), S(1, O.WATCH, "/w/a/b\0tb\0"),
        S(1, O.WATCH, "/w\0tw\0"), S(1, O.WATCH, "/w\0other\0"),
        S(1, O.WATCH, "@introduceDomain\0intro\0"), S(1, O.WATCH, "@releaseDomain\0rel\0"),
        S(1, O.WATCH, "@bogus\0b\0"), S(1, O.WATCH, "/missing/path\0m\0"),
        w("/w/a/b/c", "1"), w("/w/a/b/c", "1"), w("/wx", "no match for /w"),
        S(0, O.MKDIR, "/w/a\0"), S(0, O.MKDIR, "/w/new\0"),
        S(0, O.SET_PERMS, "/w/a\0n0\0r3\0"), S(0, O.GET_PERMS, "/w/a\0"),
        S(0, O.SET_PERMS, "/w/a\0b0x10\0"), S(0, O.GET_PERMS, "/w/a\0"),
        S(0, O.RM, "/w/a\0"), S(0, O.RM, "/w/missing\0"),
        S(0, O.INTRODUCE, "5\0001\0002\0"), S(0, O.INTRODUCE, "5\0001\0002\0"),
        S(0, O.IS_DOMAIN_INTRODUCED, "5\0"), S(0, O.RESUME, "5\0"),
        S(0, O.INTRODUCE, "6\0001\0003\0"), S(0, O.INTRODUCE, "7\0001\0003\0"),
        S(0, O.RELEASE, "7\0"), S(0, O.RELEASE, "7\0"), S(0, O.SET_TARGET, "5\0006\0"),
        S(0, O.SET_TARGET, "5\0009\0"),
        S(1, O.UNWATCH, "/w\0tw\0"), S(1, O.UNWATCH, "/w\0tw\0"), w("/w/z"),
        S(1, O.RESET_WATCHES, "\0"), w("/w/y"), S(1, O.WATCH, "/w\0tw\0"),
        S(0, O.WATCH, "/w/q\0own\0"), w("/w/q", "own event before the reply"),
    ]),
    "rm_events": (2, [
        w("/r/a/b/c"), w("/r/a/b/d"), w("/r/a/e"),
        S(1, O.WATCH, "/\0root\0"), S(1, O.WATCH, "/r/a\0wr\0"),
        S(1, O.WATCH, "/r/a/b/c\0wc\0"), S(1, O.WATCH, "/r/a/b\0wb\0"),
        S(1, O.WATCH, "/r/a/b/zz\0wz\0"), S(1, O.WATCH, "/r\0wparent\0"),
        S(0, O.RM, "/r/a\0"), S(0, O.DIRECTORY_PART, "/r\0000\0"),
    ]),
    "transactions": (2, [
        w("/t/a", "a"), S(1, O.WATCH, "/t\0tw\0"),
        S(0, O.TRANSACTION_START, "\0", save="t1"), S(0, O.READ, "/t/a\0", tx="t1"),
        S(0, O.WRITE, "/t/a\0b", tx="t1"), S(0, O.READ, "/t/a\0", tx="t1"),
        S(0, O.READ, "/t/a\0"), S(0, O.WRITE, "/t/new/deep\0n", tx="t1"),
        S(0, O.DIRECTORY, "/t\0", tx="t1"), S(0, O.DIRECTORY, "/t\0"),
        S(0, O.DIRECTORY_PART, "/t\0000\0", tx="t1"),
        S(0, O.TRANSACTION_START, "\0", tx="t1"), S(0, O.TRANSACTION_END, "T\0", tx="t1"),
        S(0, O.READ, "/t/a\0"), S(0, O.READ, "/t/a\0", tx="t1"),
        S(0, O.DIRECTORY_PART, "/t\0000\0"), S(0, O.DIRECTORY_PART, "/t/new\0000\0"),
        # conflict: read, outside write, EAGAIN (test-xenstore's "ta err")
        S(0, O.TRANSACTION_START, "\0", save="t2"), S(0, O.READ, "/t/a\0", tx="t2"),
        S(1, O.WRITE, "/t/a\0outside"), S(0, O.READ, "/t/a\0", tx="t2"),
        S(0, O.WRITE, "/t/a\0c", tx="t2"), S(0, O.TRANSACTION_END, "T\0", tx="t2"),
        S(0, O.READ, "/t/a\0"),
        # unrelated writes do not conflict; a node created outside after start is visible
        S(0, O.TRANSACTION_START, "\0", save="t3"), S(0, O.READ, "/t/a\0", tx="t3"),
        S(1, O.WRITE, "/u/x\0unrelated"), S(0, O.READ, "/u/x\0", tx="t3"),
        S(0, O.WRITE, "/t/b\0b", tx="t3"), S(0, O.RM, "/t/new\0", tx="t3"),
        S(0, O.TRANSACTION_END, "T\0", tx="t3"),
        # missing node read, then created outside: conflict
        S(0, O.TRANSACTION_START, "\0", save="t4"), S(0, O.READ, "/t/later\0", tx="t4"),
        S(1, O.WRITE, "/t/later\0x"), S(0, O.TRANSACTION_END, "T\0", tx="t4"),
        # read-only transaction whose read changed: EAGAIN too; abort applies nothing
        S(0, O.TRANSACTION_START, "\0", save="t5"), S(0, O.READ, "/t/b\0", tx="t5"),
        S(1, O.WRITE, "/t/b\0changed"), S(0, O.TRANSACTION_END, "T\0", tx="t5"),
        S(0, O.TRANSACTION_START, "\0", save="t6"), S(0, O.WRITE, "/t/b\0aborted", tx="t6"),
        S(0, O.TRANSACTION_END, "F\0", tx="t6"), S(0, O.READ, "/t/b\0"),
        # ids are per connection; another connection cannot use them
        S(0, O.TRANSACTION_START, "\0", save="t7"), S(0, O.TRANSACTION_START, "\0", save="t8"),
        S(1, O.READ, "/t/b\0", tx="t7"), S(1, O.TRANSACTION_START, "\0"),
        S(0, O.SET_PERMS, "/t/b\0n0\0r1\0", tx="t7"), S(0, O.GET_PERMS, "/t/b\0", tx="t7"),
        S(0, O.GET_PERMS, "/t/b\0"), S(0, O.MKDIR, "/t/m1/m2\0", tx="t8"),
        S(0, O.TRANSACTION_END, "T\0", tx="t8"), S(0, O.TRANSACTION_END, "T\0", tx="t7"),
        S(0, O.WATCH, "/t\0ignored-tx\0", tx=999), S(0, O.RESET_WATCHES, "\0"),
        S(0, O.TRANSACTION_START, "\0", save="t9"), S(0, O.RESET_WATCHES, "\0"),
        S(0, O.READ, "/t/b\0", tx="t9"),
    ]),
    # The classes issue 11 found with random sequences, one minimal repro each.
    "c_answers": (2, [
        S(0, O.WRITE, "@introduceDomain\0v"), S(0, O.READ, "@releaseDomain\0"),
        S(0, O.RM, "@releaseDomain\0"), S(0, O.MKDIR, "@introduceDomain\0"),
        S(0, O.DIRECTORY_PART, "@releaseDomain\0000\0"), S(0, O.DIRECTORY, "@x\0"),
        S(0, O.READ, "/local/domain/0/@introduceDomain\0"),
        S(0, O.UNWATCH, "/a b\0t\0"), S(0, O.UNWATCH, "//\0t\0"),
        S(0, O.SET_PERMS, "/\0b-1\0"), S(0, O.GET_PERMS, "/\0"),
        S(0, O.SET_PERMS, "/\0r4294967295\0n 5\0w+3\0b010\0"), S(0, O.GET_PERMS, "/\0"),
        S(0, O.SET_PERMS, "/\0n99999999999999999999\0"), S(0, O.GET_PERMS, "/\0"),
        S(0, O.SET_PERMS, "/\0n0\0"), S(0, O.SET_PERMS, "/missing\0b-1\0"),
        S(0, O.SET_PERMS, "/\0b0x\0"), S(0, O.SET_PERMS, "/\0w08\0"),
        S(0, O.INTRODUCE, "5\0001\000-1\0"), S(0, O.IS_DOMAIN_INTRODUCED, "5\0"),
        S(0, O.SET_TARGET, "5\0005\0extra\0"),
        # a missing node read in a tx records its nearest ancestor
        S(0, O.TRANSACTION_START, "\0", save="t1"), S(0, O.READ, "/x/y\0", tx="t1"),
        S(1, O.WRITE, "/z\0v"), S(0, O.DIRECTORY, "/\0", tx="t1"), S(0, O.DIRECTORY, "/\0"),
        S(0, O.TRANSACTION_END, "T\0", tx="t1"),
        # RM in a tx of a subtree changed outside since
        S(0, O.WRITE, "/r/c/d\0"), S(0, O.WRITE, "/r/e\0"),
        S(0, O.TRANSACTION_START, "\0", save="t2"), S(0, O.DIRECTORY, "/r\0", tx="t2"),
        S(1, O.RM, "/r/e\0"), S(0, O.RM, "/r\0", tx="t2"), S(0, O.DIRECTORY, "/r\0", tx="t2"),
        S(0, O.READ, "/r/c\0", tx="t2"), S(0, O.TRANSACTION_END, "T\0", tx="t2"),
        S(0, O.DIRECTORY, "/r\0"),
        # a child created outside that the tx's copy of its parent does not list
        S(0, O.TRANSACTION_START, "\0", save="t3"), S(0, O.DIRECTORY, "/r\0", tx="t3"),
        S(1, O.WRITE, "/r/new\0"), S(0, O.RM, "/r/new\0", tx="t3"),
        S(0, O.TRANSACTION_END, "F\0", tx="t3"),
        # created and removed inside a tx: no event at commit
        S(1, O.WATCH, "/\0w\0"), S(0, O.TRANSACTION_START, "\0", save="t4"),
        S(0, O.WRITE, "/n/m\0v", tx="t4"), S(0, O.RM, "/n\0", tx="t4"),
        S(0, O.WRITE, "/kept\0v", tx="t4"), S(0, O.TRANSACTION_END, "T\0", tx="t4"),
    ]),
    "long_directory": (1, [
        *[w(f"/long/{n}") for n in LONG_NAMES],
        S(0, O.DIRECTORY, "/long\0"),
        S(0, O.DIRECTORY_PART, "/long\0000\0"), S(0, O.DIRECTORY_PART, "/long\0004086\0"),
        S(0, O.DIRECTORY_PART, "/long\0004082\0"), S(0, O.DIRECTORY_PART, "/long\0003\0"),
        S(0, O.DIRECTORY_PART, "/long\00099999\0"), S(0, O.DIRECTORY_PART, "/long\0abc\0"),
        S(0, O.DIRECTORY_PART, "/missing\0000\0"),
    ]),
    "pipelining": (1, [
        S(0, O.READ, "/\0", req=7), S(0, O.READ, "/tool\0", req=0),
        S(0, O.READ, "/\0", req=0xFFFFFFF0),
    ]),
}


# Deviations of the sim from C 4.17, each with its reason. The log is normalised by these
# functions (applied to both sides) before comparing.
#
# 1. READ/DIRECTORY/GET_PERMS/MKDIR/RM whose payload is not exactly one NUL-terminated string:
#    C answers with whatever errno a previous call left behind (its `onearg()` failure is not
#    given an errno), so the name is not a property of the request. The sim answers ENOENT
#    (reads) or ENOMEM (MKDIR/RM), C's answers on a fresh connection. Steps marked
#    `stale_errno` are compared as "some ERROR".
def _normalise(steps: list[Step], log: list[tuple]) -> list[tuple]:
    out = []
    for n, conn, frame in log:
        if steps[n].stale_errno and frame[0] == "ERROR":
            frame = (*frame[:3], b"<stale errno>")
        out.append((n, conn, frame))
    return out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
async def test_same_replies_and_events_as_c_xenstored(name: str, short_dir: str) -> None:
    require_real_xenstored()
    nconn, steps = SCRIPTS[name]
    d = short_dir
    with real_xenstored(d, trace=False) as real_path:
        real = await asyncio.to_thread(run_script, real_path, steps, nconn)
    server = XenStored(XenStoreDB(), f"{d}/sim-socket", None)
    async with server:
        sim = await asyncio.to_thread(run_script, server.socket_path, steps, nconn)
    real, sim = _normalise(steps, real), _normalise(steps, sim)
    if real != sim:
        lines = []
        for i in range(max(len(real), len(sim))):
            r = real[i] if i < len(real) else None
            s = sim[i] if i < len(sim) else None
            mark = "  " if r == s else "!!"
            lines.append(f"{mark} C:   {_short(r)}")
            if r != s:
                lines.append(f"{mark} sim: {_short(s)}  <- step {steps[(s or r)[0]]!r:.120}")
        pytest.fail("sim differs from C xenstored:\n" + "\n".join(lines[:200]))


def _short(entry: tuple | None) -> str:
    return repr(entry)[:200]
