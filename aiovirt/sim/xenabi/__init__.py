"""Xen's hypercall ABI for a simulated node: run Debian's ``xl``, ``xentop`` and libxenctrl on it.

``xenabi.c`` (shipped as source beside this module) is a small library for ``LD_PRELOAD`` into
a real Xen tool. It answers what Xen 4.17's libraries do on ``/dev/xen/privcmd`` (the open-time
probes, ``IOCTL_PRIVCMD_HYPERCALL``) by decoding the real structures (``struct xen_sysctl``,
``struct xen_domctl``, ``xen_version``, multicall) with the installed ``libxen-dev`` headers,
and forwards each call to the node's hypervisor endpoint (``DIR/privcmd``,
:mod:`aiovirt.protocol.privcmd`), so the node's one model answers the tools as it answers
xend, xenstore and aiovirt's own ``sim`` driver.

:func:`build_library` compiles it with gcc into a cache directory on first use (keyed by the
source and the compiler, so an upgrade rebuilds it); :func:`tools_environment` returns the
environment under which a tool reaches a node; :func:`missing_requirement` says, in one line,
what is missing to do either.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from aiovirt.sim.devstats import XEN_ROOT

__all__ = [
    "HEADERS",
    "LIBXENCTRL",
    "SOURCE",
    "XenToolsUnavailable",
    "build_library",
    "cache_dir",
    "missing_requirement",
    "prepare_root",
    "tools_environment",
]

SOURCE = Path(__file__).with_name("xenabi.c")
# The headers the library is compiled against (libxen-dev) and the control library whose ABI
# they describe (pulled in by libxen-dev on Debian).
HEADERS = Path("/usr/include/xen/domctl.h")
LIBXENCTRL = "libxenctrl.so.4.17"
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib")
# Paths the tools use on a dom0, kept private to each node (see xenabi.c).
ROOT_DIRS = ("var/run/xen", "run/xen", "var/lib/xen", "var/log/xen",
             "sys/bus/xen-backend/devices")


class XenToolsUnavailable(RuntimeError):
    """gcc or the Xen development packages are missing, or the library did not compile."""


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC") or "gcc")


def _has_libxenctrl() -> bool:
    return any(Path(d, LIBXENCTRL).exists() for d in _LIB_DIRS)


def missing_requirement() -> str | None:
    """Return one line naming what is missing to build the library and use it, or ``None``."""
    if _compiler() is None:
        return "gcc is not installed (needed to build the Xen ABI library; apt-get install gcc)"
    if not HEADERS.exists():
        return (f"{HEADERS} is missing: install libxen-dev (the Xen 4.17 headers the Xen ABI "
                "library is built against)")
    if not _has_libxenctrl():
        return f"{LIBXENCTRL} is missing: install libxen-dev (Xen 4.17's control libraries)"
    return None


def cache_dir() -> Path:
    """Return where built libraries are kept: ``$AIOVIRT_CACHE_DIR``, else the user's cache."""
    env = os.environ.get("AIOVIRT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aiovirt"


def _compiler_identity(cc: str) -> bytes:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return cc.encode()
    return cc.encode() + out.stdout


def build_library(directory: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of the compiled library, compiling it first if needed.

    The file is named after a hash of the source, the headers and the compiler, so a changed
    source or toolchain gets a new build; it is written under a temporary name and renamed, so
    concurrent builders never load a half-written file. Raises :class:`XenToolsUnavailable`
    with one line when a requirement is missing or gcc fails (its first error included).
    """
    missing = missing_requirement()
    if missing:
        raise XenToolsUnavailable(missing)
    cc = _compiler()
    assert cc is not None
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + HEADERS.read_bytes() + _compiler_identity(cc)).hexdigest()
    out_dir = Path(directory) if directory is not None else cache_dir()
    target = out_dir / f"xenabi-{digest[:16]}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".xenabi-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, "-O2", "-Wall", "-fPIC", "-shared", "-o", tmp, str(SOURCE), "-ldl",
             "-lpthread"],
            capture_output=True, text=True, check=False, timeout=300,
        )
        if proc.returncode != 0:
            first = next((line for line in proc.stderr.splitlines() if "error" in line),
                         proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
            raise XenToolsUnavailable(f"gcc could not build {SOURCE.name}: {first}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def prepare_root(directory: str | os.PathLike[str]) -> Path:
    """Create the node's private root for the tools' paths under ``directory``; return it."""
    root = Path(directory).absolute() / XEN_ROOT  # where the device statistics are too
    for sub in ROOT_DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def tools_environment(library: str | os.PathLike[str], *, privcmd: str, xenstore: str,
                      root: str | os.PathLike[str],
                      interface_version: int | None = None) -> dict[str, str]:
    """Return the environment variables under which Xen's tools reach one node.

    ``privcmd`` is the node's hypervisor endpoint, ``xenstore`` its read-write xenstore socket,
    ``root`` its private root (:func:`prepare_root`). ``interface_version`` makes the simulated
    hypervisor speak another sysctl/domctl interface version, as a Xen of another release would.
    """
    env = {
        "LD_PRELOAD": os.fspath(library),
        "XENSTORED_PATH": xenstore,
        "AIOVIRT_SIM_PRIVCMD": privcmd,
        "AIOVIRT_SIM_XEN_ROOT": os.fspath(root),
    }
    if interface_version is not None:
        env["AIOVIRT_SIM_XEN_INTERFACE"] = f"{interface_version:#x}"
    return env
