"""Run Debian's real xenstore daemons (Xen 4.17: C xenstored, OCaml oxenstored) here, without a
hypervisor, as test peers.

The daemon is started with an ``LD_PRELOAD`` stub (``xsstub.c`` next to this file) that fakes
the few Xen library calls and ``/proc/xen/xsd_*`` files it needs. The stub is compiled with gcc
into a cache directory keyed by the source's hash (``$AIOVIRT_TEST_CACHE`` or
``~/.cache/aiovirt-test``), never into the repository.

Use from a test::

    from tests.support.real_xenstored import real_xenstored, require_real_xenstored

    def test_something(tmp_path):
        require_real_xenstored()          # skips (or fails under AIOVIRT_REQUIRE_INTEROP=1)
        with real_xenstored(tmp_path) as socket_path:
            ...                           # XENSTORED_PATH=socket_path for the CLI tools

:func:`real_oxenstored` does the same for the OCaml daemon (XenServer's and XCP-ng's). It
always serves ``/var/run/xenstored/socket``, so it runs in its own mount namespace
(``unshare -m``, root only) with ``directory`` bind-mounted over ``/var/run/xenstored``; its
socket is then ``directory/socket`` for everyone outside, and several can run at once.
tests/xenstore/conftest.py's ``daemon`` fixture runs both daemons through these two.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.support.interop import require

XENSTORED = Path(os.environ.get("AIOVIRT_REAL_XENSTORED", "/usr/lib/xen-4.17/bin/xenstored"))
OXENSTORED = Path(os.environ.get("AIOVIRT_REAL_OXENSTORED",
                                 "/usr/lib/xen-4.17/bin/oxenstored"))
OXENSTORED_CONF = Path("/etc/xen/oxenstored.conf")
STUB_SOURCE = Path(__file__).with_name("xsstub.c")
XEN_HEADERS = ("xenctrl.h", "xenevtchn.h", "xengnttab.h")
START_TIMEOUT = 10.0
# Unix socket paths are limited to 108 bytes including the NUL.
_SOCKET_PATH_MAX = 100

_stub_cache: dict[Path, Path] = {}
_build_errors: dict[Path, str] = {}


def cache_dir() -> Path:
    """Return the directory that holds compiled test helpers (created on demand)."""
    base = os.environ.get("AIOVIRT_TEST_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "aiovirt-test"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _include_dir_has_headers() -> bool:
    return all(Path("/usr/include", h).is_file() for h in XEN_HEADERS)


def build_stub(directory: Path | None = None) -> Path:
    """Compile the stub if needed and return the path of the shared object.

    The file name carries the hash of ``xsstub.c``, so an edited stub is rebuilt. Raises
    ``RuntimeError`` with gcc's output when compiling fails.
    """
    source = STUB_SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target_dir = directory if directory is not None else cache_dir()
    target = target_dir / f"xsstub-{digest}.so"
    if target.is_file():
        return target
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("gcc is not installed (needed to build the xenstored stub)")
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".xsstub-", suffix=".so", dir=target_dir)
    os.close(fd)
    try:
        proc = subprocess.run(
            [gcc, "-shared", "-fPIC", "-O2", "-o", tmp, str(STUB_SOURCE), "-ldl"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gcc failed to build {STUB_SOURCE.name}:\n{proc.stderr}")
        os.replace(tmp, target)  # atomic: parallel sessions never see half a file
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


def real_xenstored_available() -> str | None:
    """Return why the real C xenstored cannot run here, or None when it can."""
    if not XENSTORED.is_file() or not os.access(XENSTORED, os.X_OK):
        return f"{XENSTORED} is not installed (Debian package xen-utils-4.17)"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "gcc is not installed (needed to build the xenstored LD_PRELOAD stub)"
    if not _include_dir_has_headers():
        return "Xen headers are not installed (Debian package libxen-dev)"
    key = cache_dir()
    if key in _build_errors:
        return _build_errors[key]
    if key not in _stub_cache:
        try:
            _stub_cache[key] = build_stub(key)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            _build_errors[key] = f"cannot build the xenstored stub: {exc}"
            return _build_errors[key]
    return None


_unshare_error: list[str | None] = []


def _unshare_works() -> str | None:
    """Return why a private mount namespace cannot be made here, or None (checked once)."""
    if not _unshare_error:
        unshare = shutil.which("unshare")
        if unshare is None:
            _unshare_error.append("unshare is not installed (Debian package util-linux)")
        else:
            try:
                proc = subprocess.run([unshare, "-m", "true"], capture_output=True, text=True,
                                      timeout=30, check=False)
            except (OSError, subprocess.SubprocessError) as exc:
                _unshare_error.append(f"unshare -m failed: {exc}")
            else:
                _unshare_error.append(None if proc.returncode == 0 else
                                      f"unshare -m failed (root needed): {proc.stderr.strip()}")
    return _unshare_error[0]


def real_oxenstored_available() -> str | None:
    """Return why oxenstored cannot run here, or None when it can."""
    if not OXENSTORED.is_file() or not os.access(OXENSTORED, os.X_OK):
        return f"{OXENSTORED} is not installed (Debian package xen-utils-4.17)"
    if not OXENSTORED_CONF.is_file():
        return f"{OXENSTORED_CONF} is missing (Debian package xen-utils-4.17)"
    return real_xenstored_available() or _unshare_works()


def require_real_xenstored() -> None:
    """Skip the calling test (fail under AIOVIRT_REQUIRE_INTEROP=1) unless C xenstored can run."""
    reason = real_xenstored_available()
    require(reason is None, reason or "")


def _wait_for_socket(path: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"xenstored exited with status {proc.returncode} before listening on {path}:\n"
                + log.read_text(errors="replace")[-2000:]
            )
        if os.path.exists(path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(path)
                except OSError:
                    pass
                else:
                    return
        if time.monotonic() > deadline:
            raise RuntimeError(f"xenstored did not listen on {path} within {START_TIMEOUT} s")
        time.sleep(0.005)  # process start-up: there is no event to wait on


def _built_stub(missing: str | None) -> Path:
    """Return the built stub; raise RuntimeError when ``missing`` says why the daemon cannot run."""
    if missing is not None:
        raise RuntimeError(missing)
    return _stub_cache[cache_dir()]


@contextlib.contextmanager
def _listening(args: list[str], env: dict[str, str], cwd: Path, sock: str,
               log: Path) -> Iterator[None]:
    """Run the daemon ``args`` (its output in ``log``) until it listens on ``sock``, then for
    the block; it is killed with SIGKILL at exit (SIGTERM is slow), or if it never listens."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=str(cwd))
    try:
        _wait_for_socket(sock, proc, log)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def real_xenstored(directory: str | os.PathLike[str], *, trace: bool = True,
                   domains: Iterable[int] | None = None) -> Iterator[str]:
    """Start the real C xenstored serving ``directory/socket``; yield the socket path.

    Its ``-T`` trace (every IN/OUT frame) goes to ``directory/trace`` and its output to
    ``directory/xenstored.log``. The daemon is killed with SIGKILL at exit (SIGTERM is slow).
    When ``directory`` is too long for a unix socket path, a short directory under /tmp is
    used for the socket and removed afterwards.
    """
    stub = _built_stub(real_xenstored_available())
    workdir = Path(directory)
    workdir.mkdir(parents=True, exist_ok=True)
    short_dir: str | None = None
    rundir = workdir
    if len(str(workdir / "socket").encode()) > _SOCKET_PATH_MAX:
        short_dir = tempfile.mkdtemp(prefix="av")
        rundir = Path(short_dir)
    sock = str(rundir / "socket")
    log = workdir / "xenstored.log"
    env = dict(os.environ)
    env.update(XENSTORED_RUNDIR=str(rundir), XENSTORED_PATH=sock, LD_PRELOAD=str(stub))
    if domains is not None:  # the hypervisor has only these (default: every domain exists)
        env["XSSTUB_DOMAINS"] = ",".join(str(d) for d in domains)
    args = [str(XENSTORED), "-N"]
    if trace:
        args += ["-T", str(workdir / "trace")]
    try:
        with _listening(args, env, workdir, sock, log):
            yield sock
    finally:
        if short_dir is not None:
            shutil.rmtree(short_dir, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sock)


