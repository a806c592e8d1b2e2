"""The exporter's metrics: libvirt_exporter's names, labels and units, built with prometheus_client.

Operators' dashboards are written against libvirt_exporter, so its names are kept as they are:
``libvirt_up``, ``libvirt_domains_number``, ``libvirt_domain_state_code``,
``libvirt_domain_info_*``, ``libvirt_domain_block_stats_*_total`` and
``libvirt_domain_interface_stats_*_total``, labelled ``domain`` and ``uuid`` (plus
``source_file``/``source_bridge`` and ``target_device`` for devices) as its later versions do.
Every series also carries ``node``, the exporter's name for the node it came from, so one
exporter may serve several nodes. Units are Prometheus's: bytes and seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from aiovirt.connection import NodeInfo
from aiovirt.domain import DomainInfo
from aiovirt.protocol.devstats import DeviceStats

__all__ = ["DomainSample", "NodeSample", "families"]

DOMAIN_LABELS = ("node", "domain", "uuid")
BLOCK_LABELS = (*DOMAIN_LABELS, "source_file", "target_device")
INTERFACE_LABELS = (*DOMAIN_LABELS, "source_bridge", "target_device")

# (name, help, field of BlockStats)
_BLOCK = (
    ("libvirt_domain_block_stats_read_bytes", "Number of bytes read from a block device, in "
     "bytes.", "rd_bytes"),
    ("libvirt_domain_block_stats_read_requests", "Number of read requests from a block device.",
     "rd_req"),
    ("libvirt_domain_block_stats_write_bytes", "Number of bytes written from a block device, in "
     "bytes.", "wr_bytes"),
    ("libvirt_domain_block_stats_write_requests", "Number of write requests from a block "
     "device.", "wr_req"),
)
# (name, help, field of InterfaceStats): the guest's view, as libvirt reports it
_INTERFACE = (
    ("libvirt_domain_interface_stats_receive_bytes", "Number of bytes received on a network "
     "interface, in bytes.", "rx_bytes"),
    ("libvirt_domain_interface_stats_receive_packets", "Number of packets received on a network "
     "interface.", "rx_packets"),
    ("libvirt_domain_interface_stats_receive_errors", "Number of packet receive errors on a "
     "network interface.", "rx_errs"),
    ("libvirt_domain_interface_stats_receive_drops", "Number of packet receive drops on a network "
     "interface.", "rx_drop"),
    ("libvirt_domain_interface_stats_transmit_bytes", "Number of bytes transmitted on a network "
     "interface, in bytes.", "tx_bytes"),
    ("libvirt_domain_interface_stats_transmit_packets", "Number of packets transmitted on a "
     "network interface.", "tx_packets"),
    ("libvirt_domain_interface_stats_transmit_errors", "Number of packet transmit errors on a "
     "network interface.", "tx_errs"),
    ("libvirt_domain_interface_stats_transmit_drops", "Number of packet transmit drops on a "
     "network interface.", "tx_drop"),
)


@dataclass(frozen=True)
class DomainSample:
    """One domain at one scrape: identity, info, device counters and device sources."""

    name: str
    uuid: str
    info: DomainInfo
    devices: DeviceStats | None
    disk_sources: dict[str, str] = field(default_factory=dict)  # target -> source file
    bridges: dict[str, str] = field(default_factory=dict)  # vif name -> bridge


@dataclass(frozen=True)
class NodeSample:
    """One node at one scrape: whether it answered, how long that took, and what it said."""

    node: str
    up: bool
    duration: float
    domains: Sequence[DomainSample] = ()
    node_info: NodeInfo | None = None


def families(samples: Iterable[NodeSample]) -> list[Metric]:
    """Return the metric families of one scrape of every node."""
    up = GaugeMetricFamily("libvirt_up", "Whether scraping libvirt's metrics was successful.",
                           labels=("node",))
    duration = GaugeMetricFamily("libvirt_scrape_duration_seconds",
                                 "How long refreshing the node took, in seconds.",
                                 labels=("node",))
    count = GaugeMetricFamily("libvirt_domains_number", "Number of domains.", labels=("node",))
    memory = GaugeMetricFamily("libvirt_node_memory_bytes",
                               "Memory of the node, in bytes.", labels=("node",))
    cpus = GaugeMetricFamily("libvirt_node_cpus", "Number of CPUs of the node.",
                             labels=("node",))
    state = GaugeMetricFamily("libvirt_domain_state_code",
                              "State of the domain (libvirt's virDomainState number).",
                              labels=DOMAIN_LABELS)
    max_mem = GaugeMetricFamily("libvirt_domain_info_maximum_memory_bytes",
                                "Maximum allowed memory of the domain, in bytes.",
                                labels=DOMAIN_LABELS)
    mem = GaugeMetricFamily("libvirt_domain_info_memory_usage_bytes",
                            "Memory usage of the domain, in bytes.", labels=DOMAIN_LABELS)
    vcpus = GaugeMetricFamily("libvirt_domain_info_virtual_cpus",
                              "Number of virtual CPUs for the domain.", labels=DOMAIN_LABELS)
    cpu = CounterMetricFamily("libvirt_domain_info_cpu_time_seconds",
                              "Amount of CPU time used by the domain, in seconds.",
                              labels=DOMAIN_LABELS)
    block = [CounterMetricFamily(name, doc, labels=BLOCK_LABELS) for name, doc, _ in _BLOCK]
    block_fields = [f for _, _, f in _BLOCK]
    iface = [CounterMetricFamily(name, doc, labels=INTERFACE_LABELS)
             for name, doc, _ in _INTERFACE]
    iface_fields = [f for _, _, f in _INTERFACE]

    for sample in samples:
        node = sample.node
        up.add_metric((node,), 1.0 if sample.up else 0.0)
        duration.add_metric((node,), sample.duration)
        if not sample.up:
            continue
        count.add_metric((node,), float(len(sample.domains)))
        if sample.node_info is not None:
            memory.add_metric((node,), float(sample.node_info.memory) * 1024)
            cpus.add_metric((node,), float(sample.node_info.cpus))
        for dom in sample.domains:
            labels = (node, dom.name, dom.uuid)
            info = dom.info
            state.add_metric(labels, float(info.state))
            max_mem.add_metric(labels, float(info.max_mem) * 1024)
            mem.add_metric(labels, float(info.memory) * 1024)
            vcpus.add_metric(labels, float(info.nr_virt_cpu))
            cpu.add_metric(labels, info.cpu_time / 1e9)
            devices = dom.devices
            if devices is None:
                continue
            for target, stats in devices.block.items():
                dev_labels = (*labels, dom.disk_sources.get(target, ""), target)
                for family, name in zip(block, block_fields, strict=True):
                    family.add_metric(dev_labels, float(getattr(stats, name)))
            for vif, istats in devices.interfaces.items():
                dev_labels = (*labels, dom.bridges.get(vif, ""), vif)
                for family, name in zip(iface, iface_fields, strict=True):
                    family.add_metric(dev_labels, float(getattr(istats, name)))
    return [up, duration, count, memory, cpus, state, max_mem, mem, vcpus, cpu, *block, *iface]
