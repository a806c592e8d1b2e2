"""Pipelined READ rate of the sim's xenstored against the real C xenstored, in the same run.

A raw client sends bursts of READ requests (distinct req_ids) in one write per burst and reads
all the replies, from one connection and from many at once. The sim daemon runs in a child
process (its own event loop and core), the C daemon is Debian's xenstored 4.17 with the test
stub; both are loaded with the same tree.

    python benchmarks/sim_xenstored.py [--burst 20000] [--bursts 5] [--conns 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from aiovirt.protocol.xs_wire import HEADER, XsOp, encode

KEY = b"/local/domain/1/name"


def _serve_sim(directory: str, ready: multiprocessing.synchronize.Event) -> None:
    from aiovirt.sim.store import XenStoreDB
    from aiovirt.sim.xenstored import XenStored

    async def main() -> None:
        async with XenStored(XenStoreDB(), f"{directory}/socket", f"{directory}/socket_ro"):
            ready.set()
            await asyncio.Event().wait()

    asyncio.run(main())


def _connect(path: str) -> socket.socket:
    for _ in range(1000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            s.close()
            time.sleep(0.005)
    raise RuntimeError(f"cannot connect to {path}")


def _burst(sock: socket.socket, n: int) -> None:
    sock.sendall(b"".join(encode(XsOp.READ, i + 1, 0, KEY + b"\0") for i in range(n)))
    need = n
    buf = b""
    while need:
        buf += sock.recv(1 << 20)
        pos = 0
        while len(buf) - pos >= HEADER.size:
            length = HEADER.unpack_from(buf, pos)[3]
            if len(buf) - pos < HEADER.size + length:
                break
            pos += HEADER.size + length
            need -= 1
        buf = buf[pos:]


def _rate(path: str, conns: int, burst: int, bursts: int) -> float:
    socks = [_connect(path) for _ in range(conns)]
    try:
        for s in socks:
            _burst(s, 100)  # warm-up
        per_conn = burst // conns
        start = time.perf_counter()
        threads = [threading.Thread(target=lambda s=s: [_burst(s, per_conn)
                                                          for _ in range(bursts)])
                   for s in socks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        return per_conn * conns * bursts / elapsed
    finally:
        for s in socks:
            s.close()


def _setup(path: str) -> None:
    s = _connect(path)
    s.sendall(encode(XsOp.WRITE, 1, 0, KEY + b"\0Domain-with-a-name"))
    s.recv(4096)
    s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=20000)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--conns", type=int, default=8)
    args = parser.parse_args()

    d = tempfile.mkdtemp(prefix="av")
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_serve_sim, args=(d, ready), daemon=True)
    proc.start()
    ready.wait(10)
    sim_path = f"{d}/socket"
    _setup(sim_path)
    results: dict[str, dict[int, float]] = {"sim": {}}
    for conns in (1, args.conns):
        results["sim"][conns] = _rate(sim_path, conns, args.burst, args.bursts)
    proc.kill()
    proc.join()

    from tests.support.real_xenstored import real_xenstored, real_xenstored_available
    reason = real_xenstored_available()
    if reason is None:
        results["C"] = {}
        with real_xenstored(tempfile.mkdtemp(prefix="av"), trace=False) as c_path:
            _setup(c_path)
            for conns in (1, args.conns):
                results["C"][conns] = _rate(c_path, conns, args.burst, args.bursts)
    else:
        print(f"real C xenstored not measured: {reason}")

    print(f"pipelined READs, {args.burst} per burst x {args.bursts} bursts")
    for conns in (1, args.conns):
        sim = results["sim"][conns]
        line = f"  {conns:2d} connection(s): sim {sim:10,.0f} reads/s"
        if "C" in results:
            c = results["C"][conns]
            line += f"   C xenstored {c:10,.0f} reads/s   sim/C = {sim / c:.2f}"
        print(line)


if __name__ == "__main__":
    main()