def _oxenstored_config(workdir: Path) -> Path:
    """Write oxenstored's configuration: Debian's, with every file it writes under ``workdir``."""
    kva = workdir / "xsd_kva"
    kva.write_bytes(bytes(4096))
    port = workdir / "xsd_port"
    port.write_text("1")  # no newline: the daemon's int_of_string refuses one
    overrides = {
        "pid-file": workdir / "oxenstored.pid",
        "xenstored-kva": kva,
        "xenstored-port": port,
        "xenstored-log-file": workdir / "oxenstored.log",
        "access-log-file": workdir / "oxenstored-access.log",
    }
    lines = []
    for line in OXENSTORED_CONF.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key not in overrides:
            lines.append(line)
    lines += [f"{key} = {value}" for key, value in overrides.items()]
    conf = workdir / "oxenstored.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


@contextlib.contextmanager
def real_oxenstored(directory: str | os.PathLike[str]) -> Iterator[str]:
    """Start oxenstored serving ``directory/socket`` (see the module's doc); yield that path.

    Its log and configuration are kept in ``directory``; it is killed with SIGKILL at exit.
    ``directory`` must be short enough for a unix socket path.
    """
    stub = _built_stub(real_oxenstored_available())
    rundir = Path(directory)
    rundir.mkdir(parents=True, exist_ok=True)
    sock = str(rundir / "socket")
    if len(sock.encode()) > _SOCKET_PATH_MAX:
        raise RuntimeError(f"{sock} is too long for a unix socket path")
    workdir = rundir / "oxenstored"
    workdir.mkdir(exist_ok=True)
    conf = _oxenstored_config(workdir)
    env = dict(os.environ)
    env.update(LD_PRELOAD=str(stub), XSSTUB_IGNORE_SETRLIMIT="1")
    script = ('mount --make-rprivate / && mkdir -p /var/run/xenstored && '
              'mount --bind "$1" /var/run/xenstored && exec "$2" --no-fork --config-file "$3"')
    args = [shutil.which("unshare") or "unshare", "-m", "sh", "-c", script, "sh",
            str(rundir), str(OXENSTORED), str(conf)]
    try:
        with _listening(args, env, workdir, sock, workdir / "stdout.log"):
            yield sock
    finally:
        for leftover in (sock, str(rundir / "db")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)

