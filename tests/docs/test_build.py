"""The documentation site builds with Sphinx, warnings as errors, as CI builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    pages = {p.name for p in out.glob("*.html")}
    assert {"index.html", "getting-started.html", "api.html", "errors.html", "events.html",
            "uri.html", "xenstore.html", "simulator.html", "cli.html"} <= pages
    api = (out / "api.html").read_text()
    # the reference is generated from the docstrings, not written by hand
    for name in ("lookup_by_name", "domain_events", "XenStoreClient", "VirtError", "SimNode"):
        assert name in api, f"{name} missing from the API reference"
