"""aiovirt: an asyncio API for Xen nodes (xend, xenstore, hypervisor) with events.

The names below are imported when first used (PEP 562), so a program that needs only part of
the package, such as ``aiovirsh --help``, the simulator or a user of :mod:`aiovirt.errors`,
does not load the whole client (asyncio, the backends, the routing) at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aiovirt._version import __version__, get_version

if TYPE_CHECKING:
    from aiovirt import xenstore
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

# Where each public name lives: the module is imported on the name's first use.
_HOMES = {
    **dict.fromkeys(("Connection", "Domain", "OpeningConnection", "open", "open_read_only"),
                    "aiovirt.connection"),
    **dict.fromkeys(("ErrorDomain", "ErrorLevel", "ErrorNumber", "VirtError", "copy_last_error",
                     "default_error_handler", "get_last_error", "reset_last_error",
                     "set_error_handler"), "aiovirt.errors"),
    **dict.fromkeys(("DomainEvent", "EventKind", "StopReason"), "aiovirt.events"),
    **dict.fromkeys(("DomainInfo", "NodeInfo"), "aiovirt.info"),
    **dict.fromkeys(("BlockStats", "DeviceStats", "InterfaceStats"), "aiovirt.protocol.devstats"),
    "DomainState": "aiovirt.protocol.states",
}


if not TYPE_CHECKING:  # type checkers read the imports above; a __getattr__ would hide typos

    def __getattr__(name: str) -> Any:
        """Return the public name ``name``, importing the module that defines it."""
        if name == "xenstore":
            value = importlib.import_module("aiovirt.xenstore")
        elif name in _HOMES:
            value = getattr(importlib.import_module(_HOMES[name]), name)
        else:
            raise AttributeError(f"module 'aiovirt' has no attribute {name!r}")
        globals()[name] = value  # later uses are plain attribute reads
        return value


def __dir__() -> list[str]:
    """Return the module's names, the ones not imported yet included."""
    return sorted({*globals(), *__all__})
