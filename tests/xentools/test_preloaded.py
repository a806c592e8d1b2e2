"""The real libxenctrl in aiovirt's own process: tests run in a child under LD_PRELOAD."""

from __future__ import annotations

import pytest

from tests.support.xenabi import PRELOADED, passed_count, run_preloaded_pytest
from tests.xentools.conftest import require_xen_tools

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(PRELOADED, reason="already the child process"),
]


def test_the_xenctrl_driver_through_libxenctrl_against_the_sim() -> None:
    require_xen_tools()
    code, output = run_preloaded_pytest("tests/xentools/preloaded")
    assert code == 0, output
    assert passed_count(output) == 5, output


def test_the_api_route_tests_pass_through_xenctrl() -> None:
    require_xen_tools()
    code, output = run_preloaded_pytest(
        "tests/api", "-k", "xenctrl and not test_no_real_hypervisor_here")
    assert code == 0, output
    assert passed_count(output) >= 15, output  # every route-parametrized test (19 today)
