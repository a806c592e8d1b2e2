"""The exporter's command line: ``python -m aiovirt.exporter`` and ``aiovirsh exporter``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from aiovirt.exporter.server import DEFAULT_PORT, parse_listen, serve
from aiovirt.exporter.source import NodeSource, parse_node_arg

__all__ = ["add_arguments", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the exporter's options on ``parser`` (shared by aiovirsh and ``-m``)."""
    parser.add_argument("--listen", "-l", metavar="HOST:PORT", default=f":{DEFAULT_PORT}",
                        help=f"where to serve /metrics (default :{DEFAULT_PORT}, every address)")
    parser.add_argument("-c", "--connect", dest="nodes", metavar="[NAME=]URI", action="append",
                        default=None, help="a node to export (repeatable; default "
                        "$AIOVIRT_DEFAULT_URI or xen:///)")
    parser.add_argument("--readonly", "-r", dest="exporter_readonly", action="store_true",
                        help="open read-only connections (no hypervisor: xend answers)")
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")


def run(args: argparse.Namespace, default_uri: str | None = None) -> int:
    """Run the exporter the parsed ``args`` describe until SIGTERM/SIGINT; return the status."""
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"error: --listen {exc}", file=sys.stderr)
        return 2
    uris = args.nodes or [default_uri or os.environ.get("AIOVIRT_DEFAULT_URI") or "xen:///"]
    named = [parse_node_arg(u) for u in uris]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        print("error: two nodes have the same name (use -c NAME=URI)", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def main_task() -> int:
        sources = [NodeSource(name, uri, read_only=args.exporter_readonly)
                   for name, uri in named]
        return await serve(sources, host, port, announce=lambda line: print(line, flush=True))

    try:
        return asyncio.run(main_task())
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m aiovirt.exporter``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m aiovirt.exporter",
        description="Serve Prometheus metrics (libvirt_exporter's names) for Xen nodes.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
