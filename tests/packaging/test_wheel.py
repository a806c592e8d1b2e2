"""The package as a user meets it: built into a wheel and an sdist, installed with no ``-e``.

The wheel is installed into a fresh virtual environment outside the checkout, so nothing of the
source tree is on the path: what runs there is only what the wheel carries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiovirt._version import __version__, get_version

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = ["basic", "error", "lookup_uuid", "create"]


def _run(cmd: list[str], *, cwd: Path, timeout: float = 300,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _package_data() -> set[str]:
    """Every file of the package that is not Python source, as the wheel must name it."""
    tracked = subprocess.run(["git", "ls-files", "aiovirt"], capture_output=True, text=True,
                             cwd=REPO, check=True).stdout.split()
    return {name for name in tracked if not name.endswith(".py")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out, timeout=600)
    yield out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv (no system site-packages) with the wheel and its ``cli`` extra installed."""
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    python = home / "bin" / "python"
    (wheel,) = dist.glob("*.whl")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([str(python), "-m", "pip", "install", "-q", f"{wheel}[cli]"], cwd=home, env=env,
         timeout=600)
    yield home


def _venv_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PATH"] = f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["AIOVIRT_PAUSE_SECONDS"] = "0.3"
    return env


def test_wheel_and_sdist_pass_twine_check(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    assert any(f.endswith(".whl") for f in files) and any(f.endswith(".tar.gz") for f in files)
    _run([sys.executable, "-m", "twine", "check", "--strict", *files], cwd=dist)


def test_wheel_carries_package_data_licence_and_metadata(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"aiovirt-{__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
    missing = _package_data() - names
    assert not missing, f"package data left out of the wheel: {sorted(missing)}"
    assert f"{info}/licenses/LICENSE" in names
    assert f"Version: {__version__}\n" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: Documentation" in metadata and "Project-URL: Source" in metadata
    assert "License-Expression: LGPL-2.1-or-later" in metadata


def test_sdist_carries_the_sources_a_packager_needs(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    top = f"aiovirt-{__version__}"
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"):
        assert f"{top}/{name}" in names, f"{name} missing from the sdist"
    missing = {f"{top}/{n}" for n in _package_data()} - names
    assert not missing, f"package data left out of the sdist: {sorted(missing)}"


def test_installed_versions_agree(installed: Path, tmp_path: Path) -> None:
    python = str(installed / "bin" / "python")
    probe = ("import importlib.metadata as m, aiovirt, json;"
             "print(json.dumps([m.version('aiovirt'), aiovirt.__version__,"
             " aiovirt.get_version(), aiovirt.__file__]))")
    meta, dunder, encoded, where = json.loads(
        _run([python, "-c", probe], cwd=tmp_path, env=_venv_env(installed)).stdout)
    assert meta == dunder == __version__
    assert encoded == get_version()
    assert str(installed) in where, f"imported from {where}, not from the installed wheel"
    cli = _run([str(installed / "bin" / "aiovirsh"), "--version"], cwd=tmp_path,
               env=_venv_env(installed))
    assert cli.stdout.strip() == f"aiovirsh {__version__}"


def test_installed_cli_lists_the_embedded_node(installed: Path, tmp_path: Path) -> None:
    proc = _run([str(installed / "bin" / "aiovirsh"), "-c", "sim:///?domains=3", "list"],
                cwd=tmp_path, env=_venv_env(installed), timeout=120)
    lines = proc.stdout.splitlines()
    assert any("Domain-0" in line for line in lines), proc.stdout
    assert sum(1 for line in lines if line.split()[1:2] in (["vm1"], ["vm2"], ["vm3"])) == 3, \
        proc.stdout


def test_installed_sim_serves_and_stops_on_sigterm(installed: Path, tmp_path: Path) -> None:
    node_dir = tmp_path / "node"
    proc = subprocess.Popen(
        [str(installed / "bin" / "python"), "-m", "aiovirt.sim", "--dir", str(node_dir),
         "--domains", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=_venv_env(installed))
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        listing = _run([str(installed / "bin" / "aiovirsh"), "-c", ready["uri"], "list"],
                       cwd=tmp_path, env=_venv_env(installed), timeout=60)
        assert "vm2" in listing.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("name", EXAMPLES)
def test_installed_examples_run(installed: Path, tmp_path: Path, name: str) -> None:
    script = tmp_path / f"{name}.py"
    script.write_text((REPO / "examples" / f"{name}.py").read_text())
    proc = _run([str(installed / "bin" / "python"), str(script)], cwd=tmp_path,
                env=_venv_env(installed), timeout=120)
    assert proc.stdout.rstrip().endswith("OK"), proc.stdout + proc.stderr
