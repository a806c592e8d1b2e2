"""aiovirsh: the virsh-like command line of aiovirt (also ``python -m aiovirt``).

``aiovirsh [-c URI] [--readonly] [--json] COMMAND [ARGS]``. Tables and values go to stdout,
errors to stderr as one line, and the exit status is 0 on success, 1 when the command failed
and 2 for a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from aiovirt._version import __version__
from aiovirt.cli.commands import ALIASES, COMMANDS, GROUPS, CommandError, run_command
from aiovirt.cli.format import to_json

__all__ = ["build_parser", "main"]

DEFAULT_URI = "xen:///"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _command_list() -> str:
    """Return the commands grouped as virsh groups them, for the top-level ``--help``."""
    width = max(len(spec.name) for spec in COMMANDS) + 2
    sections = []
    for group in GROUPS:
        lines = [f"{group}:"]
        for spec in COMMANDS:
            if spec.group == group:
                names = ", ".join((spec.name, *ALIASES.get(spec.name, ())))
                lines.append(f"  {names:<{width + 8}} {spec.help}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser: global options, then one sub-command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON instead of tables")
    parser = argparse.ArgumentParser(
        prog="aiovirsh",
        description="Manage the domains of a Xen node (or of a simulated one: -c sim:///).",
        epilog=_command_list() + "\n\nexample: aiovirsh -c sim:/// list\n"
               "'aiovirsh COMMAND --help' shows a command's arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("-c", "--connect", metavar="URI", default=None,
                        help=f"connection URI (default: $AIOVIRT_DEFAULT_URI or {DEFAULT_URI})")
    parser.add_argument("-r", "--readonly", action="store_true",
                        help="open a read-only connection (state changes are refused)")
    parser.add_argument("-v", "--version", action="version", version=f"aiovirsh {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                help="one of the commands below")
    sub.required = True
    for spec in COMMANDS:
        cmd = sub.add_parser(spec.name, description=spec.help,
                             epilog=f"example: {spec.example}" if spec.example else None,
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             parents=[common], aliases=list(ALIASES.get(spec.name, ())))
        spec.add_arguments(cmd)
        cmd.set_defaults(spec=spec)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run aiovirsh with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    As a console script the status becomes the process's exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "json"):
        args.json = False
    if hasattr(args, "file"):
        # save and restore hand xend an absolute path, resolved against the caller's cwd
        args.file_abs = os.path.abspath(args.file)
    if args.spec.name == "exporter":
        from aiovirt.exporter.cli import run

        return run(args, default_uri=args.connect)
    try:
        return asyncio.run(run_command(args))
    except KeyboardInterrupt:
        return 130
    except CommandError as err:
        _print_error(err, args.json)
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK


def _print_error(err: CommandError, as_json: bool) -> None:
    if as_json:
        print(to_json(err.as_dict()), file=sys.stderr)
    else:
        print(f"error: {err}", file=sys.stderr)
