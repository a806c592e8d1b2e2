"""The values the API returns about domains and the node: plain tuples, no I/O.

The router fills them from whichever backend answered; the public face returns them.
"""

from __future__ import annotations

from typing import NamedTuple

from aiovirt.protocol.states import DomainState

__all__ = ["DomainInfo", "NodeInfo"]


class DomainInfo(NamedTuple):
    """What ``info()`` returns; unpacks like libvirt's ``[state, maxMem, memory, nrVirtCpu,
    cpuTime]``: memory in KiB, cpu_time in nanoseconds."""

    state: DomainState
    max_mem: int
    memory: int
    nr_virt_cpu: int
    cpu_time: int


class NodeInfo(NamedTuple):
    """The node's hardware, like libvirt's ``virNodeInfo``: memory in KiB, CPU speed in MHz."""

    model: str
    memory: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int
