"""Which root a connection reads the device statistics under, as its URI says."""

from __future__ import annotations

import pytest

from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.uri import parse_uri


def test_the_local_node_reads_the_real_root_by_default() -> None:
    assert parse_uri("xen:///").stats_root == "/"


def test_a_uri_names_another_root_or_none() -> None:
    assert parse_uri("xen:///?stats_root=/tmp/sim/root").stats_root == "/tmp/sim/root"
    assert parse_uri("xen:///?stats_root=none").stats_root is None


def test_a_remote_node_has_no_statistics_files_here() -> None:
    assert parse_uri("xen://node7/").stats_root is None


@pytest.mark.parametrize("uri", ["xen:///?stats_root=", "xen:///?stats_root=relative/root",
                                 "sim:///?stats_root=/x"])
def test_a_bad_statistics_root_is_invalid(uri: str) -> None:
    with pytest.raises(VirtError) as info:
        parse_uri(uri)
    assert info.value.code == ErrorNumber.INVALID_ARG and "stats_root" in str(info.value)
