"""The exporter in-process: libvirt_exporter's names and labels, the cost of a scrape, failures."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import aiovirt
from aiovirt.exporter import Exporter, NodeSource, parse_listen, parse_node_arg, render
from aiovirt.sim.node import SimNode


@pytest.fixture
async def node(short_dir: Path) -> AsyncIterator[SimNode]:
    """A simulated node with three guests."""
    async with SimNode(short_dir, domains=3, seed=4) as sim:
        yield sim


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Return every sample of an exposition, read by prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """Return the one sample called ``name`` whose labels include ``labels``."""
    hits = [v for (n, ls), v in found.items()
            if n == name and set(labels.items()) <= set(ls)]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


async def test_libvirt_exporters_names_labels_and_units(node: SimNode) -> None:
    exporter = Exporter([NodeSource("n1", node.uri)])
    try:
        found = samples(await exporter.render())
    finally:
        await exporter.close()
    async with aiovirt.open(node.uri) as conn:
        pairs = await conn.domain_infos()
        devices = dict(await conn.device_stats([d for d, _ in pairs]))
        total_kib = (await conn.node_info()).memory
    assert value(found, "libvirt_up", node="n1") == 1.0
    assert value(found, "libvirt_domains_number", node="n1") == 4
    assert value(found, "libvirt_node_memory_bytes", node="n1") == total_kib * 1024
    assert value(found, "libvirt_node_cpus", node="n1") == node.nr_cpus
    assert value(found, "libvirt_scrape_duration_seconds", node="n1") > 0
    for dom, info in pairs:
        who = {"node": "n1", "domain": dom.name, "uuid": dom.uuid_string}
        assert value(found, "libvirt_domain_info_memory_usage_bytes", **who) == info.memory * 1024
        assert value(found, "libvirt_domain_info_maximum_memory_bytes", **who) == (
            info.max_mem * 1024)
        assert value(found, "libvirt_domain_info_virtual_cpus", **who) == info.nr_virt_cpu
        assert value(found, "libvirt_domain_state_code", **who) == int(info.state)
        assert value(found, "libvirt_domain_info_cpu_time_seconds_total", **who) <= (
            info.cpu_time / 1e9)
        if dom.id == 0:
            continue
        disk = {**who, "target_device": "sda1",
                "source_file": f"/var/lib/xen/images/{dom.name}.img"}
        # counters only grow: what the exporter read earlier is at most what we read now
        now = devices[dom].block["sda1"]
        assert 0 < value(found, "libvirt_domain_block_stats_read_bytes_total", **disk) <= (
            now.rd_bytes)
        assert 0 < value(found, "libvirt_domain_block_stats_write_requests_total", **disk) <= (
            now.wr_req)
        vif = {**who, "target_device": f"vif{dom.id}.0", "source_bridge": "xenbr0"}
        net = devices[dom].interfaces[f"vif{dom.id}.0"]
        assert 0 < value(found, "libvirt_domain_interface_stats_receive_bytes_total",
                         **vif) <= net.rx_bytes
        assert 0 < value(found, "libvirt_domain_interface_stats_transmit_packets_total",
                         **vif) <= net.tx_packets


async def test_every_scrapes_text_is_what_prometheus_client_writes_for_that_scrape(
        node: SimNode) -> None:
    # The exporter reuses the text of families that did not change; each scrape's text must
    # still be exactly one generate_latest over that scrape's families, and show its changes.
    exporter = Exporter([NodeSource("n1", node.uri)])
    try:
        first = await exporter.scrape()
        text = exporter.text.render(first)
        assert text == render(first)
        async with aiovirt.open(node.uri) as conn:
            paused, gone = [d for d in await conn.list_domains() if d.id][:2]
            await paused.suspend()
            await paused.set_memory(await paused.max_memory() // 2)
            await gone.destroy()
            second = await exporter.scrape()
            again = exporter.text.render(second)
            assert again == render(second)
            assert exporter.text.families_reused > 0  # some families stood still
            found = samples(again)
            who = {"domain": paused.name, "uuid": paused.uuid_string}
            assert value(found, "libvirt_domain_state_code", **who) == 3  # paused
            info = await paused.info()
            assert value(found, "libvirt_domain_info_memory_usage_bytes", **who) == (
                info.memory * 1024)
            assert not [k for k in found if ("domain", gone.name) in k[1]]
            assert samples(text) != found
    finally:
        await exporter.close()


async def test_a_scrape_costs_one_bulk_refresh_per_node_not_one_call_per_domain(
        short_dir: Path) -> None:
    async with SimNode(short_dir, domains=40, seed=2) as node:
        exporter = Exporter([NodeSource("n1", node.uri)])
        try:
            await exporter.render()  # the first scrape also learns the devices' sources
            before = node.stats
            await exporter.render()
            after = node.stats
            conn = exporter.sources[0]._conn
            assert conn is not None and conn._router.devstats is not None
            reads = conn._router.devstats.reader.snapshots
            await exporter.render()
            assert conn._router.devstats.reader.snapshots == reads + 1
        finally:
            await exporter.close()
    calls = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    # one hypercall for every domain's info, one for the node; no xend or per-domain calls
    assert calls.get("privcmd.GETDOMAININFOLIST", 0) == 1, calls
    assert sum(v for k, v in calls.items() if k.startswith("xend.")) == 0, calls
    assert sum(calls.values()) <= 3, calls


async def test_a_failing_node_is_down_and_logged_while_the_others_are_served(
        node: SimNode, short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = f"xen:///?xend=unix:{short_dir}/nothing&xenstore={short_dir}/nothing"
    exporter = Exporter([NodeSource("good", node.uri), NodeSource("bad", missing)])
    try:
        with caplog.at_level(logging.ERROR, logger="aiovirt.exporter"):
            found = samples(await exporter.render())
    finally:
        await exporter.close()
    assert value(found, "libvirt_up", node="good") == 1.0
    assert value(found, "libvirt_up", node="bad") == 0.0
    assert value(found, "libvirt_domains_number", node="good") == 4
    assert not [k for k in found if ("node", "bad") in k[1] and k[0] != "libvirt_up"
                and k[0] != "libvirt_scrape_duration_seconds"]
    assert any("bad" in r.getMessage() and "scrape failed" in r.getMessage()
               for r in caplog.records)


def test_node_names_and_listen_addresses() -> None:
    assert parse_node_arg("web=xen:///?xend=unix:/x") == ("web", "xen:///?xend=unix:/x")
    assert parse_node_arg("xen:///?xend=unix:/x") == ("xen:///?xend=unix:/x",) * 2
    assert parse_listen(":9177") == ("0.0.0.0", 9177)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:9100") == ("::1", 9100)
    with pytest.raises(ValueError):
        parse_listen("host:http")
