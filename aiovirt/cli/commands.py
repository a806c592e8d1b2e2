"""The commands of aiovirsh: each opens the connection, does one thing and prints the result."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiovirt
from aiovirt._version import __version__
from aiovirt.cli.format import format_cpu_time, key_values, state_name, table, to_json
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.states import DomainState

if TYPE_CHECKING:
    from aiovirt.connection import Connection
    from aiovirt.domain import Domain
    from aiovirt.protocol.devstats import BlockStats, InterfaceStats

    DeviceCounters = BlockStats | InterfaceStats

__all__ = ["ALIASES", "COMMANDS", "GROUPS", "CommandError", "CommandSpec", "run_command"]

# Errors that mean "there is no Xen node at this address", worth a hint to try the simulator.
_NO_NODE = {ErrorNumber.NO_CONNECT, ErrorNumber.NO_XEN, ErrorNumber.NO_XENSTORE,
            ErrorNumber.NO_SUPPORT, ErrorNumber.UNKNOWN_HOST}


class CommandError(Exception):
    """A command failed: one line for stderr, and the libvirt error behind it, if any."""

    def __init__(self, message: str, error: VirtError | None = None) -> None:
        super().__init__(message)
        self.error = error

    def as_dict(self) -> dict[str, Any]:
        """Return the error as a JSON-ready dict (message, libvirt code and domain)."""
        out: dict[str, Any] = {"error": str(self)}
        if self.error is not None:
            code, domain = self.error.code, self.error.domain
            out["code"] = int(code)
            out["code_name"] = getattr(code, "name", str(code))
            out["domain"] = int(domain)
            out["domain_name"] = getattr(domain, "name", str(domain))
        return out


class Output:
    """Where a command writes: text or JSON on stdout."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def text(self, text: str) -> None:
        """Print ``text`` (text mode only)."""
        if not self.json:
            print(text, flush=True)

    def data(self, value: Any, text: str | None = None) -> None:
        """Print ``value`` as JSON in JSON mode, else ``text`` (if any)."""
        if self.json:
            print(to_json(value), flush=True)
        elif text is not None:
            print(text, flush=True)


Handler = Callable[["Connection", argparse.Namespace, Output], Awaitable[None]]


# The groups of ``aiovirsh --help``, as virsh groups its commands.
DOMAIN_MANAGEMENT = "Domain management"
DOMAIN_MONITORING = "Domain monitoring"
HOST = "Host and hypervisor"
GROUPS = (DOMAIN_MANAGEMENT, DOMAIN_MONITORING, HOST)


@dataclass(frozen=True)
class CommandSpec:
    """One command: its name, help line, handler, arguments, group and an example."""

    name: str
    help: str
    handler: Handler
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    writes: bool = False
    group: str = DOMAIN_MONITORING
    example: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare this command's arguments on its sub-parser."""
        for flags, kwargs in self.arguments:
            parser.add_argument(*flags, **kwargs)


def _arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, kwargs


_DOMAIN = _arg("domain", metavar="DOMAIN", help="domain name, id or UUID")


_INT_MAX = 2**31 - 1


def _as_id(spec: str) -> int | None:
    """Return ``spec`` as a domain id the way virsh reads one (a C int >= 0), else None."""
    text = spec.strip()
    if not text or not text.lstrip("+-").isdigit() or text.count("-") + text.count("+") > 1:
        return None
    number = int(text)
    return number if 0 <= number <= _INT_MAX else None


async def lookup_domain(conn: Connection, spec: str) -> Domain:
    """Return the domain named by ``spec`` as virsh finds it: as an id, then a UUID, then a name.

    An id is tried when ``spec`` reads as a non-negative C int, a UUID when it parses as one;
    the name is always tried last. When nothing matches, the error says what was tried.
    """
    tried: list[str] = []
    attempts: list[tuple[str, Any]] = []
    domid = _as_id(spec)
    if domid is not None:
        attempts.append((f"id {domid}", lambda: conn.lookup_by_id(domid)))
    try:
        uuidlib.UUID(spec)
    except ValueError:
        pass
    else:
        attempts.append((f"UUID {spec}", lambda: conn.lookup_by_uuid_string(spec)))
    attempts.append((f"name {spec!r}", lambda: conn.lookup_by_name(spec)))
    last: VirtError | None = None
    for what, attempt in attempts:
        try:
            dom: Domain = await attempt()
            return dom
        except VirtError as err:
            if err.code != ErrorNumber.NO_DOMAIN:
                raise CommandError(f"failed to get domain '{spec}': {err}", err) from err
            tried.append(what)
            last = err
    assert last is not None
    raise CommandError(f"failed to get domain '{spec}': no domain with {' or '.join(tried)} "
                       f"on {conn.uri!r}", last) from last


