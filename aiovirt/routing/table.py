"""The routing table: which backends answer each call, in order of preference.

Following libvirt 0.0.6 where it was right and its later fixes where it was not. The
:class:`~aiovirt.routing.router.Router` reads this table and nothing else to pick a backend;
each backend's module in this package (``hypervisor``, ``xend``, ``xenstore``) holds its
answer to each call it appears under, as a method named after the call.

The fallback rule: the router asks the first backend of the call's route that the connection
has open. That backend either answers, fails (its error is raised: a failure is reported,
never hidden by asking another backend), or passes (:class:`Pass`):
it holds no answer for this domain, e.g. xenstore has no ``vm`` entry to read the OS type
from; then the router asks the next open backend of the route. A pass may carry a
*fallback* answer, used only when no later backend is open. When no backend of the route is
open, the call fails with ``NO_CONNECT``, naming each backend of the route and why it is
missing.

============================  ======================================================
call                          backends, in order of preference
============================  ======================================================
list ids, count, ``info()``   hypervisor (one coalesced hypercall), xend, xenstore
``list_domains()``            xend (one detailed list), hypervisor + xenstore names,
                              xenstore
lookup by name                xend, xenstore (scan of ``/local/domain``)
lookup by id                  xenstore (``/local/domain/<id>``), xend
lookup by UUID                hypervisor + xenstore names, xend, xenstore (``/vm/<uuid>``)
``os_type()``                 xenstore (``<vm>/image/ostype``), xend
``max_memory()``              hypervisor, xend, xenstore
suspend, resume, destroy,     hypervisor, xend
set_max_memory
shutdown, reboot              xend, xenstore (``control/shutdown``)
set_memory                    xend, xenstore (``memory/target``)
create, save, restore, XML,   xend only (``domain_configs()``: one detailed list)
``domain_configs()`` (bulk)
node_info, get_version        hypervisor, xend
``domain_infos()`` (bulk)     hypervisor (one batch; xenstore names for new domains),
                              xend (one detailed list), else each domain's ``info()``
event source's scan           hypervisor (one batch, with shutdown codes), xend (one
                              detailed list), else each domain's ``info()``
                              (``routing/scan.py``: ``SCAN``)
block/interface statistics,   devstats: the dom0's statistics files under the URI's
``device_stats()`` (bulk)     ``stats_root`` (after the info route says the domain is
                              still there)
============================  ======================================================
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BACKENDS", "DEVSTATS", "HYPERVISOR", "PASS", "ROUTES", "XEND", "XENSTORE", "Pass",
           "Route"]

HYPERVISOR = "hypervisor"
XEND = "xend"
XENSTORE = "xenstore"
BACKENDS = (XEND, XENSTORE, HYPERVISOR)
# The dom0's statistics files: not a daemon's backend, the one source of the device calls.
DEVSTATS = "devstats"


class Pass(NamedTuple):
    """A backend's "not mine to answer": ask the next backend of the route; ``fallback`` (if
    not None) is the answer when no later backend is open."""

    fallback: object = None


PASS = Pass()


class Route(NamedTuple):
    """The backends that may answer one call, in order of preference, and what the call is for
    (the words of the ``NO_CONNECT`` error when none of them is open)."""

    backends: tuple[str, ...]
    what: str


ROUTES: dict[str, Route] = {
    "list_ids": Route((HYPERVISOR, XEND, XENSTORE), "listing domains"),
    "list_domains": Route((XEND, HYPERVISOR, XENSTORE), "listing domains"),
    "lookup_by_name": Route((XEND, XENSTORE), "a lookup by name"),
    "lookup_by_id": Route((XENSTORE, XEND), "a lookup by id"),
    "lookup_by_uuid": Route((HYPERVISOR, XEND, XENSTORE), "a lookup by UUID"),
    "info": Route((HYPERVISOR, XEND, XENSTORE), "domain information"),
    "max_memory": Route((HYPERVISOR, XEND, XENSTORE), "the maximum memory"),
    "os_type": Route((XENSTORE, XEND), "the OS type"),
    "xml_desc": Route((XEND,), "the XML description"),
    "suspend": Route((HYPERVISOR, XEND), "suspending a domain"),
    "resume": Route((HYPERVISOR, XEND), "resuming a domain"),
    "destroy": Route((HYPERVISOR, XEND), "destroying a domain"),
    "set_max_memory": Route((HYPERVISOR, XEND), "setting the maximum memory"),
    "shutdown": Route((XEND, XENSTORE), "a shutdown request"),
    "set_memory": Route((XEND, XENSTORE), "setting the memory"),
    "save": Route((XEND,), "saving a domain"),
    "create": Route((XEND,), "creating a domain"),
    "restore": Route((XEND,), "restoring a domain"),
    "node_info": Route((HYPERVISOR, XEND), "node information"),
    "version": Route((HYPERVISOR, XEND), "the hypervisor version"),
    "block_stats": Route((DEVSTATS,), "block device statistics"),
    "interface_stats": Route((DEVSTATS,), "interface statistics"),
    "device_stats": Route((DEVSTATS,), "device statistics"),
    "domain_configs": Route((XEND,), "the domains' descriptions"),
}
