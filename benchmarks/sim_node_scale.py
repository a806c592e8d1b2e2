"""How the simulated node scales: start-up, xend's detailed list, a full ``xenstore-ls``.

Measured in one run for a small node (the baseline, ``--small`` guests) and a large one
(``--domains`` guests, default 5,000), each started in-process:

- ``start``: ``SimNode.__aenter__`` (building every domain and its xenstore tree, starting the
  three servers), and the store's node count;
- ``detail``: ``GET /xend/domain?detail=1`` over the unix socket with a raw HTTP client
  (median of ``--rounds``), bytes and time;
- ``xenstore-ls``: Debian's ``xenstore-ls`` over the whole tree (skipped if not installed),
  lines and time, i.e. the daemon's serial round-trip rate.

Printed: the figures per node and the ratios large / small (per domain for start-up).

Usage: ``python benchmarks/sim_node_scale.py [--domains 5000] [--small 100] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import time

from _harness import short_dir

from aiovirt.sim import SimNode


async def detail_list(node: SimNode) -> tuple[int, float]:
    """Return (bytes, seconds) of one detailed domain list over xend's unix socket."""
    t = time.perf_counter()
    reader, writer = await asyncio.open_unix_connection(node.xend_unix_path)
    writer.write(b"GET /xend/domain?detail=1 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    writer.close()
    return length, time.perf_counter() - t


async def xenstore_ls(node: SimNode) -> tuple[int, float] | None:
    """Return (lines, seconds) of a full xenstore-ls, or None without the tool."""
    tool = shutil.which("xenstore-ls")
    if tool is None:
        return None
    t = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        tool, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "XENSTORED_PATH": node.xenstore_path})
    out, _ = await proc.communicate()
    return out.count(b"\n"), time.perf_counter() - t


async def measure(domains: int, rounds: int) -> dict[str, float]:
    """Return the figures of one node of ``domains`` guests."""
    with short_dir() as directory:
        t = time.perf_counter()
        node = SimNode(directory, domains=domains, seed=1)
        await node.start()
        start = time.perf_counter() - t
        try:
            lists = [await detail_list(node) for _ in range(rounds)]
            ls = await xenstore_ls(node)
            return {
                "domains": domains, "start": start, "nodes": len(list(node.db.walk())),
                "detail_bytes": lists[0][0],
                "detail": statistics.median(s for _, s in lists),
                "ls_lines": ls[0] if ls else 0, "ls": ls[1] if ls else float("nan"),
            }
        finally:
            await node.close()


def show(fig: dict[str, float]) -> None:
    """Print one node's figures."""
    ls_rate = fig["ls_lines"] / fig["ls"] if fig["ls"] == fig["ls"] else float("nan")
    print(f"{int(fig['domains']):>6} guests: start {fig['start']:.2f} s "
          f"({int(fig['nodes'])} store nodes); detail list {int(fig['detail_bytes'])} bytes "
          f"in {fig['detail'] * 1000:.1f} ms; xenstore-ls {int(fig['ls_lines'])} lines in "
          f"{fig['ls']:.2f} s ({ls_rate:,.0f} nodes/s)")


async def main() -> None:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", type=int, default=5000)
    p.add_argument("--small", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    small = await measure(args.small, args.rounds)
    show(small)
    large = await measure(args.domains, args.rounds)
    show(large)
    per_small = small["start"] / max(1, args.small)
    per_large = large["start"] / max(1, args.domains)
    print(f"ratios large/small: start per guest {per_large / per_small:.2f}x, "
          f"detail list time {large['detail'] / small['detail']:.1f}x for "
          f"{args.domains / args.small:.0f}x the guests, xenstore-ls time "
          f"{large['ls'] / small['ls']:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
