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
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from aiovirt.connection import NodeInfo
from aiovirt.domain import DomainInfo
from aiovirt.protocol.devstats import DeviceStats, InterfaceStats

__all__ = ["DomainSample", "Family", "FamilyBuilder", "NodeSample", "families"]

DOMAIN_LABELS = ("node", "domain", "uuid")
BLOCK_LABELS = (*DOMAIN_LABELS, "source_file", "target_device")
INTERFACE_LABELS = (*DOMAIN_LABELS, "source_bridge", "target_device")

# (name, help, type): the domain families, in the order of their values in the builder
_DOMAIN = (
    ("libvirt_domain_state_code", "State of the domain (libvirt's virDomainState number).",
     "gauge"),
    ("libvirt_domain_info_maximum_memory_bytes", "Maximum allowed memory of the domain, in "
     "bytes.", "gauge"),
    ("libvirt_domain_info_memory_usage_bytes", "Memory usage of the domain, in bytes.", "gauge"),
    ("libvirt_domain_info_virtual_cpus", "Number of virtual CPUs for the domain.", "gauge"),
    ("libvirt_domain_info_cpu_time_seconds", "Amount of CPU time used by the domain, in "
     "seconds.", "counter"),
)
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


class Family(NamedTuple):
    """One metric family of a scrape, as columns: its series' label dicts and values, in order.

    ``labels`` may be shared with other families of the same scrape (the domain families all
    have one list of the domains' label dicts); both lists are read-only.
    """

    name: str  # the family's name (a counter's without ``_total``)
    documentation: str
    type: str  # "gauge" or "counter"
    labelnames: tuple[str, ...]
    labels: list[dict[str, str]]
    values: list[float]

    def metric(self) -> Metric:
        """Return the family as prometheus_client's :class:`Metric`, one Sample a series."""
        if self.type == "counter":
            family: Metric = CounterMetricFamily(self.name, self.documentation,
                                                 labels=self.labelnames)
            name = family.name + "_total"  # as add_metric names a counter's series
        else:
            family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
            name = family.name
        family.samples = [Sample(name, labels, value)
                          for labels, value in zip(self.labels, self.values, strict=True)]
        return family


