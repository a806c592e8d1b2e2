"""Pipelined READ rate of the sim's xenstored against the real C xenstored, in the same run.

A raw client sends bursts of READ requests (distinct req_ids) in one write per burst and reads
all the replies, from one connection and from many at once. The sim daemon runs in a child
process (its own event loop and core), the C daemon is Debian's xenstored 4.17 with the test
stub; both are loaded with the same tree.

    python benchmarks/sim_xenstored.py [--burst 20000] [--bursts 5] [--conns 8]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

from _harness import real_xenstored, real_xenstored_unavailable, short_dir, sim_xenstored

from aiovirt.protocol.xs_wire import HEADER, XsOp, encode

KEY = b"/local/domain/1/name"


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

        def run(sock: socket.socket) -> None:
            for _ in range(bursts):
                _burst(sock, per_conn)

        threads = [threading.Thread(target=run, args=(s,)) for s in socks]
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

    results: dict[str, dict[int, float]] = {"sim": {}}
    with short_dir("av") as d, sim_xenstored(d) as sim_path:
        _setup(sim_path)
        for conns in (1, args.conns):
            results["sim"][conns] = _rate(sim_path, conns, args.burst, args.bursts)

    reason = real_xenstored_unavailable()
    if reason is None:
        results["C"] = {}
        with short_dir("av") as d, real_xenstored(d) as c_path:
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
