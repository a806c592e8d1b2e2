"""Block and network device statistics as a Xen dom0 shows them: the files, read without I/O.

On a dom0, each block backend has a sysfs directory
``/sys/bus/xen-backend/devices/vbd-<domid>-<devnum>/statistics/`` holding one decimal counter
per file (``rd_req``, ``rd_sect``, ``wr_req``, ``wr_sect``, ``oo_req``, ...), and each network
backend is a netdev ``vif<domid>.<n>`` with a line in ``/proc/net/dev``. Xen's ``xentop`` and
libvirt's Xen driver read exactly these; this module turns their text into values (and writes
the same text for the simulated node, so one format serves both ends).

Directions and units follow libvirt's ``virDomainBlockStats`` / ``virDomainInterfaceStats``:

- block: requests are counted, bytes are sectors x 512, ``errs`` is blkback's ``oo_req``
  (requests that had to wait because the ring was full: libvirt's Xen driver reported it as
  ``errs``);
- network: the numbers are **the guest's** view. A vif is dom0's end of the guest's link, so
  what the vif *receives* the guest has *transmitted*: the guest's ``tx_*`` are the vif's
  receive columns and the guest's ``rx_*`` the vif's transmit columns (libvirt swaps them the
  same way).

Devices are named as libvirt names them: a disk by its target (``sda1``, ``hdb``, ``xvda``),
turned into Linux's device number (``sda1`` -> 8:1 = 2049) as xend and the backend directory
name do; an interface by its backend name ``vif<domid>.<n>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError

__all__ = [
    "PROC_NET_DEV_HEADER",
    "SECTOR_BYTES",
    "VBD_COUNTERS",
    "VBD_DEVICES_DIR",
    "BlockStats",
    "DeviceStats",
    "InterfaceStats",
    "VifCounters",
    "blkdev_name",
    "blkdev_number",
    "block_stats",
    "format_proc_net_dev",
    "parse_counter",
    "parse_proc_net_dev",
    "parse_vbd_dirname",
    "parse_vif_name",
    "vbd_dirname",
    "vif_name",
]

SECTOR_BYTES = 512
# Where the backends' sysfs directories are, relative to the root of the file system.
VBD_DEVICES_DIR = "sys/bus/xen-backend/devices"
PROC_NET_DEV = "proc/net/dev"
# The counters blkback keeps per device (Linux 2.6.18 to 6.x; f_req and ds_req came later).
VBD_COUNTERS = ("oo_req", "rd_req", "wr_req", "f_req", "ds_req", "rd_sect", "wr_sect")
# The two header lines of /proc/net/dev, byte for byte: xentop refuses any other header.
PROC_NET_DEV_HEADER = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|"
    "bytes    packets errs drop fifo colls carrier compressed\n"
)


def _bad(message: str) -> VirtError:
    return VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.STATS_LINUX, message)


class BlockStats(NamedTuple):
    """A block device's counters (libvirt's ``virDomainBlockStats``): bytes, not sectors."""

    rd_req: int
    rd_bytes: int
    wr_req: int
    wr_bytes: int
    errs: int


class InterfaceStats(NamedTuple):
    """A network interface's counters as the guest sees them (``virDomainInterfaceStats``).

    ``rx_*`` is what the guest received (what its vif transmitted), ``tx_*`` what it sent.
    """

    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_drop: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_drop: int


class DeviceStats(NamedTuple):
    """One domain's device counters: block devices by target name, interfaces by vif name."""

    block: dict[str, BlockStats]
    interfaces: dict[str, InterfaceStats]


class VifCounters(NamedTuple):
    """One ``/proc/net/dev`` line's sixteen columns, in dom0's direction (as the file has)."""

    rx_bytes: int
    rx_packets: int
    rx_errs: int
    rx_drop: int
    rx_fifo: int
    rx_frame: int
    rx_compressed: int
    rx_multicast: int
    tx_bytes: int
    tx_packets: int
    tx_errs: int
    tx_drop: int
    tx_fifo: int
    tx_colls: int
    tx_carrier: int
    tx_compressed: int

    def guest_view(self) -> InterfaceStats:
        """Return the counters from the guest's side of the link (receive and transmit swapped)."""
        return InterfaceStats(self.tx_bytes, self.tx_packets, self.tx_errs, self.tx_drop,
                              self.rx_bytes, self.rx_packets, self.rx_errs, self.rx_drop)


# -- block devices --------------------------------------------------------------------------

_BLKDEV = re.compile(r"(sd|hd|xvd)([a-z]{1,2})(\d*)\Z")
# IDE: two disks per major (hda/hdb on 3, hdc/hdd on 22, ...), 64 minors each.
_IDE_MAJORS = (3, 3, 22, 22, 33, 33, 34, 34, 56, 56, 57, 57, 88, 88, 89, 89, 90, 90, 91, 91)
# SCSI disks 0-15 on major 8, then 16 per major on 65..71, 128..135.
_SCSI_MAJORS = (8, 65, 66, 67, 68, 69, 70, 71, 128, 129, 130, 131, 132, 133, 134, 135)
_XVD_MAJOR = 202
_XVD_EXTENDED = 1 << 28  # Xen's extended scheme for xvd disks past xvdp


def _disk_index(letters: str) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - ord("a") + 1)
    return index - 1


def _disk_letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(ord("a") + rem) + out
    return out