def _domain_dict(dom: Domain) -> dict[str, Any]:
    return {"id": dom.id, "name": dom.name, "uuid": dom.uuid_string}


# --- queries --------------------------------------------------------------------------------------

async def cmd_list(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """List domains with their id and state (shut-off ones only with --all)."""
    # One bulk read (with the hypervisor: one batch, and names from xenstore), not a listing
    # followed by each domain's info(); a domain gone in between is simply not listed.
    pairs = await conn.domain_infos()
    rows = []
    for dom, info in sorted(pairs, key=lambda p: p[0].id):
        if not args.all and info.state in (DomainState.SHUTOFF, DomainState.CRASHED):
            continue
        rows.append((dom, info.state))
    out.data([{**_domain_dict(d), "state": state_name(s)} for d, s in rows],
             table(("Id", "Name", "State"),
                   ((d.id, d.name, state_name(s)) for d, s in rows)))


async def cmd_dominfo(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Show a domain's id, name, UUID, OS type, state, vCPUs, CPU time and memory."""
    dom = await lookup_domain(conn, args.domain)
    info, os_type = await asyncio.gather(dom.info(), dom.os_type())
    out.data(
        {**_domain_dict(dom), "os_type": os_type, "state": state_name(info.state),
         "vcpus": info.nr_virt_cpu, "cpu_time_ns": info.cpu_time,
         "max_memory_kib": info.max_mem, "memory_kib": info.memory},
        key_values([
            ("Id", dom.id), ("Name", dom.name), ("UUID", dom.uuid_string),
            ("OS Type", os_type), ("State", state_name(info.state)),
            ("CPU(s)", info.nr_virt_cpu), ("CPU time", format_cpu_time(info.cpu_time)),
            ("Max memory", f"{info.max_mem} KiB"), ("Used memory", f"{info.memory} KiB"),
        ]),
    )


async def cmd_domstate(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Print a domain's state."""
    dom = await lookup_domain(conn, args.domain)
    state = (await dom.info()).state
    out.data({**_domain_dict(dom), "state": state_name(state)}, state_name(state))


async def cmd_domid(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Print a domain's id."""
    dom = await lookup_domain(conn, args.domain)
    out.data(_domain_dict(dom), str(dom.id))


async def cmd_domname(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Print a domain's name."""
    dom = await lookup_domain(conn, args.domain)
    out.data(_domain_dict(dom), dom.name)


async def cmd_domuuid(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Print a domain's UUID."""
    dom = await lookup_domain(conn, args.domain)
    out.data(_domain_dict(dom), dom.uuid_string)


async def cmd_dumpxml(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Print a domain's XML description."""
    dom = await lookup_domain(conn, args.domain)
    xml = await dom.xml_desc()
    out.data({**_domain_dict(dom), "xml": xml}, xml.rstrip("\n"))


def _device_stats(what: str, noun: str,
                  call: Callable[[Domain, str], Awaitable[DeviceCounters]]) -> Handler:
    """Return the handler that prints one device's counters, ``DEVICE FIELD VALUE`` per line.

    ``what`` names the statistics and ``noun`` the device in the error (virsh's words).
    """
    async def handler(conn: Connection, args: argparse.Namespace, out: Output) -> None:
        dom = await lookup_domain(conn, args.domain)
        try:
            stats = await call(dom, args.device)
        except VirtError as err:
            raise CommandError(f"failed to get {what} stats for domain '{args.domain}' "
                               f"{noun} '{args.device}': {err}", err) from err
        fields = stats._asdict()
        out.data({**_domain_dict(dom), "device": args.device, **fields},
                 "\n".join(f"{args.device} {key} {value}" for key, value in fields.items()))

    handler.__doc__ = f"Print the {what} counters of one {noun}, as virsh does."
    return handler


async def cmd_exporter(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Never called: ``main`` runs the exporter, which opens its own connections."""
    raise CommandError("the exporter is started by aiovirsh's main")


async def cmd_nodeinfo(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Show the node's CPUs and memory."""
    info = await conn.node_info()
    fields = _node_fields(info)
    labels = {
        "model": "CPU model", "cpus": "CPU(s)", "mhz": "CPU frequency",
        "sockets": "CPU socket(s)", "cores": "Core(s) per socket",
        "threads": "Thread(s) per core", "nodes": "NUMA cell(s)", "memory": "Memory size",
    }
    pairs: list[tuple[str, Any]] = []
    for key, label in labels.items():
        if key not in fields:
            continue
        value = fields[key]
        if key == "mhz":
            value = f"{value} MHz"
        elif key == "memory":
            value = f"{value} KiB"
        pairs.append((label, value))
    out.data(fields, key_values(pairs))


def _node_fields(info: Any) -> dict[str, Any]:
    if hasattr(info, "_asdict"):
        return dict(info._asdict())
    if isinstance(info, dict):
        return dict(info)
    if isinstance(info, (list, tuple)):
        # libvirt's virNodeGetInfo order
        keys = ("model", "memory", "cpus", "mhz", "nodes", "sockets", "cores", "threads")
        return dict(zip(keys, info, strict=False))
    return {k: v for k, v in vars(info).items() if not k.startswith("_")}


async def cmd_version(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Show the library, API and running hypervisor versions."""
    hv_type = await conn.get_type()
    try:
        hv = await conn.get_version()
    except VirtError:
        hv = 0
    lib = aiovirt.get_version()
    if hv:
        running = f"{hv_type} {hv // 1_000_000}.{hv // 1000 % 1000}.{hv % 1000}"
    else:
        running = None
    lines = [
        f"Compiled against library: aiovirt {__version__}",
        f"Using library: aiovirt {__version__}",
        f"Using API: {hv_type} 3.0.0",
        f"Running hypervisor: {running}" if running else
        "cannot extract running hypervisor version",
    ]
    out.data({"library": lib, "library_string": __version__, "type": hv_type,
              "hypervisor": hv}, "\n".join(lines))


# --- actions --------------------------------------------------------------------------------------

def _action(verb: str, done: str, call: Callable[[Domain], Awaitable[None]]) -> Handler:
    """Return the handler of a one-domain action: ``verb`` names it, ``done`` reports it."""
    async def handler(conn: Connection, args: argparse.Namespace, out: Output) -> None:
        dom = await lookup_domain(conn, args.domain)
        try:
            await call(dom)
        except VirtError as err:
            raise CommandError(f"failed to {verb} domain '{args.domain}': {err}",
                               err) from err
        out.data({**_domain_dict(dom), "result": done.split()[-1]},
                 f"Domain {args.domain} {done}")

    handler.__doc__ = f"Domain ... {done}"
    return handler


async def cmd_create(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Create and start a domain from an XML file."""
    try:
        xml = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    try:
        dom = await conn.create_linux(xml)
    except VirtError as err:
        raise CommandError(f"failed to create domain from {args.file}: {err}", err) from err
    out.data({**_domain_dict(dom), "result": "created"},
             f"Domain {dom.name} created from {args.file}")


async def cmd_save(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Save a domain's state to a file; the domain stops."""
    dom = await lookup_domain(conn, args.domain)
    path = args.file_abs
    try:
        await dom.save(path)
    except VirtError as err:
        raise CommandError(f"failed to save domain '{args.domain}' to {path}: {err}",
                           err) from err
    out.data({**_domain_dict(dom), "result": "saved", "file": path},
             f"Domain {args.domain} saved to {args.file}")


async def cmd_restore(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Restore a domain from a file written by save."""
    path = args.file_abs
    try:
        await conn.restore(path)
    except VirtError as err:
        raise CommandError(f"failed to restore domain from {path}: {err}", err) from err
    out.data({"result": "restored", "file": path}, f"Domain restored from {args.file}")


def _memory_action(what: str, call: Callable[[Domain, int], Awaitable[None]]) -> Handler:
    async def handler(conn: Connection, args: argparse.Namespace, out: Output) -> None:
        dom = await lookup_domain(conn, args.domain)
        try:
            await call(dom, args.kib)
        except VirtError as err:
            raise CommandError(f"failed to set {what} of domain '{args.domain}': {err}",
                               err) from err
        out.data({**_domain_dict(dom), what.replace(" ", "_") + "_kib": args.kib},
                 f"Domain {args.domain} {what} set to {args.kib} KiB")

    return handler


# --- streams --------------------------------------------------------------------------------------

async def cmd_events(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Print domain lifecycle events as they happen (Ctrl-C stops)."""
    from aiovirt.events import domain_events

    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    count = 0
    async with domain_events(conn, interval=args.interval) as events:
        # on stderr, so scripts reading stdout see only events: from here on nothing is missed
        print(f"watching {args.connect or 'xen:///'} for domain events", file=sys.stderr,
              flush=True)
        iterator = aiter(events)
        while args.count is None or count < args.count:
            try:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                async with asyncio.timeout(remaining):
                    event = await anext(iterator)
            except (TimeoutError, StopAsyncIteration):
                break
            count += 1
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.timestamp))
            stamp += f".{int(event.timestamp * 1000) % 1000:03d}"
            dom = event.domain
            out.data(
                {"timestamp": event.timestamp, "kind": event.kind.value, "detail": event.detail,
                 **(_domain_dict(dom) if dom is not None else {})},
                f"{stamp}  {dom.name if dom else '-':<20} {event.kind.value:<15} {event.detail}",
            )


async def cmd_top(conn: Connection, args: argparse.Namespace, out: Output) -> None:
    """Show every domain's state, vCPUs, memory and CPU% live (--once: one snapshot)."""
    from aiovirt.cli.top import run_top

    await run_top(conn, args, as_json=out.json)



COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("list", "list domains", cmd_list,
                (_arg("--all", action="store_true", help="also show shut-off domains"),),
                example="aiovirsh -c sim:/// list --all"),
    CommandSpec("dominfo", "domain information", cmd_dominfo, (_DOMAIN,),
                example="aiovirsh dominfo vm1"),
    CommandSpec("domstate", "domain state", cmd_domstate, (_DOMAIN,),
                example="aiovirsh domstate vm1"),
    CommandSpec("domid", "convert a domain name or UUID to its id", cmd_domid, (_DOMAIN,),
                example="aiovirsh domid vm1"),
    CommandSpec("domname", "convert a domain id or UUID to its name", cmd_domname, (_DOMAIN,),
                example="aiovirsh domname 3"),
    CommandSpec("domuuid", "convert a domain name or id to its UUID", cmd_domuuid, (_DOMAIN,),
                example="aiovirsh domuuid vm1"),
    CommandSpec("dumpxml", "domain information in XML", cmd_dumpxml, (_DOMAIN,),
                example="aiovirsh dumpxml vm1 > vm1.xml"),
    CommandSpec("create", "create a domain from an XML file", cmd_create,
                (_arg("file", metavar="FILE", help="domain XML description"),),
                example="aiovirsh create vm1.xml", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("destroy", "destroy a domain at once",
                _action("destroy", "destroyed", lambda d: d.destroy()), (_DOMAIN,),
                example="aiovirsh destroy vm1", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("suspend", "suspend (pause) a domain",
                _action("suspend", "suspended", lambda d: d.suspend()), (_DOMAIN,),
                example="aiovirsh suspend vm1", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("resume", "resume a suspended domain",
                _action("resume", "resumed", lambda d: d.resume()), (_DOMAIN,),
                example="aiovirsh resume vm1", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("shutdown", "ask a domain to shut down",
                _action("shut down", "is being shutdown", lambda d: d.shutdown()), (_DOMAIN,),
                example="aiovirsh shutdown vm1", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("reboot", "ask a domain to reboot",
                _action("reboot", "is being rebooted", lambda d: d.reboot()), (_DOMAIN,),
                example="aiovirsh reboot vm1", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("save", "save a domain's state to a file", cmd_save,
                (_DOMAIN, _arg("file", metavar="FILE", help="where to write the state")),
                example="aiovirsh save vm1 vm1.chk", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("restore", "restore a domain from a saved state file", cmd_restore,
                (_arg("file", metavar="FILE", help="a file written by save"),),
                example="aiovirsh restore vm1.chk", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("setmem", "change a domain's current memory (balloon target)",
                _memory_action("memory", lambda d, k: d.set_memory(k)),
                (_DOMAIN, _arg("kib", metavar="KIB", type=int, help="memory in KiB")),
                example="aiovirsh setmem vm1 196608", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("setmaxmem", "change a domain's maximum memory",
                _memory_action("max memory", lambda d, k: d.set_max_memory(k)),
                (_DOMAIN, _arg("kib", metavar="KIB", type=int, help="memory in KiB")),
                example="aiovirsh setmaxmem vm1 524288", group=DOMAIN_MANAGEMENT, writes=True),
    CommandSpec("domblkstat", "get device block stats for a domain",
                _device_stats("block", "device", lambda d, dev: d.block_stats(dev)),
                (_DOMAIN, _arg("device", metavar="DEVICE",
                               help="the disk's target, as <target dev=...> names it")),
                example="aiovirsh domblkstat vm1 sda1"),
    CommandSpec("domifstat", "get network interface stats for a domain",
                _device_stats("interface", "interface", lambda d, dev: d.interface_stats(dev)),
                (_DOMAIN, _arg("device", metavar="INTERFACE",
                               help="the interface's backend name, vif<domid>.<n>")),
                example="aiovirsh domifstat vm1 vif1.0"),
    CommandSpec("exporter", "serve Prometheus metrics for one or more nodes", cmd_exporter, (
        _arg("--listen", "-l", metavar="HOST:PORT", default=":9177",
             help="where to serve /metrics (default :9177, every address)"),
        _arg("-c", "--connect", dest="nodes", metavar="[NAME=]URI", action="append",
             default=None, help="a node to export (repeatable; default: aiovirsh's -c)"),
        _arg("--readonly", dest="exporter_readonly", action="store_true",
             help="open read-only connections (no hypervisor: xend answers)"),
        _arg("--log-level", default="INFO", help="stderr log level (default INFO)"),
    ), group=HOST, example="aiovirsh exporter --listen :9177 -c web=xen:///"),
    CommandSpec("nodeinfo", "node information", cmd_nodeinfo, group=HOST,
                example="aiovirsh nodeinfo"),
    CommandSpec("version", "show versions", cmd_version, group=HOST,
                example="aiovirsh version"),
    CommandSpec("events", "print domain events as they happen", cmd_events, (
        _arg("--interval", type=float, default=1.0,
             help="how often to poll for pauses and memory changes (seconds, default 1)"),
        _arg("--count", type=int, default=None, help="stop after this many events"),
        _arg("--timeout", type=float, default=None, help="stop after this many seconds"),
    ), example="aiovirsh --json events --count 10"),
    CommandSpec("top", "live view of every domain's CPU, memory and state", cmd_top, (
        _arg("--interval", "-d", type=float, default=None,
             help="seconds between refreshes (default 1); with --once, between the two "
                  "samples its CPU%% and rates are measured over (default 0.5)"),
        _arg("--sort", "-s", default="cpu",
             choices=("id", "name", "state", "cpu", "mem", "vcpus", "time", "blk", "net"),
             help="sort key (default cpu); keys i n s c m v t b w change it live"),
        _arg("--reverse", action="store_true", help="reverse the sort order"),
        _arg("--once", action="store_true",
             help="print one snapshot and exit: two samples --interval apart (0.5 s)"),
        _arg("--iterations", "-n", type=int, default=None,
             help="stop after this many refreshes"),
    ), example="aiovirsh -c sim:///?domains=100 top --sort mem"),
)

# 0.0.6's names, still accepted.
ALIASES: dict[str, tuple[str, ...]] = {
    "dominfo": ("dinfo",),
    "domstate": ("dstate",),
    "domid": ("idof",),
    "domname": ("nameof",),
}


async def run_command(args: argparse.Namespace) -> int:
    """Open the connection named by ``args``, run the command, close; return the exit status."""
    spec: CommandSpec = args.spec
    out = Output(args.json)
    # The CLI reports errors itself, once, on one line: silence libvirt's stderr printer.
    aiovirt.set_error_handler(lambda _ctx, _err: None)
    opener = aiovirt.open_read_only if args.readonly else aiovirt.open
    try:
        conn = await opener(args.connect)
    except VirtError as err:
        uri = args.connect or os.environ.get("AIOVIRT_DEFAULT_URI") or "xen:///"
        hint = ""
        if err.code in _NO_NODE and uri.startswith("xen:"):
            hint = " (no Xen node found here? try: aiovirsh -c sim:/// ...)"
        raise CommandError(f"failed to connect to {uri}: {err}{hint}", err) from err
    try:
        await spec.handler(conn, args, out)
    except VirtError as err:
        raise CommandError(str(err), err) from err
    finally:
        with contextlib.suppress(VirtError):
            await conn.close()
    return 0
