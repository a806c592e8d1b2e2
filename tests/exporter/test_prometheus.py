"""The exporter scraped by a real Prometheus (Debian's), checked through its HTTP query API.

Two simulated nodes in their own processes, one exporter process serving both, and one
Prometheus process scraping it every second: what Prometheus stores must be what aiovirt
reports for those nodes, and when one node stops, its ``libvirt_up`` becomes 0 while the other
node's series go on.
"""

from __future__ import annotations

import asyncio
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

import aiovirt
from tests.support.interop import require_tool
from tests.support.sim_process import ROOT, close_streams, start_sim_process, stop_process

pytestmark = pytest.mark.interop

DEADLINE = 30.0  # seconds for anything Prometheus must have done


# Prometheus (its exporter-toolkit) names the address it bound, the port the system chose.
LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


def copy_log(stream: IO[str], log: Path, port: queue.Queue[int]) -> None:
    """Copy Prometheus's output into ``log``; put the port it listens on into ``port``.

    At the end of its output, puts 0: a Prometheus that exits before listening fails at once.
    """
    with log.open("a") as out:
        try:
            for line in stream:
                out.write(line)
                out.flush()
                if m := LISTENING.search(line):
                    port.put(int(m.group(1)))
        except (OSError, ValueError):  # the pipe was closed under us at the end
            pass
    port.put(0)


@dataclass
class Setup:
    """The running processes and what a test needs to reach them."""

    uris: dict[str, str]
    sims: dict[str, subprocess.Popen[str]]
    exporter: subprocess.Popen[str]
    prometheus: str  # http://127.0.0.1:PORT
    log: Path
    exporter_log: Path


