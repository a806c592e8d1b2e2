"""aiovirsh against Xen's own C tools on the same simulated node, as whole processes.

One node of ``--guests`` (default 1,000) guests runs in its own process with ``--xen-tools``;
each command is run ``--runs`` times (after one warm-up) and its median wall time printed, with
the ratio to Xen's tool (below 1.0: ours is faster):

- ``aiovirsh top --once`` vs ``xentop -b -i 1`` (one frame of every domain's CPU and memory);
- ``aiovirsh list`` vs ``xl list``;
- the same two aiovirsh commands with ``hypervisor=xenctrl``, i.e. through the real libxenctrl
  under the same preloaded library Xen's tools use.

Every process starts from nothing (interpreter and imports included for ours): this is what a
user at a shell or a script calling the command waits for. Python's bytecode cache is on (in a
temporary ``PYTHONPYCACHEPREFIX``, filled by the warm-up) whatever ``PYTHONDONTWRITEBYTECODE``
says, as for an installed package. Printed per command: median wall time, and median CPU time of
the command's own process (user + system; the node's work is in neither), which a loaded
machine disturbs less than the wall time.

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

from _harness import REPO, short_dir

from tests.support.sim_process import start_sim_process, stop_process

XEN_BIN = "/usr/lib/xen-4.17/bin"


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Return the median wall and CPU time of ``runs`` runs of ``argv`` (after one warm-up)."""
    walls, cpus = [], []
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        for i in range(runs + 1):
            out.seek(0)
            out.truncate()
            err.seek(0)
            err.truncate()
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=err)
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: "
                                 f"{err.read().decode(errors='replace')[-400:]}")
            if i:
                walls.append(wall)
                cpus.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


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
            pairs = [
                ("aiovirsh top --once", [*aiovirsh, uri, "top", "--once"], ours_env,
                 "xentop -b -i 1", [f"{XEN_BIN}/xentop", "-b", "-i", "1"]),
                ("aiovirsh list", [*aiovirsh, uri, "list"], ours_env,
                 "xl list", [f"{XEN_BIN}/xl", "list"]),
                ("aiovirsh top --once (xenctrl)", [*aiovirsh, xenctrl_uri, "top", "--once"],
                 xenctrl_env, "xentop -b -i 1", [f"{XEN_BIN}/xentop", "-b", "-i", "1"]),
                ("aiovirsh list (xenctrl)", [*aiovirsh, xenctrl_uri, "list"], xenctrl_env,
                 "xl list", [f"{XEN_BIN}/xl", "list"]),
            ]
            print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.guests} guests "
                  f"(+ Domain-0); median of {args.runs} runs after one warm-up, whole processes")
            print(f"  {'ours':<30} {'wall':>7} {'CPU':>7}   {'Xen tool':<15} {'wall':>7} "
                  f"{'CPU':>7}   {'wall ours/Xen':>13} {'CPU ours/Xen':>12}")
            xen_times: dict[str, tuple[float, float]] = {}
            for label, argv, env, xen_label, xen_argv in pairs:
                wall, cpu = timed(argv, env, args.runs)
                if xen_label not in xen_times:
                    xen_times[xen_label] = timed(xen_argv, xen_env, args.runs)
                xwall, xcpu = xen_times[xen_label]
                print(f"  {label:<30} {wall * 1e3:5.0f}ms {cpu * 1e3:5.0f}ms   {xen_label:<15} "
                      f"{xwall * 1e3:5.0f}ms {xcpu * 1e3:5.0f}ms   {wall / xwall:13.2f} "
                      f"{cpu / max(xcpu, 1e-3):12.1f}")
        finally:
            stop_process(proc)


if __name__ == "__main__":
    main()
