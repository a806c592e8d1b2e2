"""The device statistics codec: disk names and numbers, sysfs counters, /proc/net/dev."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.protocol.devstats import (
    PROC_NET_DEV_HEADER,
    BlockStats,
    VifCounters,
    blkdev_name,
    blkdev_number,
    block_stats,
    format_proc_net_dev,
    parse_counter,
    parse_proc_net_dev,
    parse_vbd_dirname,
    parse_vif_name,
)

# /proc/net/dev of a Linux 6.1 dom0 (Debian 12, Xen 4.17), two guests' vifs among dom0's own.
REAL_PROC_NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|"
    "bytes    packets errs drop fifo colls carrier compressed\n"
    "    lo:  412380    3914    0    0    0     0          0         0   412380    3914    0"
    "    0    0     0       0          0\n"
    "  eno1: 98311204  129087    0  211    0     0          0      3310 11220498   70112    0"
    "    0    0     0       0          0\n"
    "xenbr0: 90120001  120023    0    0    0     0          0      2960 10998001   69004    0"
    "    0    0     0       0          0\n"
    "vif1.0:  1183344    9125    0    0    0     0          0         0  7322016   51017    0"
    "   14    0     0       0          0\n"
    "vif3.1:       0       0    0    0    0     0          0         0      912      12    0"
    "    0    0     0       0          0\n"
)


@pytest.mark.parametrize(("name", "number"), [
    ("sda", 2048), ("sda1", 2049), ("sdb2", 2066), ("sdq", 65 * 256), ("hda", 768),
    ("hdb", 832), ("hdc1", 22 * 256 + 1), ("xvda", 51712), ("xvdb3", 51731),
    ("xvdq", (1 << 28) | (16 << 8)), ("/dev/sda1", 2049), ("51713", 51713),
])
def test_disk_names_become_linux_device_numbers(name: str, number: int) -> None:
    assert blkdev_number(name) == number


@given(st.sampled_from(["sd", "hd", "xvd"]), st.integers(0, 15), st.integers(0, 15))
def test_device_numbers_name_their_disk(kind: str, disk: int, part: int) -> None:
    name = f"{kind}{chr(ord('a') + disk)}{part or ''}"
    assert blkdev_name(blkdev_number(name)) == name


@pytest.mark.parametrize("bad", ["", "eth0", "sda1x", "sd", "hdz", "xvda300", "fd0"])
def test_a_bad_disk_name_is_invalid_arg_naming_it(bad: str) -> None:
    with pytest.raises(VirtError) as info:
        blkdev_number(bad)
    assert info.value.code == ErrorNumber.INVALID_ARG
    assert repr(bad) in str(info.value) or bad == ""


def test_backend_and_vif_names() -> None:
    assert parse_vbd_dirname("vbd-12-51712") == (12, 51712)
    assert parse_vbd_dirname("tap-3-2049") == (3, 2049)
    assert parse_vbd_dirname("vif-1-0") is None
    assert parse_vif_name("vif12.3") == (12, 3)
    assert parse_vif_name("vif12") is None and parse_vif_name("eth0") is None


def test_block_stats_are_bytes_from_sectors_and_oo_req_is_errs() -> None:
    stats = block_stats({"rd_req": 10, "rd_sect": 80, "wr_req": 4, "wr_sect": 9, "oo_req": 2})
    assert stats == BlockStats(10, 80 * 512, 4, 9 * 512, 2)
    assert block_stats({"rd_req": 1}) == BlockStats(1, 0, 0, 0, 0)


@pytest.mark.parametrize("text", [b"", b"-1\n", b"12a\n", "\u0661\n".encode()])
def test_a_counter_file_that_is_not_a_counter_is_an_error(text: bytes) -> None:
    with pytest.raises(VirtError) as info:
        parse_counter(text, "rd_req")
    assert info.value.code == ErrorNumber.OPERATION_FAILED and "rd_req" in str(info.value)
    assert parse_counter(b"18446744073709551615\n") == 2**64 - 1


def test_proc_net_dev_lines_are_read_by_name_with_sixteen_counters() -> None:
    lines = parse_proc_net_dev(REAL_PROC_NET_DEV)
    assert set(lines) == {"lo", "eno1", "xenbr0", "vif1.0", "vif3.1"}
    vif = lines["vif1.0"]
    assert (vif.rx_bytes, vif.rx_packets, vif.tx_bytes, vif.tx_packets, vif.tx_drop) == (
        1183344, 9125, 7322016, 51017, 14)


def test_the_guest_view_swaps_receive_and_transmit() -> None:
    vif = parse_proc_net_dev(REAL_PROC_NET_DEV)["vif1.0"]
    guest = vif.guest_view()
    # what dom0's vif received, the guest sent; what it transmitted, the guest received
    assert (guest.tx_bytes, guest.tx_packets) == (1183344, 9125)
    assert (guest.rx_bytes, guest.rx_packets, guest.rx_drop) == (7322016, 51017, 14)


def test_a_cut_line_is_skipped_not_read_as_zeros() -> None:
    text = REAL_PROC_NET_DEV + "vif4.0:  1183344    9125    0\n"
    assert "vif4.0" not in parse_proc_net_dev(text)


counters = st.builds(VifCounters._make, st.lists(st.integers(0, 2**64 - 1), min_size=16,
                                                 max_size=16))


@given(st.dictionaries(st.from_regex(r"vif[0-9]{1,4}\.[0-9]", fullmatch=True), counters,
                       max_size=8))
def test_formatted_proc_net_dev_reads_back(lines: dict[str, VifCounters]) -> None:
    text = format_proc_net_dev(lines.items())
    assert text.startswith(PROC_NET_DEV_HEADER)
    assert parse_proc_net_dev(text) == lines


def test_the_header_is_the_one_xentop_checks() -> None:
    # xenstat_linux.c compares the first two lines of /proc/net/dev byte for byte
    assert PROC_NET_DEV_HEADER == REAL_PROC_NET_DEV[:len(PROC_NET_DEV_HEADER)]
