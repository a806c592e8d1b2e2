"""libvirt-grade errors: the enums, :class:`VirtError`, last errors and handlers.

This module is a leaf: it imports nothing else of aiovirt and does no I/O except the default
handler's one line on stderr, so ``protocol/`` may raise :class:`VirtError` too.

The flow is the same everywhere: the code that detects a failure builds a :class:`VirtError`
(``VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM, "web1")``) and raises it; the public API
seam catches it once and calls :func:`report`, which stores it as the connection's and the
task's last error and hands it to the handler (awaiting an async one) before it propagates.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from enum import IntEnum
from typing import Any, Concatenate, ParamSpec, Protocol, TypeAlias, TypeVar, cast

log = logging.getLogger(__name__)

__all__ = [
    "ErrorDomain",
    "ErrorHandler",
    "ErrorLevel",
    "ErrorNumber",
    "ErrorSink",
    "VirtError",
    "copy_last_error",
    "default_error_handler",
    "get_last_error",
    "report",
    "reporting",
    "reset_last_error",
    "set_error_handler",
]


class ErrorLevel(IntEnum):
    """How grave an error is (libvirt's ``virErrorLevel``)."""

    NONE = 0
    WARNING = 1
    ERROR = 2


class ErrorDomain(IntEnum):
    """Which part of the library raised an error (libvirt's numbering, stable since 0.1.0)."""

    NONE = 0
    XEN = 1
    XEND = 2
    XENSTORE = 3
    SEXPR = 4
    XML = 5
    DOM = 6
    RPC = 7
    PROXY = 8
    CONF = 9
    STATS_LINUX = 16
    URI = 45


class ErrorNumber(IntEnum):
    """libvirt's ``virErrorNumber``: every 0.0.6 code plus the later ones aiovirt raises."""

    OK = 0
    INTERNAL_ERROR = 1
    NO_MEMORY = 2
    NO_SUPPORT = 3
    UNKNOWN_HOST = 4
    NO_CONNECT = 5
    INVALID_CONN = 6
    INVALID_DOMAIN = 7
    INVALID_ARG = 8
    OPERATION_FAILED = 9
    GET_FAILED = 10
    POST_FAILED = 11
    HTTP_ERROR = 12
    SEXPR_SERIAL = 13
    NO_XEN = 14
    XEN_CALL = 15
    OS_TYPE = 16
    NO_KERNEL = 17
    NO_ROOT = 18
    NO_SOURCE = 19
    NO_TARGET = 20
    NO_NAME = 21
    NO_OS = 22
    NO_DEVICE = 23
    NO_XENSTORE = 24
    DRIVER_FULL = 25
    CALL_FAILED = 26
    XML_ERROR = 27
    DOM_EXIST = 28
    OPERATION_DENIED = 29
    OPEN_FAILED = 30
    READ_FAILED = 31
    PARSE_FAILED = 32
    CONF_SYNTAX = 33
    WRITE_FAILED = 34
    XML_DETAIL = 35
    INVALID_NETWORK = 36
    NETWORK_EXIST = 37
    SYSTEM_ERROR = 38
    RPC = 39
    GNUTLS_ERROR = 40
    WAR_NO_NETWORK = 41
    NO_DOMAIN = 42
    NO_NETWORK = 43
    INVALID_MAC = 44
    AUTH_FAILED = 45
    OPERATION_INVALID = 55
    OPERATION_TIMEOUT = 68


# (message with the detail, message without it). libvirt's texts, with two fixes decided in
# DESIGN.md: INVALID_ARG no longer reuses INVALID_DOMAIN's text, and each INVALID_* message says
# what was invalid through the appended detail.
_MESSAGES: dict[ErrorNumber, tuple[str, str]] = {
    ErrorNumber.OK: ("%s", ""),
    ErrorNumber.INTERNAL_ERROR: ("internal error %s", "internal error"),
    ErrorNumber.NO_MEMORY: ("out of memory %s", "out of memory"),
    ErrorNumber.NO_SUPPORT: ("no support for hypervisor %s", "no support for hypervisor"),
    ErrorNumber.UNKNOWN_HOST: ("unknown host %s", "unknown host"),
    ErrorNumber.NO_CONNECT: ("could not connect to %s", "could not connect to hypervisor"),
    ErrorNumber.INVALID_CONN: ("invalid connection pointer in %s", "invalid connection pointer"),
    ErrorNumber.INVALID_DOMAIN: ("invalid domain pointer in %s", "invalid domain pointer"),
    ErrorNumber.INVALID_ARG: ("invalid argument: %s", "invalid argument"),
    ErrorNumber.OPERATION_FAILED: ("operation failed: %s", "operation failed"),
    ErrorNumber.GET_FAILED: ("GET operation failed: %s", "GET operation failed"),
    ErrorNumber.POST_FAILED: ("POST operation failed: %s", "POST operation failed"),
    ErrorNumber.HTTP_ERROR: ("got unknown HTTP error code %s", "got unknown HTTP error code"),
    ErrorNumber.SEXPR_SERIAL: ("failed to serialize S-Expr: %s", "failed to serialize S-Expr"),
    ErrorNumber.NO_XEN: ("could not use Xen hypervisor entry %s",
                         "could not use Xen hypervisor entry"),
    ErrorNumber.XEN_CALL: ("failed Xen syscall %s", "failed Xen syscall"),
    ErrorNumber.OS_TYPE: ("unknown OS type %s", "unknown OS type"),
    ErrorNumber.NO_KERNEL: ("missing kernel information %s", "missing kernel information"),
    ErrorNumber.NO_ROOT: ("missing root device information in %s",
                          "missing root device information"),
    ErrorNumber.NO_SOURCE: ("missing source information for device %s",
                            "missing source information for device"),
    ErrorNumber.NO_TARGET: ("missing target information for device %s",
                            "missing target information for device"),
    ErrorNumber.NO_NAME: ("missing domain name information in %s",
                          "missing domain name information"),
    ErrorNumber.NO_OS: ("missing operating system information for %s",
                        "missing operating system information"),
    ErrorNumber.NO_DEVICE: ("missing devices information for %s",
                            "missing devices information"),
    ErrorNumber.NO_XENSTORE: ("could not connect to Xen Store %s",
                              "could not connect to Xen Store"),
    ErrorNumber.DRIVER_FULL: ("too many drivers registered in %s", "too many drivers registered"),
    ErrorNumber.CALL_FAILED: ("library call %s failed, possibly not supported",
                              "library call failed, possibly not supported"),
    ErrorNumber.XML_ERROR: ("XML description is invalid or not well formed: %s",
                            "XML description is invalid or not well formed"),
    ErrorNumber.DOM_EXIST: ("domain %s already exists", "this domain exists already"),
    ErrorNumber.OPERATION_DENIED: ("operation forbidden for read only access: %s",
                                   "operation forbidden for read only access"),
    ErrorNumber.OPEN_FAILED: ("failed to open %s", "failed to open configuration file"),
    ErrorNumber.READ_FAILED: ("failed to read %s", "failed to read configuration file"),
    ErrorNumber.PARSE_FAILED: ("failed to parse %s", "failed to parse configuration file"),
    ErrorNumber.CONF_SYNTAX: ("configuration file syntax error: %s",
                              "configuration file syntax error"),
    ErrorNumber.WRITE_FAILED: ("failed to write %s", "failed to write configuration file"),
    ErrorNumber.XML_DETAIL: ("parser error: %s", "parser error"),
    ErrorNumber.INVALID_NETWORK: ("invalid network pointer in %s", "invalid network pointer"),
    ErrorNumber.NETWORK_EXIST: ("network %s already exists", "this network exists already"),
    ErrorNumber.SYSTEM_ERROR: ("%s", "system error"),
    ErrorNumber.RPC: ("RPC error: %s", "RPC error"),
    ErrorNumber.GNUTLS_ERROR: ("GNUTLS call error: %s", "GNUTLS call error"),
    ErrorNumber.WAR_NO_NETWORK: ("Failed to find the network: %s", "Failed to find the network"),
    ErrorNumber.NO_DOMAIN: ("Domain not found: %s", "Domain not found"),
    ErrorNumber.NO_NETWORK: ("Network not found: %s", "Network not found"),
    ErrorNumber.INVALID_MAC: ("invalid MAC address: %s", "invalid MAC address"),
    ErrorNumber.AUTH_FAILED: ("authentication failed: %s", "authentication failed"),
    ErrorNumber.OPERATION_INVALID: ("Requested operation is not valid: %s",
                                    "Requested operation is not valid"),
    ErrorNumber.OPERATION_TIMEOUT: ("Timed out during operation: %s",
                                    "Timed out during operation"),
}

# What libvirt's default printer puts before the level word, per error domain.
_DOMAIN_PREFIX: dict[int, str] = {
    ErrorDomain.NONE: "",
    ErrorDomain.XEN: "Xen ",
    ErrorDomain.XEND: "Xen Daemon ",
    ErrorDomain.XENSTORE: "Xen Store ",
    ErrorDomain.SEXPR: "S-Expression ",
    ErrorDomain.XML: "XML ",
    ErrorDomain.DOM: "Domain ",
    ErrorDomain.RPC: "RPC ",
    ErrorDomain.PROXY: "proxy ",
    ErrorDomain.CONF: "Config ",
    ErrorDomain.STATS_LINUX: "Linux Stats ",
    ErrorDomain.URI: "URI ",
}


def format_message(code: int, info: str | None) -> tuple[str, str]:
    """Return ``(message, format)`` for ``code`` with ``info`` appended the libvirt way."""
    try:
        with_info, without = _MESSAGES[ErrorNumber(code)]
    except (ValueError, KeyError):
        with_info, without = ("unknown error %s", "unknown error")
    if info is None or info == "":
        return without, without
    return with_info.replace("%s", info, 1), with_info


class VirtError(Exception):
    """Every failure of aiovirt: libvirt's ``virError`` fields on a Python exception.

    ``str(err)`` is the human message. ``code`` is an :class:`ErrorNumber`, ``domain`` an
    :class:`ErrorDomain`; ``str1`` holds the unformatted message, ``str2`` the detail.
    """

    code: ErrorNumber | int
    domain: ErrorDomain | int
    level: ErrorLevel
    message: str
    conn: Any
    dom: Any
    str1: str | None
    str2: str | None
    str3: str | None
    int1: int
    int2: int

    def __init__(
        self,
        code: ErrorNumber | int,
        domain: ErrorDomain | int = ErrorDomain.NONE,
        info: str | None = None,
        *,
        level: ErrorLevel = ErrorLevel.ERROR,
        conn: Any = None,
        dom: Any = None,
        str3: str | None = None,
        int1: int = 0,
        int2: int = 0,
        message: str | None = None,
    ) -> None:
        try:
            self.code = ErrorNumber(code)
        except ValueError:
            self.code = int(code)
        try:
            self.domain = ErrorDomain(domain)
        except ValueError:
            self.domain = int(domain)
        formatted, fmt = format_message(code, info)
        self.message = message if message is not None else formatted
        self.level = level
        self.conn = conn
        self.dom = dom
        self.str1 = fmt
        self.str2 = info
        self.str3 = str3
        self.int1 = int1
        self.int2 = int2
        self._reported = False
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        code = self.code.name if isinstance(self.code, ErrorNumber) else self.code
        domain = self.domain.name if isinstance(self.domain, ErrorDomain) else self.domain
        return f"VirtError({code}, {domain}, {self.message!r})"

    def get_error_code(self) -> int:
        """Return the libvirt error number (libvirt-python's spelling)."""
        return int(self.code)

    def get_error_domain(self) -> int:
        """Return the libvirt error domain number."""
        return int(self.domain)

    def get_error_message(self) -> str:
        """Return the human message."""
        return self.message

    def as_tuple(self) -> tuple[int, int, str, int, str | None, str | None, str | None, int, int]:
        """Return libvirt-python's 9-tuple (code, domain, message, level, str1..3, int1, int2)."""
        return (int(self.code), int(self.domain), self.message, int(self.level),
                self.str1, self.str2, self.str3, self.int1, self.int2)

    def copy(self) -> VirtError:
        """Return an independent copy (libvirt's copy was shallow; ours is not).

        The copy shares no mutable state with ``self`` and carries no traceback, so resetting
        or changing one never touches the other.
        """
        clone = type(self).__new__(type(self), *self.args)
        clone.args = self.args
        clone.__dict__.update(self.__dict__)
        clone._reported = False
        return clone

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as cls(*args), which our signature does not accept; rebuild from
        # the fields instead. The live conn/dom objects do not travel.
        state = dict(self.__dict__, conn=None, dom=None)
        return (_rebuild_error, (type(self), self.args, state))


def _rebuild_error(
    cls: type[VirtError], args: tuple[Any, ...], state: dict[str, Any]
) -> VirtError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


ErrorHandler: TypeAlias = Callable[[Any, VirtError], "Awaitable[None] | None"]


class ErrorSink(Protocol):
    """What :func:`report` needs from a connection: its last-error slot and its handler."""

    _last_error: VirtError | None
    _error_handler: tuple[ErrorHandler, Any] | None


# The task's last error. The value carries (a weak reference to) the task it belongs to: a task
# started from another copies its context, and must still start with no error of its own. A weak
# reference rather than id(): a dead ancestor's id may be reused by a new task.
_NO_TASK: Callable[[], object] = lambda: None  # noqa: E731 - owner mark: outside any task
_task_error: contextvars.ContextVar[tuple[Callable[[], object], VirtError] | None] = (
    contextvars.ContextVar("aiovirt_last_error", default=None)
)
_global_handler: tuple[ErrorHandler, Any] | None = None


def _current_task() -> object | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def get_last_error() -> VirtError | None:
    """Return the last error raised in the current task (or thread outside asyncio), or None."""
    value = _task_error.get()
    if value is None:
        return None
    owner, err = value
    task = _current_task()
    if owner is _NO_TASK:
        return err if task is None else None
    return err if task is not None and owner() is task else None


def reset_last_error() -> None:
    """Forget the current task's last error."""
    _task_error.set(None)


def copy_last_error() -> VirtError | None:
    """Return an independent copy of the current task's last error, or None."""
    err = get_last_error()
    return err.copy() if err is not None else None


def _store_task_error(err: VirtError) -> None:
    task = _current_task()
    _task_error.set((_NO_TASK if task is None else weakref.ref(task), err))


def set_error_handler(func: ErrorHandler | None, ctx: Any = None) -> None:
    """Install the process-wide handler ``func(ctx, err)``; ``None`` restores the default.

    ``func`` may be a plain function or a coroutine function; an async handler is awaited
    before the error propagates to the caller.
    """
    global _global_handler
    _global_handler = None if func is None else (func, ctx)


def default_error_handler(err: VirtError) -> None:
    """Write libvirt's one-line report of ``err`` to stderr."""
    prefix = _DOMAIN_PREFIX.get(int(err.domain), "")
    level = {ErrorLevel.ERROR: "error", ErrorLevel.WARNING: "warning"}.get(err.level, "")
    dom_name = ""
    if err.dom is not None and err.code != ErrorNumber.INVALID_DOMAIN:
        dom_name = str(getattr(err.dom, "name", "") or "")
    line = f"libvir: {prefix}{level} {dom_name}: {err.message}"
    if not line.endswith("\n"):
        line += "\n"
    sys.stderr.write(line)


async def report(err: VirtError, conn: ErrorSink | None = None) -> None:
    """Record ``err`` as the last error and dispatch it to the winning handler.

    The connection's handler wins over the global one, which wins over
    :func:`default_error_handler`. A handler that raises is logged; it never replaces ``err``.
    The caller raises ``err`` afterwards.
    """
    if err.code == ErrorNumber.OK or err._reported:
        return
    err._reported = True
    if conn is not None:
        if err.conn is None:
            err.conn = conn
        conn._last_error = err
    _store_task_error(err)
    handler = conn._error_handler if conn is not None else None
    if handler is None:
        handler = _global_handler
    if handler is None:
        try:
            default_error_handler(err)
        except Exception:
            log.exception("default error handler failed")
        return
    func, ctx = handler
    try:
        result = func(ctx, err)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("error handler %r failed while handling %r", func, err)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S")


def reporting(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]:
    """Decorate a public async method so that a :class:`VirtError` it raises is reported once.

    The object's ``_error_sink()`` names the connection whose slot and handler apply (or None
    for the global ones). Nested public calls report the error only at the innermost seam.
    """

    @functools.wraps(method)
    async def wrapper(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except VirtError as err:
            sink = getattr(self, "_error_sink", None)
            await report(err, sink() if sink is not None else None)
            raise

    return cast("Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]", wrapper)