@pytest.fixture
def stack(tmp_path: Path, short_dir: Path) -> Iterator[Setup]:
    """Two simulated nodes, an exporter for both, and Prometheus scraping it every second."""
    binary = require_tool("prometheus")
    sims: dict[str, subprocess.Popen[str]] = {}
    uris: dict[str, str] = {}
    procs: list[subprocess.Popen[str]] = []
    copiers: list[threading.Thread] = []
    try:
        for n, name in enumerate(("n1", "n2")):
            directory = short_dir / name
            directory.mkdir()
            proc, ends = start_sim_process(str(directory), "--domains", "2", "--seed",
                                           str(20 + n), "--log-level", "WARNING")
            sims[name], uris[name] = proc, ends["uri"]
            procs.append(proc)
        # its log goes to a file: a pipe nobody reads while the test runs would fill up with
        # one line per failed scrape and stop the exporter mid-write
        exporter_log = tmp_path / "exporter.log"
        with exporter_log.open("w") as err:
            exporter = subprocess.Popen(
                [sys.executable, "-m", "aiovirt.exporter", "--listen", "127.0.0.1:0",
                 "-c", f"n1={uris['n1']}", "-c", f"n2={uris['n2']}"],
                stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        procs.append(exporter)
        assert exporter.stdout is not None
        line = exporter.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert m, (line, exporter_log.read_text())
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: aiovirt\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{m.group(1)}']\n")
        log = tmp_path / "prometheus.log"
        log.touch()
        prom = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             "--web.listen-address=127.0.0.1:0", "--log.level=info"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(prom)
        assert prom.stdout is not None
        found: queue.Queue[int] = queue.Queue()
        copier = threading.Thread(target=copy_log, args=(prom.stdout, log, found),
                                  name="prometheus log", daemon=True)
        copier.start()
        copiers.append(copier)
        try:
            port = found.get(timeout=DEADLINE)
        except queue.Empty:
            port = 0
        if not port:
            pytest.fail(f"Prometheus never said where it listens; its log:\n{log.read_text()}")
        yield Setup(uris, sims, exporter, f"http://127.0.0.1:{port}", log, exporter_log)
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        for copier in copiers:
            copier.join(10)


class Prom:
    """Prometheus's HTTP query API."""

    def __init__(self, session: aiohttp.ClientSession, base: str, log: Path) -> None:
        self.session, self.base, self.log = session, base, log

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Return the instant vector of ``expr`` (an empty list while there is none)."""
        async with self.session.get(f"{self.base}/api/v1/query", params={"query": expr}) as r:
            body = await r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def scalar(self, expr: str) -> float:
        """Return the one value of ``expr``."""
        result = await self.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    async def until(self, expr: str, what: str) -> list[dict[str, Any]]:
        """Poll ``expr`` until it has a result; fail after :data:`DEADLINE` naming ``what``."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                result = await self.query(expr)
            except aiohttp.ClientError:
                result = []  # Prometheus is still starting
            if result:
                return result
            await asyncio.sleep(0.2)
        pytest.fail(f"Prometheus never had {what} ({expr}); its log:\n{self.log.read_text()}")


@pytest.fixture
async def prom(stack: Setup) -> AsyncIterator[Prom]:
    """A client of the stack's Prometheus, once it is ready."""
    async with aiohttp.ClientSession() as session:
        yield Prom(session, stack.prometheus, stack.log)


async def test_prometheus_stores_what_aiovirt_reports_and_sees_a_node_go(
        stack: Setup, prom: Prom) -> None:
    await prom.until('count(libvirt_up == 1) == 2', "both nodes up")
    conns = {name: await aiovirt.open(uri) for name, uri in stack.uris.items()}
    try:
        # memory: exactly what info() says, for every domain of both nodes
        for name, conn in conns.items():
            for dom, info in await conn.domain_infos():
                got = await prom.scalar(f'libvirt_domain_info_memory_usage_bytes{{node="{name}",'
                                        f'domain="{dom.name}",uuid="{dom.uuid_string}"}}')
                assert got == info.memory * 1024

        # counters: a sample scraped after our first read lies between our two reads
        conn = conns["n1"]
        dom = await conn.lookup_by_name("vm1")
        vif = f"vif{dom.id}.0"
        first = await dom.info(), await dom.block_stats("sda1"), await dom.interface_stats(vif)
        t_first = time.time()
        sel = 'node="n1",domain="vm1"'
        # rate() over a window the samples fill (a window longer than the series' life
        # would be extrapolated from part of it)
        await prom.until(f'timestamp(libvirt_domain_info_cpu_time_seconds_total{{{sel}}}) > '
                         f'{t_first} and count_over_time(libvirt_domain_info_cpu_time_seconds_'
                         f'total{{{sel}}}[5s]) >= 5', "a full 5 s window, after our read")
        cpu = await prom.scalar(f'libvirt_domain_info_cpu_time_seconds_total{{{sel}}}')
        rate = await prom.scalar(f'rate(libvirt_domain_info_cpu_time_seconds_total{{{sel}}}[5s])')
        rd = await prom.scalar(f'libvirt_domain_block_stats_read_bytes_total{{{sel},'
                               f'target_device="sda1"}}')
        rx = await prom.scalar(f'libvirt_domain_interface_stats_receive_bytes_total{{{sel},'
                               f'target_device="{vif}",source_bridge="xenbr0"}}')
        tx = await prom.scalar(f'libvirt_domain_interface_stats_transmit_packets_total{{{sel},'
                               f'target_device="{vif}"}}')
        t_last = time.time()
        last = await dom.info(), await dom.block_stats("sda1"), await dom.interface_stats(vif)
        assert first[0].cpu_time / 1e9 <= cpu + 1e-6 and cpu <= last[0].cpu_time / 1e9 + 1e-6
        assert first[1].rd_bytes <= rd <= last[1].rd_bytes
        assert first[2].rx_bytes <= rx <= last[2].rx_bytes
        assert first[2].tx_packets <= tx <= last[2].tx_packets
        # the CPU counter's rate is the rate aiovirt sees
        expected = (last[0].cpu_time - first[0].cpu_time) / 1e9 / (t_last - t_first)
        assert expected > 0
        assert rate == pytest.approx(expected, rel=0.25)
    finally:
        for conn in conns.values():
            await conn.close()

    # one node stops: its up goes to 0, the other node's series go on
    stop_process(stack.sims["n2"])
    t_stop = time.time()
    await prom.until('libvirt_up{node="n2"} == 0', "n2 down")
    await prom.until(f'timestamp(libvirt_domain_info_memory_usage_bytes{{node="n1",'
                     f'domain="vm1"}}) > {t_stop} and on() (libvirt_up{{node="n1"}} == 1) '
                     f'and on() (libvirt_domains_number{{node="n1"}} == 3)',
                     "n1 still served, all its domains, after n2 stopped")

    # SIGTERM stops the exporter cleanly
    stack.exporter.send_signal(signal.SIGTERM)
    assert stack.exporter.wait(15) == 0
    errors = stack.exporter_log.read_text()
    assert "n2" in errors and "scrape failed" in errors  # the failure was logged
    assert "Traceback" not in errors
    close_streams(stack.exporter)