class FamilyBuilder:
    """Builds each scrape's metric families, keeping every domain's label dicts between scrapes.

    A scrape's families are first :class:`Family` columns: the label dicts of the series, made
    once when a domain (or one of its devices) first appears and shared by all its series in
    this and later scrapes, and plain lists of float values. Only a family that is to be
    written becomes prometheus_client's :class:`Metric` of :class:`Sample` tuples
    (:meth:`Family.metric`), the same as ``add_metric`` gives; so a scrape whose families are
    mostly unchanged neither makes nor keeps one Sample per series (on a large node the
    garbage collector's passes over such a heap cost more than making them). A domain that
    is gone is forgotten at the next scrape.
    """

    def __init__(self) -> None:
        """Start with no domain known."""
        self._domains: dict[tuple[str, str, str], _DomainLabels] = {}

    def families(self, samples: Iterable[NodeSample]) -> list[Metric]:
        """Return the metric families of one scrape of every node."""
        return [family.metric() for family in self.columns(samples)]

    def columns(self, samples: Iterable[NodeSample]) -> list[Family]:
        """Return the families of one scrape of every node, as columns, in exposition order."""
        nodes: list[dict[str, str]] = []
        up: list[float] = []
        duration: list[float] = []
        counted: list[dict[str, str]] = []
        count: list[float] = []
        sized: list[dict[str, str]] = []
        memory: list[float] = []
        cpus: list[float] = []
        dom_labels: list[dict[str, str]] = []
        dom_values: list[list[float]] = [[], [], [], [], []]
        state, max_mem, mem, vcpus, cpu = (v.append for v in dom_values)
        disk_labels: list[dict[str, str]] = []
        disk_values: list[list[float]] = [[] for _ in _BLOCK]
        rd_bytes, rd_req, wr_bytes, wr_req = (v.append for v in disk_values)
        assert [f for _, _, f in _BLOCK] == ["rd_bytes", "rd_req", "wr_bytes", "wr_req"]
        vif_labels: list[dict[str, str]] = []
        vif_values: list[list[float]] = [[] for _ in _INTERFACE]
        vif_adds = [v.append for v in vif_values]
        assert tuple(f for _, _, f in _INTERFACE) == InterfaceStats._fields

        known: dict[tuple[str, str, str], _DomainLabels] = self._domains
        seen: dict[tuple[str, str, str], _DomainLabels] = {}
        for sample in samples:
            node = sample.node
            node_labels = {"node": node}
            nodes.append(node_labels)
            up.append(1.0 if sample.up else 0.0)
            duration.append(sample.duration)
            if not sample.up:
                continue
            counted.append(node_labels)
            count.append(float(len(sample.domains)))
            if sample.node_info is not None:
                sized.append(node_labels)
                memory.append(float(sample.node_info.memory) * 1024)
                cpus.append(float(sample.node_info.cpus))
            for dom in sample.domains:
                key = (node, dom.name, dom.uuid)
                entry = known.get(key)
                if entry is None:
                    entry = _DomainLabels(*key)
                seen[key] = entry
                dom_labels.append(entry.labels)
                info = dom.info
                state(float(info.state))
                max_mem(float(info.max_mem) * 1024)
                mem(float(info.memory) * 1024)
                vcpus(float(info.nr_virt_cpu))
                cpu(info.cpu_time / 1e9)
                devices = dom.devices
                if devices is None:
                    continue
                device_labels = entry.devices
                for target, stats in devices.block.items():
                    dev_key = (dom.disk_sources.get(target, ""), target)
                    labels = device_labels.get(dev_key)
                    if labels is None:
                        labels = entry.device("source_file", dev_key)
                    disk_labels.append(labels)
                    rd_bytes(float(stats.rd_bytes))
                    rd_req(float(stats.rd_req))
                    wr_bytes(float(stats.wr_bytes))
                    wr_req(float(stats.wr_req))
                for vif, istats in devices.interfaces.items():
                    dev_key = (dom.bridges.get(vif, ""), vif)
                    labels = device_labels.get(dev_key)
                    if labels is None:
                        labels = entry.device("source_bridge", dev_key)
                    vif_labels.append(labels)
                    for add, counter in zip(vif_adds, istats, strict=True):
                        add(float(counter))
        self._domains = seen

        node_only = ("node",)
        return [
            Family("libvirt_up", "Whether scraping libvirt's metrics was successful.", "gauge",
                   node_only, nodes, up),
            Family("libvirt_scrape_duration_seconds",
                   "How long refreshing the node took, in seconds.", "gauge", node_only,
                   nodes, duration),
            Family("libvirt_domains_number", "Number of domains.", "gauge", node_only,
                   counted, count),
            Family("libvirt_node_memory_bytes", "Memory of the node, in bytes.", "gauge",
                   node_only, sized, memory),
            Family("libvirt_node_cpus", "Number of CPUs of the node.", "gauge", node_only,
                   sized, cpus),
            *(Family(name, doc, typ, DOMAIN_LABELS, dom_labels, values)
              for (name, doc, typ), values in zip(_DOMAIN, dom_values, strict=True)),
            *(Family(name, doc, "counter", BLOCK_LABELS, disk_labels, values)
              for (name, doc, _), values in zip(_BLOCK, disk_values, strict=True)),
            *(Family(name, doc, "counter", INTERFACE_LABELS, vif_labels, values)
              for (name, doc, _), values in zip(_INTERFACE, vif_values, strict=True)),
        ]


class _DomainLabels:
    """One domain's label dicts: its own, and each of its devices' (by source and target)."""

    __slots__ = ("devices", "labels")

    def __init__(self, node: str, domain: str, uuid: str) -> None:
        self.labels = {"node": node, "domain": domain, "uuid": uuid}
        self.devices: dict[tuple[str, str], dict[str, str]] = {}

    def device(self, source_label: str, key: tuple[str, str]) -> dict[str, str]:
        labels = {**self.labels, source_label: key[0], "target_device": key[1]}
        self.devices[key] = labels
        return labels


def families(samples: Iterable[NodeSample]) -> list[Metric]:
    """Return the metric families of one scrape of every node (nothing kept for later)."""
    return FamilyBuilder().families(samples)
