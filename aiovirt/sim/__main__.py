"""``python -m aiovirt.sim --dir DIR``: run a simulated Xen node until SIGTERM or SIGINT.

Prints exactly one JSON line to stdout once every server listens::

    {"uri": ..., "xenstore": ..., "xenstore_ro": ..., "xend": "http://127.0.0.1:PORT",
     "xend_unix": ..., "privcmd": ..., "stats_root": ...}

``stats_root`` is the directory under which the node's device statistics files are
(``sys/bus/xen-backend/devices/vbd-*/statistics/`` and ``proc/net/dev``, as on a dom0).

With ``--xen-tools`` the line also carries ``"xen_tools_env"``: the environment variables under
which Xen's own ``xl``, ``xentop`` and libxenctrl work against the node (:mod:`aiovirt.sim.xenabi`).

Logs go to stderr. Exit status: 0 after a clean stop, 1 if the directory is held by a live
node (or cannot be used), 2 for bad arguments.

SIGUSR1 stops the node's xenstored (every client is dropped, the sockets go away) and SIGUSR2
starts it again on the same store, so another process can test reconnection while the node
goes on changing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import Sequence

from aiovirt.protocol.xs_wire import XsOp
from aiovirt.sim.faults import Faults, XendOp, XsFaults, xend_op, xs_op
from aiovirt.sim.node import SimNode
from aiovirt.sim.startup import SimDirInUse
from aiovirt.sim.xend import ERROR_STYLES, SERVINGS

log = logging.getLogger("aiovirt.sim")


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser."""
    p = argparse.ArgumentParser(
        prog="python -m aiovirt.sim",
        description="Run a simulated Xen node: xenstored, xend and the hypercall endpoint.")
    p.add_argument("--dir", required=True, help="directory for the sockets (created if needed)")
    p.add_argument("--domains", type=int, default=3, help="guests at start (default 3)")
    p.add_argument("--xend-port", type=int, default=0, help="xend TCP port (0: a free port)")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible guests")
    p.add_argument("--shutdown-delay", type=float, default=0.2,
                   help="seconds a guest takes to shut down after a request (default 0.2)")
    p.add_argument("--error-style", choices=ERROR_STYLES, default="3.0.3",
                   help="xend version whose error conventions to follow (default 3.0.3)")
    p.add_argument("--xend-serving", choices=SERVINGS, default=None,
                   help="serial: one connection at a time per listener (xend 3.0.0-3.0.3); "
                        "threaded: each on its own (3.0.4+); default: the error style's")
    p.add_argument("--device-stats", action=argparse.BooleanOptionalAction, default=None,
                   help="serve the block/network statistics files under DIR/xen-root (default: "
                        "for nodes of up to 1024 guests)")
    p.add_argument("--stats-interval", type=float, default=1.0,
                   help="seconds between rewrites of the device statistics files (default 1; "
                        "0: written once at start)")
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")
    p.add_argument("--xen-tools", action="store_true",
                   help="build the Xen ABI library if needed and add \"xen_tools_env\" to the "
                        "ready line: the environment under which Xen's xl, xentop and "
                        "libxenctrl work against this node")
    p.add_argument("--xen-interface", type=lambda text: int(text, 16), default=None,
                   metavar="HEX", help="with --xen-tools: the sysctl/domctl interface version "
                   "the simulated hypervisor speaks (default Xen 4.17's, 0x15)")
    f = p.add_argument_group("fault injection")
    f.add_argument("--xend-delay", type=float, default=0.0, help="delay every xend reply (s)")
    f.add_argument("--xend-fail-op", action="append", default=[], metavar="OP", type=_xend_op,
                   help="xend answers 500 for OP (repeatable; * for all)")
    f.add_argument("--xend-stall-op", action="append", default=[], metavar="OP", type=_xend_op,
                   help="xend never answers OP (repeatable; * for all)")
    f.add_argument("--xend-drop-after", type=int, default=None, metavar="K",
                   help="xend drops a connection after answering K requests on it")
    f.add_argument("--xs-delay", type=float, default=0.0, help="delay every xenstored reply (s)")
    f.add_argument("--xs-drop-after", type=int, default=None, metavar="K",
                   help="xenstored drops a connection after answering K requests on it")
    f.add_argument("--xs-stall-op", action="append", default=[], metavar="OP", type=_xs_op,
                   help="xenstored never answers OP (name like READ, or number; repeatable)")
    f.add_argument("--xs-stall-path", action="append", default=[], metavar="PREFIX",
                   help="xenstored never answers requests on paths starting with PREFIX")
    return p


def _xend_op(text: str) -> XendOp:
    try:
        return xend_op(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _xs_op(text: str) -> XsOp:
    try:
        return xs_op(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def faults_from(args: argparse.Namespace) -> Faults:
    """Return the fault knobs the command line asked for."""
    xend = Faults().xend
    xend.delay = args.xend_delay
    xend.fail_ops.update(args.xend_fail_op)
    xend.stall_ops.update(args.xend_stall_op)
    xend.drop_after = args.xend_drop_after
    xenstore = XsFaults(delay=args.xs_delay, drop_after=args.xs_drop_after,
                        stall_ops=set(args.xs_stall_op), stall_paths=set(args.xs_stall_path))
    return Faults(xend=xend, xenstore=xenstore)


async def serve(args: argparse.Namespace) -> int:
    """Run the node until SIGTERM/SIGINT; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    library = None
    if args.xen_tools:
        from aiovirt.sim.xenabi import XenToolsUnavailable, build_library

        try:
            library = build_library()
        except XenToolsUnavailable as exc:
            print(f"aiovirt.sim: --xen-tools: {exc}", file=sys.stderr)
            return 1
    node = SimNode(args.dir, domains=args.domains, seed=args.seed, xend_port=args.xend_port,
                   shutdown_delay=args.shutdown_delay, error_style=args.error_style,
                   faults=faults_from(args), xend_serving=args.xend_serving,
                   device_stats=args.device_stats)
    try:
        await node.start()
    except SimDirInUse as exc:
        print(f"aiovirt.sim: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"aiovirt.sim: cannot start in {args.dir}: {exc}", file=sys.stderr)
        return 1
    # What start() built (the store's tree, the domains) lives as long as this process: taken
    # out of the collector's view, a full collection no longer walks it. At 5,000 domains that
    # walk stopped every daemon of the node for a quarter of a second now and then, a pause no
    # real xenstored, xend or hypervisor has.
    gc.freeze()
    restarts: list[asyncio.Task[None]] = []

    def xenstored(up: bool) -> None:
        daemon = node._xenstored
        if daemon is not None:
            log.info("xenstored %s on request", "starting" if up else "stopping")
            restarts.append(loop.create_task(daemon.start() if up else daemon.close()))

    loop.add_signal_handler(signal.SIGUSR1, xenstored, False)
    loop.add_signal_handler(signal.SIGUSR2, xenstored, True)
    if node.devstats is not None:
        node.devstats.interval = args.stats_interval or None
    try:
        ready: dict[str, object] = dict(node.endpoints)
        if library is not None:
            from aiovirt.sim.xenabi import prepare_root, tools_environment

            ready["xen_tools_env"] = tools_environment(
                library, privcmd=node.privcmd_path, xenstore=node.xenstore_path,
                root=prepare_root(args.dir), interface_version=args.xen_interface)
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()
        log.info("stopping")
    finally:
        for task in restarts:
            with contextlib.suppress(Exception):
                await task
        await node.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aiovirt.sim``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.domains < 0:
        build_parser().error("--domains must be >= 0")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
