"""aiovirsh through xend alone, against a node whose xend serves one connection at a time.

``python -m aiovirt.sim`` serves xend 3.0.3's way by default: a connection kept alive holds every
other client back. ``list`` and ``dominfo`` issue their requests concurrently; ``dumpxml`` one.
All three must answer at once, with no URI tuning.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.conftest import SimProcess, aiovirsh, start_sim, stop_sim


@pytest.fixture(scope="module")
def node() -> Iterator[SimProcess]:
    """A node of four guests (xend 3.0.3, serving serially)."""
    sim: SimProcess = start_sim(4)
    try:
        yield sim
    finally:
        stop_sim(sim)


@pytest.fixture
def xend_uri(node: SimProcess) -> str:
    """The node's xend-only URI."""
    return f"xen:///?xend=unix:{node.endpoints['xend_unix']}&xenstore=none&hypervisor=none"


def test_list_dominfo_and_dumpxml_through_a_serial_xend(xend_uri: str) -> None:
    listed = aiovirsh("list", uri=xend_uri, timeout=15)
    assert listed.code == 0, listed.err
    assert "vm4" in listed.out and "Domain-0" in listed.out
    info = aiovirsh("dominfo", "vm1", uri=xend_uri, timeout=15)
    assert info.code == 0, info.err
    assert "vm1" in info.out and "Max memory" in info.out
    xml = aiovirsh("dumpxml", "vm1", uri=xend_uri, timeout=15)
    assert xml.code == 0, xml.err
    assert xml.out.startswith("<domain") and "<name>vm1</name>" in xml.out


def test_a_number_is_an_id_then_a_name_and_the_error_says_so(xend_uri: str) -> None:
    res = aiovirsh("dominfo", "99999", uri=xend_uri)
    assert res.code == 1
    assert res.err.startswith("error: failed to get domain '99999': no domain with id 99999 "
                              "or name '99999'"), res.err
    by_id = aiovirsh("dominfo", "2", uri=xend_uri)
    assert by_id.code == 0 and "vm2" in by_id.out
    res = aiovirsh("dominfo", "no-such-vm", uri=xend_uri)
    assert res.code == 1 and "no domain with name 'no-such-vm'" in res.err
    uuid = "8f5d6a3e-02c1-9b7e-4d22-a1b0c3e5f719"
    res = aiovirsh("dominfo", uuid, uri=xend_uri)
    assert res.code == 1 and f"no domain with UUID {uuid} or name '{uuid}'" in res.err


@pytest.mark.parametrize("route", ["all", "xend-only"])
def test_setmaxmem_out_of_range_names_the_range(node: SimProcess, xend_uri: str,
                                                route: str) -> None:
    uri = node.uri if route == "all" else xend_uri
    res = aiovirsh("setmaxmem", "vm1", "99999999999999999999", uri=uri)
    assert res.code == 1 and res.err.count("\n") == 1, res.err
    assert "from 4096 to 2147482624 KiB" in res.err
    assert "SETDOMAINMAXMEM" not in res.err and "argument out of range" not in res.err
