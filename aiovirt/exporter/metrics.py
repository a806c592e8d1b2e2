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
from prometheus_client.samples import Sample

from aiovirt.connection import NodeInfo
from aiovirt.domain import DomainInfo
from aiovirt.protocol.devstats import BlockStats, DeviceStats, InterfaceStats

__all__ = ["DomainSample", "FamilyBuilder", "NodeSample", "families"]

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


class FamilyBuilder:
    """Builds each scrape's metric families, keeping every domain's series between scrapes.

    The families are prometheus_client's own :class:`Metric` objects, filled with its
    :class:`Sample` tuples directly rather than through ``add_metric`` (which zips the label
    names with the values into a new dict for every series). A domain's label dicts are made
    once, when it first appears, and shared by all its series; a domain whose info (or a
    device whose counters) did not change since the previous scrape gives the same
    :class:`Sample` objects again, so a quiet node's scrape allocates almost nothing (the
    garbage collector's passes over a large heap cost more than the allocations themselves)
    and unchanged families compare equal at once. A domain that is gone is forgotten at the
    next scrape. The families, their samples and label dicts are read-only to the caller.
    """

    def __init__(self) -> None:
        """Start with no domain known."""
        self._domains: dict[tuple[str, str, str], _DomainSeries] = {}

    def families(self, samples: Iterable[NodeSample]) -> list[Metric]:
        """Return the metric families of one scrape of every node."""
        up = GaugeMetricFamily("libvirt_up", "Whether scraping libvirt's metrics was successful.",
                               labels=("node",))
        duration = GaugeMetricFamily("libvirt_scrape_duration_seconds",
                                     "How long refreshing the node took, in seconds.",
                                     labels=("node",))
        count = GaugeMetricFamily("libvirt_domains_number", "Number of domains.",
                                  labels=("node",))
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
        iface = [CounterMetricFamily(name, doc, labels=INTERFACE_LABELS)
                 for name, doc, _ in _INTERFACE]

        # The series' names as prometheus_client's add_metric would give them.
        state_n, max_mem_n, mem_n, vcpus_n = state.name, max_mem.name, mem.name, vcpus.name
        cpu_n = cpu.name + "_total"
        block_adds = [f.samples.append for f in block]
        block_names = [(f.name + "_total", BlockStats._fields.index(field))
                       for f, (_, _, field) in zip(block, _BLOCK, strict=True)]
        iface_adds = [f.samples.append for f in iface]
        iface_names = [f.name + "_total" for f in iface]
        assert tuple(field for _, _, field in _INTERFACE) == InterfaceStats._fields
        info_adds = [state.samples.append, max_mem.samples.append, mem.samples.append,
                     vcpus.samples.append, cpu.samples.append]

        known, seen = self._domains, {}
        for sample in samples:
            node = sample.node
            node_labels = {"node": node}
            up.samples.append(Sample(up.name, node_labels, 1.0 if sample.up else 0.0))
            duration.samples.append(Sample(duration.name, node_labels, sample.duration))
            if not sample.up:
                continue
            count.samples.append(Sample(count.name, node_labels, float(len(sample.domains))))
            if sample.node_info is not None:
                memory.samples.append(Sample(memory.name, node_labels,
                                             float(sample.node_info.memory) * 1024))
                cpus.samples.append(Sample(cpus.name, node_labels,
                                           float(sample.node_info.cpus)))
            for dom in sample.domains:
                key = (node, dom.name, dom.uuid)
                entry = known.get(key)
                if entry is None:
                    entry = _DomainSeries(*key)
                seen[key] = entry
                info = dom.info
                if info != entry.info:
                    labels = entry.labels
                    entry.info = info
                    entry.samples = (Sample(state_n, labels, float(info.state)),
                                     Sample(max_mem_n, labels, float(info.max_mem) * 1024),
                                     Sample(mem_n, labels, float(info.memory) * 1024),
                                     Sample(vcpus_n, labels, float(info.nr_virt_cpu)),
                                     Sample(cpu_n, labels, info.cpu_time / 1e9))
                for add, series in zip(info_adds, entry.samples, strict=True):
                    add(series)
                devices = dom.devices
                if devices is None:
                    continue
                known_devices = entry.devices
                for target, stats in devices.block.items():
                    dev_key = (dom.disk_sources.get(target, ""), target)
                    dev = known_devices.get(dev_key)
                    if dev is None:
                        dev = entry.device("source_file", dev_key)
                    if stats != dev.stats:
                        dev.stats = stats
                        dev.samples = tuple(Sample(name, dev.labels, float(stats[index]))
                                            for name, index in block_names)
                    for add, series in zip(block_adds, dev.samples, strict=True):
                        add(series)
                for vif, istats in devices.interfaces.items():
                    dev_key = (dom.bridges.get(vif, ""), vif)
                    dev = known_devices.get(dev_key)
                    if dev is None:
                        dev = entry.device("source_bridge", dev_key)
                    if istats != dev.stats:
                        dev.stats = istats
                        dev.samples = tuple(Sample(name, dev.labels, float(counter))
                                            for name, counter in zip(iface_names, istats,
                                                                     strict=True))
                    for add, series in zip(iface_adds, dev.samples, strict=True):
                        add(series)
        self._domains = seen
        return [up, duration, count, memory, cpus, state, max_mem, mem, vcpus, cpu, *block,
                *iface]


class _DeviceSeries:
    """One device's labels, and its series as of the counters last seen."""

    __slots__ = ("labels", "samples", "stats")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.stats: tuple[int, ...] | None = None
        self.samples: tuple[Sample, ...] = ()


class _DomainSeries:
    """One domain's labels and its series as of the info last seen, and its devices'."""

    __slots__ = ("devices", "info", "labels", "samples")

    def __init__(self, node: str, domain: str, uuid: str) -> None:
        self.labels = {"node": node, "domain": domain, "uuid": uuid}
        self.info: DomainInfo | None = None
        self.samples: tuple[Sample, ...] = ()
        self.devices: dict[tuple[str, str], _DeviceSeries] = {}

    def device(self, source_label: str, key: tuple[str, str]) -> _DeviceSeries:
        dev = _DeviceSeries({**self.labels, source_label: key[0], "target_device": key[1]})
        self.devices[key] = dev
        return dev


def families(samples: Iterable[NodeSample]) -> list[Metric]:
    """Return the metric families of one scrape of every node (nothing kept for later)."""
    return FamilyBuilder().families(samples)
