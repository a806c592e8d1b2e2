"""The names ``aiovirt`` exports, imported on first use: each one is there, and is the real one."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import aiovirt

ROOT = Path(__file__).resolve().parents[1]

HOMES = {
    "open": "aiovirt.connection", "open_read_only": "aiovirt.connection",
    "Connection": "aiovirt.connection", "Domain": "aiovirt.connection",
    "VirtError": "aiovirt.errors", "ErrorNumber": "aiovirt.errors",
    "set_error_handler": "aiovirt.errors", "DomainEvent": "aiovirt.events",
    "DomainInfo": "aiovirt.info", "BlockStats": "aiovirt.protocol.devstats",
    "DomainState": "aiovirt.protocol.states",
}


@pytest.mark.parametrize("name", sorted(HOMES))
def test_a_public_name_is_the_object_of_its_module(name: str) -> None:
    assert getattr(aiovirt, name) is getattr(importlib.import_module(HOMES[name]), name)


def test_every_exported_name_resolves_and_star_import_binds_them() -> None:
    namespace: dict[str, Any] = {}
    exec("from aiovirt import *", namespace)
    assert set(aiovirt.__all__) <= set(namespace)
    assert set(aiovirt.__all__) <= set(dir(aiovirt))
    assert namespace["xenstore"] is importlib.import_module("aiovirt.xenstore")
    assert namespace["get_version"]() == aiovirt.get_version()


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        aiovirt.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(aiovirt, "open_readonly")


def test_importing_aiovirt_for_its_errors_does_not_load_the_client() -> None:
    code = ("import sys, aiovirt.errors, aiovirt; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('aiovirt'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    assert "aiovirt.errors" in out
    assert not {"aiovirt.connection", "aiovirt.backends.xend", "aiovirt.routing.router"} & set(out)
