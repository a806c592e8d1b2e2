"""What a simulated guest kernel does with its xenstore control nodes.

A Linux guest watches ``control/shutdown`` and ``control/sysrq`` in its home: it acknowledges a
request by clearing the node, then acts on it. Only a guest whose vCPUs run can answer; a paused
guest answers once it runs again. The timing (how long the guest takes to shut down) is the
node's; these functions are the guest's side of the protocol.
"""

from __future__ import annotations

import logging
import re

from aiovirt.protocol.states import ShutdownReason
from aiovirt.sim.domain import SimDomain
from aiovirt.sim.layout import put
from aiovirt.sim.store import StoreError, XenStoreDB

log = logging.getLogger(__name__)

__all__ = [
    "GUEST_SHUTDOWN_CODES",
    "GUEST_WATCH",
    "acknowledge_request",
    "handle_sysrq",
    "shutdown_request_domid",
    "take_shutdown_request",
]

# What a Linux guest does with a control/shutdown request: the code it shuts down with.
GUEST_SHUTDOWN_CODES = {
    "poweroff": ShutdownReason.POWEROFF,
    "halt": ShutdownReason.POWEROFF,
    "reboot": ShutdownReason.REBOOT,
    "suspend": ShutdownReason.SUSPEND,
}
# The subtree the guests' kernels watch, as one store session.
GUEST_WATCH = "/local/domain"
_SHUTDOWN_NODE = re.compile(r"/local/domain/(\d+)/control/shutdown")


def shutdown_request_domid(path: str) -> int | None:
    """Return the domain whose ``control/shutdown`` a watch event at ``path`` is for, if any."""
    if not path.endswith("/control/shutdown"):
        return None
    m = _SHUTDOWN_NODE.fullmatch(path)
    return None if m is None else int(m.group(1))


def take_shutdown_request(db: XenStoreDB, dom: SimDomain) -> ShutdownReason | None:
    """Read and acknowledge the guest's pending shutdown request; return the code it acts on.

    ``None``: nothing is asked, or the guest ignores what is asked (left logged).
    """
    path = f"{dom.home}/control/shutdown"
    try:
        raw = db.read(path)
    except StoreError:  # the node is gone (ENOENT): nothing is asked
        return None
    request = raw.decode() if isinstance(raw, bytes) else str(raw)
    if not request:
        return None
    put(db, path, "")
    code = GUEST_SHUTDOWN_CODES.get(request)
    if code is None:
        log.info("guest %s ignores shutdown request %r", dom.name, request)
    return code


def acknowledge_request(db: XenStoreDB, dom: SimDomain) -> None:
    """Clear ``control/shutdown`` as the guest does when it takes a request."""
    put(db, f"{dom.home}/control/shutdown", "")


def handle_sysrq(db: XenStoreDB, dom: SimDomain) -> None:
    """Handle a SysRq key written to ``control/sysrq``: a running guest clears the node."""
    if dom.consuming:
        put(db, f"{dom.home}/control/sysrq", "")
