"""aiovirt: an asyncio API for Xen nodes (xend, xenstore, hypervisor) with events."""

from aiovirt._version import __version__, get_version
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

__all__ = [
    "ErrorDomain",
    "ErrorLevel",
    "ErrorNumber",
    "VirtError",
    "__version__",
    "copy_last_error",
    "default_error_handler",
    "get_last_error",
    "get_version",
    "reset_last_error",
    "set_error_handler",
]
