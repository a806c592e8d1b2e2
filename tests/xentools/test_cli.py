"""``python -m aiovirt.sim --xen-tools``: its environment, and one clear line when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from aiovirt.sim import xenabi
from tests.support.sim_process import ROOT
from tests.xentools.conftest import XL, XenNode, require_xen_tools


def test_without_gcc_xen_tools_fails_with_one_line(short_dir: Path) -> None:
    env = {**os.environ, "CC": "/nonexistent/gcc"}
    proc = subprocess.run(
        [sys.executable, "-m", "aiovirt.sim", "--dir", str(short_dir), "--xen-tools"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "gcc is not installed" in lines[0], proc.stderr


def test_without_the_headers_the_missing_package_is_named(monkeypatch: pytest.MonkeyPatch,
                                                          short_dir: Path) -> None:
    monkeypatch.setattr(xenabi, "HEADERS", short_dir / "domctl.h")
    if xenabi._compiler() is None:
        assert "gcc" in (xenabi.missing_requirement() or "")
    else:
        assert "install libxen-dev" in (xenabi.missing_requirement() or "")
    with pytest.raises(xenabi.XenToolsUnavailable, match=r"libxen-dev|gcc"):
        xenabi.build_library(short_dir)


@pytest.mark.interop
def test_the_library_builds_once_into_the_cache(short_dir: Path) -> None:
    require_xen_tools()
    first = xenabi.build_library(short_dir)
    stamp = first.stat().st_mtime_ns
    assert xenabi.build_library(short_dir) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in short_dir.iterdir()] == [first.name]  # no temporary left behind


@pytest.mark.interop
def test_the_ready_line_gives_the_tools_environment(start_node: Callable[..., XenNode]) -> None:
    node = start_node()
    env = node.ready["xen_tools_env"]
    assert {"LD_PRELOAD", "XENSTORED_PATH"} <= set(env)
    assert env["XENSTORED_PATH"] == node.ready["xenstore"]
    assert Path(env["LD_PRELOAD"]).is_file()
    proc = subprocess.run([str(XL), "list", "no-such-domain"], env=node.env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "no-such-domain" in proc.stderr