def blkdev_number(target: str) -> int:
    """Return the device number of disk ``target`` (``sda1`` -> 2049), as xend and blkback use.

    Accepts ``sdX[N]``, ``hdX[N]``, ``xvdX[N]`` (also two-letter disks where Linux has them)
    and a plain device number. Raises :class:`VirtError` ``INVALID_ARG`` naming ``target``.
    """
    if not isinstance(target, str) or not target:
        raise _bad(f"block device name must be a non-empty string, not {target!r}")
    name = target.removeprefix("/dev/")
    if name.isdigit() and name.isascii():
        return int(name)
    m = _BLKDEV.match(name)
    if m is None:
        raise _bad(f"{target!r} is not a block device name (sdX, hdX, xvdX or a number)")
    kind, disk, part = m.group(1), _disk_index(m.group(2)), int(m.group(3) or 0)
    if kind == "hd":
        if disk >= len(_IDE_MAJORS) or part > 63:
            raise _bad(f"{target!r} is not an IDE disk Linux knows")
        return _IDE_MAJORS[disk] * 256 + (disk % 2) * 64 + part
    if kind == "sd":
        if disk >= 16 * len(_SCSI_MAJORS) or part > 15:
            raise _bad(f"{target!r} is not a SCSI disk Linux knows")
        return _SCSI_MAJORS[disk // 16] * 256 + (disk % 16) * 16 + part
    if disk < 16 and part <= 15:
        return _XVD_MAJOR * 256 + disk * 16 + part
    if part > 255 or disk >= 1 << 20:
        raise _bad(f"{target!r} is not a Xen virtual disk")
    return _XVD_EXTENDED | (disk << 8) | part


def blkdev_name(number: int) -> str | None:
    """Return the disk name of device number ``number`` (2049 -> ``sda1``), None if unknown.

    The inverse of :func:`blkdev_number`, for naming the backends found in sysfs.
    """
    if number & _XVD_EXTENDED:
        disk, part = (number >> 8) & 0xFFFFF, number & 0xFF
        return f"xvd{_disk_letters(disk)}{part or ''}"
    major, minor = number >> 8, number & 0xFF
    if major == _XVD_MAJOR:
        disk, part = minor >> 4, minor & 15
        return f"xvd{_disk_letters(disk)}{part or ''}"
    if major in _SCSI_MAJORS:
        disk, part = _SCSI_MAJORS.index(major) * 16 + (minor >> 4), minor & 15
        return f"sd{_disk_letters(disk)}{part or ''}"
    if major in _IDE_MAJORS:
        disk = _IDE_MAJORS.index(major) + (minor >> 6)
        part = minor & 63
        return f"hd{_disk_letters(disk)}{part or ''}"
    return None


def vbd_dirname(domid: int, devnum: int) -> str:
    """Return the sysfs directory name of domain ``domid``'s block backend ``devnum``."""
    return f"vbd-{domid}-{devnum}"


_VBD_DIR = re.compile(r"(vbd|tap)-(\d+)-(\d+)\Z")


def parse_vbd_dirname(name: str) -> tuple[int, int] | None:
    """Return ``(domid, devnum)`` of a ``vbd-<domid>-<devnum>`` (or blktap ``tap-``) name."""
    m = _VBD_DIR.match(name)
    if m is None:
        return None
    return int(m.group(2)), int(m.group(3))


def parse_counter(text: bytes | str, what: str = "counter") -> int:
    """Return the unsigned decimal counter in a sysfs file's text (``"123\\n"``)."""
    if isinstance(text, bytes):
        digits = text.strip()
        if digits.isdigit():  # ASCII digits only, as bytes
            return int(digits)
        text = text.decode("ascii", "replace")
    value = text.strip()
    if not value.isdigit() or not value.isascii():
        raise VirtError(ErrorNumber.OPERATION_FAILED, ErrorDomain.STATS_LINUX,
                        f"{what} holds {text[:40]!r}, not a counter")
    return int(value)


def block_stats(counters: Mapping[str, int]) -> BlockStats:
    """Return libvirt's block statistics from blkback's counters (sectors become bytes).

    A counter missing from ``counters`` (an older blkback) counts as 0.
    """
    get = counters.get
    return BlockStats(get("rd_req", 0), get("rd_sect", 0) * SECTOR_BYTES, get("wr_req", 0),
                      get("wr_sect", 0) * SECTOR_BYTES, get("oo_req", 0))


# -- network devices ------------------------------------------------------------------------

_VIF = re.compile(r"vif(\d+)\.(\d+)\Z")


def vif_name(domid: int, devid: int) -> str:
    """Return the backend netdev name of domain ``domid``'s interface ``devid``."""
    return f"vif{domid}.{devid}"


def parse_vif_name(name: str) -> tuple[int, int] | None:
    """Return ``(domid, devid)`` of a ``vif<domid>.<n>`` name, None for any other name."""
    m = _VIF.match(name)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def parse_proc_net_dev(text: bytes | str) -> dict[str, VifCounters]:
    """Return every interface's sixteen counters from ``/proc/net/dev``'s text, by name.

    The two header lines and any line without ``name:`` followed by sixteen numbers are
    skipped (a line cut short by a concurrent rewrite must not pass as zeros).
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    out: dict[str, VifCounters] = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        fields = rest.split()
        if len(fields) != 16:
            continue
        try:
            out[name.strip()] = VifCounters._make(map(int, fields))
        except ValueError:
            continue
    return out


def format_proc_net_dev(lines: Iterable[tuple[str, VifCounters]]) -> str:
    """Return ``/proc/net/dev``'s text for ``(name, counters)`` pairs, laid out as Linux does."""
    out = [PROC_NET_DEV_HEADER]
    for name, c in lines:
        out.append(
            f"{name:>6}:{c[0]:8d} {c[1]:7d} {c[2]:4d} {c[3]:4d} {c[4]:4d} {c[5]:5d} "
            f"{c[6]:10d} {c[7]:9d} {c[8]:8d} {c[9]:7d} {c[10]:4d} {c[11]:4d} {c[12]:4d} "
            f"{c[13]:5d} {c[14]:7d} {c[15]:10d}\n")
    return "".join(out)
