"""aiovirsh against Xen's own C tools on the same simulated node, as whole processes.

One node of ``--guests`` (default 1,000) guests runs in its own process with ``--xen-tools``;
each command is run ``--runs`` times (after one warm-up) and its median wall time printed, with
the ratio to Xen's tool (below 1.0: ours is faster):

- ``aiovirsh top --once`` vs ``xentop -b -i 1`` (one frame of every domain's CPU and memory);
- ``aiovirsh list`` vs ``xl list``;
- the same two aiovirsh commands with ``hypervisor=xenctrl``, i.e. through the real libxenctrl
  under the same preloaded library Xen's tools use.

Every process starts from nothing (interpreter and imports included for ours): this is what a
user at a shell or a script calling the command waits for.

Usage: ``python benchmarks/xen_tools.py [--guests 1000] [--runs 7]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _harness import REPO, short_dir

from tests.support.sim_process import start_sim_process, stop_process

XEN_BIN = "/usr/lib/xen-4.17/bin"


def timed(argv: list[str], env: dict[str, str], runs: int) -> float:
    """Return the median wall time of ``runs`` runs of ``argv`` (after one warm-up)."""
    walls = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True,
                              timeout=300, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-400:]}")
        if i:
            walls.append(wall)
    return statistics.median(walls)


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
    with short_dir("avt") as directory:
        proc, ready = start_sim_process(directory, "--domains", str(args.guests), "--seed", "1",
                                        "--xen-tools", "--log-level", "WARNING")
        try:
            ours_env = {**os.environ, "PYTHONPATH": str(REPO)}
            xen_env = {**os.environ, **ready["xen_tools_env"]}
            xenctrl_env = {**xen_env, "PYTHONPATH": str(REPO)}
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
            print(f"  {'ours':<32} {'wall':>8}   {'Xen tool':<16} {'wall':>8}  {'ours/Xen':>8}")
            xen_times: dict[str, float] = {}
            for label, argv, env, xen_label, xen_argv in pairs:
                ours = timed(argv, env, args.runs)
                if xen_label not in xen_times:
                    xen_times[xen_label] = timed(xen_argv, xen_env, args.runs)
                theirs = xen_times[xen_label]
                print(f"  {label:<32} {ours * 1e3:6.0f}ms   {xen_label:<16} "
                      f"{theirs * 1e3:6.0f}ms  {ours / theirs:8.2f}")
        finally:
            stop_process(proc)


if __name__ == "__main__":
    main()
