"""aiovirsh domblkstat, domifstat, top's device rates and the exporter command."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.cli.conftest import ROOT, SimProcess, aiovirsh


def stats_file(sim: SimProcess, domid: int, name: str) -> int:
    """Return one of domain ``domid``'s sda1 counters from the node's files."""
    path = (Path(sim.endpoints["stats_root"]) / "sys/bus/xen-backend/devices" /
            f"vbd-{domid}-2049" / "statistics" / name)
    return int(path.read_text())


def test_domblkstat_prints_virshs_lines(sim: SimProcess) -> None:
    before = stats_file(sim, 1, "rd_req")
    res = aiovirsh("domblkstat", "vm1", "sda1", uri=sim.uri)
    assert res.code == 0, res.err
    pairs = [line.split() for line in res.out.splitlines()]
    assert [p[:2] for p in pairs] == [["sda1", "rd_req"], ["sda1", "rd_bytes"],
                                      ["sda1", "wr_req"], ["sda1", "wr_bytes"], ["sda1", "errs"]]
    fields = {p[1]: int(p[2]) for p in pairs}
    assert before <= fields["rd_req"] <= stats_file(sim, 1, "rd_req")
    assert fields["rd_bytes"] % 512 == 0
    data = aiovirsh("domblkstat", "vm1", "sda1", "--json", uri=sim.uri).json()
    assert data["name"] == "vm1" and data["device"] == "sda1"
    assert data["rd_req"] >= fields["rd_req"] and set(data) >= set(fields)


def test_domifstat_prints_the_guests_view(sim: SimProcess) -> None:
    res = aiovirsh("domifstat", "vm2", "vif2.0", uri=sim.uri)
    assert res.code == 0, res.err
    names = [line.split()[1] for line in res.out.splitlines()]
    assert names == ["rx_bytes", "rx_packets", "rx_errs", "rx_drop", "tx_bytes", "tx_packets",
                     "tx_errs", "tx_drop"]
    data = aiovirsh("domifstat", "2", "vif2.0", "--json", uri=sim.uri).json()
    assert data["id"] == 2 and data["rx_bytes"] > 0 and data["tx_packets"] > 0


def test_an_unknown_device_is_one_line_and_exit_1(sim: SimProcess) -> None:
    for command, device in (("domblkstat", "sdz"), ("domifstat", "vif1.7"),
                            ("domifstat", "eth0")):
        res = aiovirsh(command, "vm1", device, uri=sim.uri)
        assert res.code == 1 and res.out == ""
        assert len(res.err.splitlines()) == 1 and repr(device) in res.err, res.err
    err = aiovirsh("domblkstat", "vm1", "sdz", "--json", uri=sim.uri)
    assert '"code_name": "INVALID_ARG"' in err.err


def test_top_shows_disk_and_network_rates(sim: SimProcess) -> None:
    data = aiovirsh("top", "--once", "--json", "--interval", "1.2", "--sort", "blk",
                    uri=sim.uri).json()
    guests = [d for d in data["domains"] if d["id"] != 0]
    assert guests and all(d["blk_read_bytes_per_s"] > 0 and d["net_rx_bytes_per_s"] > 0
                          for d in guests)
    blk = [d["blk_read_bytes_per_s"] + d["blk_write_bytes_per_s"] for d in data["domains"]]
    assert blk == sorted(blk, reverse=True)
    text = aiovirsh("top", "--once", "--interval", "0.1", uri=sim.uri).out
    assert text.splitlines()[0].split()[-2:] == ["Blk(KiB/s)", "Net(KiB/s)"]


def test_the_exporter_command_serves_metrics_and_stops_on_sigterm(sim: SimProcess) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiovirt", "-c", sim.uri, "exporter", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://(127\.0\.0\.1:\d+)/metrics for 1 node", line)
        assert m, line
        with urllib.request.urlopen(f"http://{m.group(1)}/metrics", timeout=30) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = reply.read().decode()
        found = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
        assert found["libvirt_up"].value == 1 and found["libvirt_up"].labels == {"node": sim.uri}
        assert "libvirt_domain_block_stats_read_bytes_total" in found
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_bad_listen_address_is_a_usage_error() -> None:
    res = aiovirsh("exporter", "--listen", "localhost:http", uri="sim:///")
    assert res.code == 2 and "--listen" in res.err
