"""Fixtures of the API tests: short socket directories, simulated nodes, and connection routes.

A *route* is a set of backends a connection may use; each names the URI parameters that turn
the others off, so one test body checks a call through every path the Connection can take.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import aiovirt
from aiovirt.sim.node import SimNode
from tests.support.xenabi import PRELOADED

ROUTES: dict[str, dict[str, str]] = {
    "all": {},
    "xend-only": {"xenstore": "none", "hypervisor": "none"},
    "xenstore-only": {"xend": "none", "hypervisor": "none"},
    "no-hypervisor": {"hypervisor": "none"},
    "no-xend": {"xend": "none"},
    "no-xenstore": {"xenstore": "none"},
}
if PRELOADED:  # the real libxenctrl on the sim (tests/xentools runs this area so)
    ROUTES["xenctrl"] = {"xend": "none", "hypervisor": "xenctrl"}


def uri_for(node: SimNode, **overrides: str) -> str:
    """Return the URI of ``node`` with some endpoints replaced (``"none"`` turns one off)."""
    params = {
        "xend": "unix:" + node.xend_unix_path,
        "xenstore": node.xenstore_path,
        "hypervisor": "sim:" + node.privcmd_path,
    }
    params.update(overrides)
    return "xen:///?" + urlencode(params, safe=":/")


@pytest.fixture
def short_dir(short_dir: Path) -> str:
    """Return the suite's short socket directory as a string (this area's tests join with +)."""
    return str(short_dir)


@pytest.fixture
async def node(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SimNode]:
    """A simulated node with three guests, served from this process."""
    async with SimNode(short_dir, domains=3, seed=7, shutdown_delay=0.05) as sim:
        if PRELOADED:
            monkeypatch.setenv("AIOVIRT_SIM_PRIVCMD", sim.privcmd_path)
        yield sim


@pytest.fixture(params=list(ROUTES))
def route(request: Any) -> str:
    """The name of a backend route (parametrized over all of them)."""
    name: str = request.param
    return name


@pytest.fixture
async def conn(node: SimNode, route: str) -> AsyncIterator[aiovirt.Connection]:
    """A read-write connection to ``node`` through ``route``."""
    async with aiovirt.open(uri_for(node, **ROUTES[route])) as connection:
        yield connection


def guests(node: SimNode) -> list[Any]:
    """Return the node's domains other than Domain-0."""
    return [d for d in node.domains if d.domid != 0]
