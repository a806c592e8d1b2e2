"""aiovirsh against Xen's own C tools on the same simulated node, as whole processes.

One node of ``--guests`` (default 1,000) guests runs in its own process with ``--xen-tools``;
each command is run ``--runs`` times (after one warm-up) and its median wall time printed, with
the ratio to Xen's tool (below 1.0: ours is faster). The pairs do the same work and wait the
same way:

- ``aiovirsh top --once -d 1`` vs ``xentop -b -i 2 -d 1``: one frame of every domain with real
  CPU rates, from two samples 1 s apart (xentop's delay is whole seconds, and its first frame
  prints CPU(%) 0.0 for lack of an earlier sample, so its first frame with rates is the second
  of ``-i 2 -d 1``);
- ``aiovirsh top --once`` (its default: samples 0.5 s apart) vs the same xentop run;
- ``aiovirsh list`` vs ``xl list``;
- the same with ``hypervisor=xenctrl``, i.e. through the real libxenctrl under the same
  preloaded library Xen's tools use.

The column *waits* is the gap each command puts between its two samples by design: ours times
it from the start of its first read (so that read is inside the gap, and the rates are over
exactly that span), xentop sleeps that long after printing its first frame. *beyond* is the
wall time less that gap: start-up, the reads and the printing that the gap does not cover.
Every process starts from nothing (interpreter and imports included for ours): this is what a
user at a shell or a script calling the command waits for. Python's bytecode cache is on (in a
temporary ``PYTHONPYCACHEPREFIX``, filled by the warm-up) whatever ``PYTHONDONTWRITEBYTECODE``
says, as for an installed package. Printed per command: median wall time with its range, and
median CPU time of the command's own process (user + system; the node's work is in neither),
which a loaded machine disturbs less than the wall time. For reference, the floor of any Python
command here (``python -c pass``, site and ``PYTHONPATH`` as ours run) and ``xentop -b -i 1``
(one frame, no rates, no wait) are measured too; the load average is printed before and after.

Usage: ``python benchmarks/xen_tools.py [--guests 1000] [--runs 7]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

from _harness import REPO, short_dir

from tests.support.sim_process import start_sim_process, stop_process

XEN_BIN = "/usr/lib/xen-4.17/bin"


class Timing(NamedTuple):
    """Medians and ranges of repeated runs of one command (seconds)."""

    wall: float
    wall_min: float
    wall_max: float
    cpu: float


class Command(NamedTuple):
    """A command to time: its label, argv, environment and the seconds it sleeps by design."""

    label: str
    argv: list[str]
    env: dict[str, str]
    waits: float


def timed(command: Command, runs: int) -> Timing:
    """Return the median wall and CPU time of ``runs`` runs of ``command`` (after a warm-up)."""
    walls, cpus = [], []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        for i in range(runs + 1):
            out.seek(0)
            out.truncate()
            err.seek(0)
            err.truncate()
            t0 = time.perf_counter()
            proc = subprocess.Popen(command.argv, env=command.env, cwd=REPO, stdout=out,
                                    stderr=err)
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"{' '.join(command.argv)} exited {proc.returncode}: "
                                 f"{err.read().decode(errors='replace')[-400:]}")
            if i:
                walls.append(wall)
                cpus.append(usage.ru_utime + usage.ru_stime)
    return Timing(statistics.median(walls), min(walls), max(walls), statistics.median(cpus))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:5.0f}ms"


def _line(command: Command, t: Timing) -> str:
    spread = f"({t.wall_min * 1e3:.0f}-{t.wall_max * 1e3:.0f})"
    return (f"  {command.label:<27} {command.waits:4.1f}s {_ms(t.wall)} {spread:<12}"
            f"{_ms(t.wall - command.waits)} {_ms(t.cpu)}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    """Parse the command line, run the node and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from aiovirt.sim.xenabi import missing_requirement

    missing = missing_requirement()
    if missing or not os.path.exists(f"{XEN_BIN}/xl"):
        raise SystemExit(f"cannot run Xen's tools here: {missing or 'xen-utils-4.17 missing'}")
    with short_dir("avt") as directory, tempfile.TemporaryDirectory() as pycache:
        proc, ready = start_sim_process(directory, "--domains", str(args.guests), "--seed", "1",
                                        "--xen-tools", "--log-level", "WARNING")
        try:
            ours_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": pycache}
            ours_env.pop("PYTHONDONTWRITEBYTECODE", None)
            xen_env = {**os.environ, **ready["xen_tools_env"]}
            xenctrl_env = {**xen_env, **ours_env, **ready["xen_tools_env"]}
            uri = ready["uri"]
            xenctrl_uri = uri.replace(f"hypervisor=sim:{ready['privcmd']}", "hypervisor=xenctrl")
            aiovirsh = [sys.executable, "-m", "aiovirt", "-c"]
            xentop = Command("xentop -b -i 2 -d 1",
                             [f"{XEN_BIN}/xentop", "-b", "-i", "2", "-d", "1"], xen_env, 1.0)
            xl_list = Command("xl list", [f"{XEN_BIN}/xl", "list"], xen_env, 0.0)
            pairs = [
                (Command("aiovirsh top --once -d 1", [*aiovirsh, uri, "top", "--once", "-d", "1"],
                         ours_env, 1.0), xentop),
                (Command("aiovirsh top --once", [*aiovirsh, uri, "top", "--once"], ours_env,
                         0.5), xentop),
                (Command("aiovirsh list", [*aiovirsh, uri, "list"], ours_env, 0.0), xl_list),
                (Command("top --once -d 1 (xenctrl)",
                         [*aiovirsh, xenctrl_uri, "top", "--once", "-d", "1"], xenctrl_env, 1.0),
                 xentop),
                (Command("list (xenctrl)", [*aiovirsh, xenctrl_uri, "list"], xenctrl_env, 0.0),
                 xl_list),
            ]
            references = [
                Command("python -c pass", [sys.executable, "-c", "pass"], ours_env, 0.0),
                Command("xentop -b -i 1", [f"{XEN_BIN}/xentop", "-b", "-i", "1"], xen_env, 0.0),
            ]
            print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
                  f"{_load()}; {args.guests} guests (+ Domain-0); median of {args.runs} runs "
                  f"after one warm-up, whole processes")
            print(f"  {'command':<27} {'waits':>5} {'wall':>7} {'(range)':<12}{'beyond':>7} "
                  f"{'CPU':>7}")
            xen_times: dict[str, Timing] = {}
            for ours, xen in pairs:
                t = timed(ours, args.runs)
                if xen.label not in xen_times:
                    xen_times[xen.label] = timed(xen, args.runs)
                x = xen_times[xen.label]
                beyond = (t.wall - ours.waits) / max(x.wall - xen.waits, 1e-3)
                print(_line(ours, t))
                print(_line(xen, x))
                print(f"    ours/Xen: wall {t.wall / x.wall:.2f}, beyond the wait {beyond:.2f}, "
                      f"CPU {t.cpu / max(x.cpu, 1e-3):.2f}")
            print("  reference:")
            for command in references:
                print(_line(command, timed(command, args.runs)))
            print(f"load average after: {_load()}")
        finally:
            stop_process(proc)


if __name__ == "__main__":
    main()
