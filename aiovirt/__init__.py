"""aiovirt: an asyncio API for Xen nodes (xend, xenstore, hypervisor) with events."""

from aiovirt import xenstore
from aiovirt._version import __version__, get_version
from aiovirt.connection import Connection, Domain, OpeningConnection, open, open_read_only
from aiovirt.errors import (
    ErrorDomain,
    ErrorLevel,
    ErrorNumber,
    VirtError,
    copy_last_error,
    default_error_handler,
    get_last_error,
    reset_last_error,
    set_error_handler,
)
from aiovirt.events import DomainEvent, EventKind, StopReason
from aiovirt.info import DomainInfo, NodeInfo
from aiovirt.protocol.devstats import BlockStats, DeviceStats, InterfaceStats
from aiovirt.protocol.states import DomainState

__all__ = [
    "BlockStats",
    "Connection",
    "DeviceStats",
    "Domain",
    "DomainEvent",
    "DomainInfo",
    "DomainState",
    "ErrorDomain",
    "ErrorLevel",
    "ErrorNumber",
    "EventKind",
    "InterfaceStats",
    "NodeInfo",
    "OpeningConnection",
    "StopReason",
    "VirtError",
    "__version__",
    "copy_last_error",
    "default_error_handler",
    "get_last_error",
    "get_version",
    "open",
    "open_read_only",
    "reset_last_error",
    "set_error_handler",
    "xenstore",
]
