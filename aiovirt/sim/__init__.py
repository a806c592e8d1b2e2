"""A simulated Xen node: xenstored, xend and the hypercall endpoint over one node model.

``async with SimNode(directory) as node:`` starts it in-process; ``python -m aiovirt.sim --dir
DIR`` runs it as a server process and prints its endpoints as one JSON line.
"""

from __future__ import annotations

from aiovirt.sim.domain import SimDomain
from aiovirt.sim.errors import NoSuchDomain, SimError
from aiovirt.sim.faults import Faults, XendFaults
from aiovirt.sim.node import SimNode
from aiovirt.sim.startup import SimDirInUse

__all__ = ["Faults", "NoSuchDomain", "SimDirInUse", "SimDomain", "SimError", "SimNode",
           "XendFaults"]
