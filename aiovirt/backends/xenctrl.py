"""The ``xenctrl`` hypervisor driver: ctypes on Debian's libxenctrl (Xen 4.17).

Blocking calls, made from the hypervisor executor's worker threads (ctypes releases the GIL for
the duration of each foreign call, so calls in different threads run in parallel; a libxenctrl
handle opened without ``XC_OPENFLAG_NON_REENTRANT`` may be shared between threads).

The structures are those of the installed headers: ``xc_domaininfo_t`` is
``struct xen_domctl_getdomaininfo`` of ``XEN_DOMCTL_INTERFACE_VERSION`` 0x15 and ``xc_physinfo_t``
is ``struct xen_sysctl_physinfo``; :data:`LAYOUTS` names every field this binding relies on so a
test can compare each offset and size with a C probe compiled against ``libxen-dev``. Because the
domctl ABI changes between Xen releases, only the library of the release these layouts describe
(:data:`SONAME`) is loaded.

libxenctrl reports failures through a ``xentoollog_logger``; this module installs its own, which
keeps the last message of the calling thread (to put in the error) and sends it to ``logging``
instead of stderr.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import threading
from typing import Any

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.privcmd import DomainInfoRecord, PhysInfo
from aiovirt.protocol.xen import DOMID_FIRST_RESERVED

log = logging.getLogger(__name__)

__all__ = [
    "LAYOUTS", "SONAME", "XcDomainInfo", "XcPhysInfo", "XenctrlDriver", "load_library",
    "records_of",
]

SONAME = "libxenctrl.so.4.17"
XENVER_VERSION = 0
XENVER_EXTRAVERSION = 1
XEN_EXTRAVERSION_LEN = 16


class XcDomainInfo(ctypes.Structure):
    """``xc_domaininfo_t`` (``struct xen_domctl_getdomaininfo``, domctl interface 0x15)."""

    _fields_ = [
        ("domain", ctypes.c_uint16),
        ("pad1", ctypes.c_uint16),
        ("flags", ctypes.c_uint32),
        ("tot_pages", ctypes.c_uint64),
        ("max_pages", ctypes.c_uint64),
        ("outstanding_pages", ctypes.c_uint64),
        ("shr_pages", ctypes.c_uint64),
        ("paged_pages", ctypes.c_uint64),
        ("shared_info_frame", ctypes.c_uint64),
        ("cpu_time", ctypes.c_uint64),
        ("nr_online_vcpus", ctypes.c_uint32),
        ("max_vcpu_id", ctypes.c_uint32),
        ("ssidref", ctypes.c_uint32),
        ("handle", ctypes.c_uint8 * 16),
        ("cpupool", ctypes.c_uint32),
        ("gpaddr_bits", ctypes.c_uint8),
        ("pad2", ctypes.c_uint8 * 7),
        # struct xen_arch_domainconfig on x86: emulation_flags, misc_flags.
        ("arch_config", ctypes.c_uint32 * 2),
    ]


class XcPhysInfo(ctypes.Structure):
    """``xc_physinfo_t`` (``struct xen_sysctl_physinfo``)."""

    _fields_ = [
        ("threads_per_core", ctypes.c_uint32),
        ("cores_per_socket", ctypes.c_uint32),
        ("nr_cpus", ctypes.c_uint32),
        ("max_cpu_id", ctypes.c_uint32),
        ("nr_nodes", ctypes.c_uint32),
        ("max_node_id", ctypes.c_uint32),
        ("cpu_khz", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("arch_capabilities", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("total_pages", ctypes.c_uint64),
        ("free_pages", ctypes.c_uint64),
        ("scrub_pages", ctypes.c_uint64),
        ("outstanding_pages", ctypes.c_uint64),
        ("max_mfn", ctypes.c_uint64),
        ("hw_cap", ctypes.c_uint32 * 8),
    ]


# C type name -> (ctypes structure, the fields this binding reads or whose place it depends on).
LAYOUTS: dict[str, tuple[type[ctypes.Structure], tuple[str, ...]]] = {
    "xc_domaininfo_t": (XcDomainInfo, (
        "domain", "flags", "tot_pages", "max_pages", "shared_info_frame", "cpu_time",
        "nr_online_vcpus", "max_vcpu_id", "ssidref", "handle", "arch_config",
    )),
    "xc_physinfo_t": (XcPhysInfo, (
        "threads_per_core", "cores_per_socket", "nr_cpus", "nr_nodes", "cpu_khz",
        "total_pages", "free_pages", "hw_cap",
    )),
}


def records_of(buf: ctypes.Array[XcDomainInfo], count: int) -> list[DomainInfoRecord]:
    """Return the first ``count`` entries of an ``xc_domaininfo_t`` array as records."""
    return [
        DomainInfoRecord(
            info.domain, info.flags, info.tot_pages, info.max_pages, info.shared_info_frame,
            info.cpu_time, info.nr_online_vcpus, info.max_vcpu_id, info.ssidref,
            bytes(info.handle),
        )
        for info in buf[:count]
    ]


_VMESSAGE = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
    ctypes.c_void_p,
)
_PROGRESS = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_ulong,
    ctypes.c_ulong,
)
_DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Logger(ctypes.Structure):
    """``struct xentoollog_logger``: three callbacks."""

    _fields_ = [("vmessage", _VMESSAGE), ("progress", _PROGRESS), ("destroy", _DESTROY)]


_XTL_DETAIL = 3
_XTL_WARN = 7
_last_message = threading.local()
_libc = ctypes.CDLL(None)
# On x86-64 a va_list argument arrives as a pointer that vsnprintf accepts as it is; elsewhere
# the format string alone is kept.
_CAN_FORMAT = platform.machine() in ("x86_64", "AMD64") and hasattr(_libc, "vsnprintf")


def _vmessage(_logger: Any, level: int, errnoval: int, context: bytes | None,
              fmt: bytes | None, args: int | None) -> None:
    text = (fmt or b"").decode(errors="replace")
    if _CAN_FORMAT and fmt is not None and args is not None:
        buf = ctypes.create_string_buffer(1024)
        if _libc.vsnprintf(buf, ctypes.c_size_t(len(buf)), fmt, ctypes.c_void_p(args)) >= 0:
            text = buf.value.decode(errors="replace")
    where = (context or b"xc").decode(errors="replace")
    # libxenctrl explains some failures only at its DETAIL level (a wrong interface version:
    # "need to rebuild the user-space tool set?"), so the messages of the current call from
    # DETAIL up are kept for its error, the most severe last.
    if level >= _XTL_DETAIL:
        kept: list[tuple[int, str]] | None = getattr(_last_message, "texts", None)
        if kept is None:
            kept = _last_message.texts = []
        if len(kept) < 8:
            kept.append((level, f"{where}: {text}"))
    log.debug("libxenctrl %s (level %d, errno %d): %s", where, level, errnoval, text)


def _progress(*_args: Any) -> None:
    return None


def _destroy(_logger: Any) -> None:
    return None


_LOGGER = _Logger(_VMESSAGE(_vmessage), _PROGRESS(_progress), _DESTROY(_destroy))


def load_library(soname: str = SONAME) -> ctypes.CDLL:
    """Return libxenctrl with the prototypes this binding uses declared.

    Raises :class:`VirtError` ``NO_XEN`` when the library is not installed.
    """
    try:
        lib = ctypes.CDLL(soname, use_errno=True)
    except OSError as exc:
        raise VirtError(
            ErrorNumber.NO_XEN, ErrorDomain.XEN,
            f"{soname}: the Xen control library is not installed ({exc})",
        ) from exc
    vp, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    lib.xc_interface_open.argtypes = [ctypes.POINTER(_Logger), ctypes.POINTER(_Logger),
                                      ctypes.c_uint]
    lib.xc_interface_open.restype = vp
    lib.xc_interface_close.argtypes = [vp]
    lib.xc_interface_close.restype = cint
    lib.xc_domain_getinfolist.argtypes = [vp, u32, ctypes.c_uint, ctypes.POINTER(XcDomainInfo)]
    lib.xc_domain_getinfolist.restype = cint
    for name in ("xc_domain_pause", "xc_domain_unpause", "xc_domain_destroy"):
        func = getattr(lib, name)
        func.argtypes = [vp, u32]
        func.restype = cint
    lib.xc_domain_setmaxmem.argtypes = [vp, u32, ctypes.c_uint64]
    lib.xc_domain_setmaxmem.restype = cint
    lib.xc_version.argtypes = [vp, cint, vp]
    lib.xc_version.restype = cint
    lib.xc_physinfo.argtypes = [vp, ctypes.POINTER(XcPhysInfo)]
    lib.xc_physinfo.restype = cint
    return lib


def _reset_messages() -> None:
    """Forget the messages libxenctrl logged in this thread before the coming call."""
    _last_message.texts = []


def _failure(call: str) -> OSError:
    """Return the ``OSError`` for a failed libxenctrl call, with what it logged for it."""
    code = ctypes.get_errno() or errno.EIO
    kept: list[tuple[int, str]] = getattr(_last_message, "texts", None) or []
    _last_message.texts = []
    detail = os.strerror(code)
    if kept:
        ordered = sorted(kept, key=lambda item: item[0])  # stable: same level keeps its order
        detail = f"{detail} ({'; '.join(text for _level, text in ordered)})"
    return OSError(code, f"{call}: {detail}")


class XenctrlDriver:
    """A libxenctrl interface handle; blocking calls, safe to use from several threads."""

    name = "xenctrl"

    def __init__(self, lib: ctypes.CDLL, handle: int) -> None:
        self._lib = lib
        self._handle: int | None = handle
        # Domains seen by the last full listing: the size of the next request (see getinfolist).
        self._expected = 64

    @classmethod
    def open(cls, soname: str = SONAME) -> XenctrlDriver:
        """Return a driver on a new libxenctrl handle.

        Raises :class:`VirtError` ``NO_XEN`` (saying why) when the library is missing or no
        hypervisor can be reached (no ``/dev/xen/privcmd``, not root, not a Xen dom0).
        """
        lib = load_library(soname)
        _reset_messages()
        handle = lib.xc_interface_open(ctypes.byref(_LOGGER), ctypes.byref(_LOGGER), 0)
        if not handle:
            err = _failure("xc_interface_open")
            raise VirtError(
                ErrorNumber.NO_XEN, ErrorDomain.XEN,
                f"through {soname}: no Xen hypervisor is reachable on this machine "
                f"(needs a Xen dom0 with /dev/xen/privcmd, as root): {err.strerror}",
                int1=err.errno or 0,
            ) from err
        return cls(lib, handle)

    def close(self) -> None:
        """Close the libxenctrl handle (idempotent)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._lib.xc_interface_close(handle)

    def _xch(self) -> int:
        if self._handle is None:
            raise OSError(errno.EBADF, "the libxenctrl handle is closed")
        return self._handle

    def getinfolist(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of the domains with id >= ``first_domid``.

        libxenctrl copies the whole array through a hypercall bounce buffer on each call, so the
        request is sized from what the node had at the last full listing (one more, so an
        unchanged node is answered by one call that comes back short) and doubles while
        replies come back full, instead of asking ``max_count`` (8,192 from the executor) each
        time.
        """
        records: list[DomainInfoRecord] = []
        first = first_domid
        want = max(1, min(max_count, self._expected + 1 if first_domid == 0 else max_count))
        xch = self._xch()
        while len(records) < max_count:
            count = min(want, max_count - len(records))
            buf = (XcDomainInfo * count)()
            _reset_messages()
            n = self._lib.xc_domain_getinfolist(xch, first, count, buf)
            if n < 0:
                raise _failure("xc_domain_getinfolist")
            page = records_of(buf, n)
            records.extend(page)
            if n < count or not page:
                break
            first = page[-1].domid + 1
            if first >= DOMID_FIRST_RESERVED:
                break
            want = count * 2
        if first_domid == 0 and len(records) < max_count:
            self._expected = len(records)
        return records

    def _domain_op(self, name: str, domid: int) -> None:
        _reset_messages()
        if getattr(self._lib, name)(self._xch(), domid) < 0:
            raise _failure(name)

    def pause(self, domid: int) -> None:
        """Pause domain ``domid`` (``xc_domain_pause``)."""
        self._domain_op("xc_domain_pause", domid)

    def unpause(self, domid: int) -> None:
        """Unpause domain ``domid`` (``xc_domain_unpause``)."""
        self._domain_op("xc_domain_unpause", domid)

    def destroy(self, domid: int) -> None:
        """Destroy domain ``domid`` (``xc_domain_destroy``)."""
        self._domain_op("xc_domain_destroy", domid)

    def set_max_mem(self, domid: int, kib: int) -> None:
        """Set the memory limit of domain ``domid`` to ``kib`` KiB (``xc_domain_setmaxmem``)."""
        _reset_messages()
        if self._lib.xc_domain_setmaxmem(self._xch(), domid, kib) < 0:
            raise _failure("xc_domain_setmaxmem")

    def version(self) -> tuple[int, int, str]:
        """Return the running hypervisor's ``(major, minor, extra)`` (``xc_version``)."""
        xch = self._xch()
        _reset_messages()
        ver = self._lib.xc_version(xch, XENVER_VERSION, None)
        if ver < 0:
            raise _failure("xc_version")
        extra = ctypes.create_string_buffer(XEN_EXTRAVERSION_LEN)
        if self._lib.xc_version(xch, XENVER_EXTRAVERSION, extra) < 0:
            raise _failure("xc_version")
        return ver >> 16, ver & 0xFFFF, extra.value.decode(errors="replace")

    def physinfo(self) -> PhysInfo:
        """Return the node's physical description (``xc_physinfo``)."""
        info = XcPhysInfo()
        _reset_messages()
        if self._lib.xc_physinfo(self._xch(), ctypes.byref(info)) < 0:
            raise _failure("xc_physinfo")
        return PhysInfo(info.nr_cpus, info.nr_nodes, info.cores_per_socket,
                        info.threads_per_core, info.cpu_khz, info.total_pages, info.free_pages)
