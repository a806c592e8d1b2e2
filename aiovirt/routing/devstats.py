"""What the face needs from the dom0's statistics files: its answer to the device calls.

Block and interface statistics have one source, the files under the connection's statistics
root (:class:`~aiovirt.backends.devstats.DeviceStatsReader`), so their routes have one backend;
the router checks that the domain is still there (one coalesced info) before reading.
Devices are named as libvirt names them: a disk by its target (``sda1``), an interface by its
backend name ``vif<domid>.<n>``; anything else is ``INVALID_ARG`` naming the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiovirt.backends.devstats import DeviceStatsReader
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.devstats import (
    BlockStats,
    DeviceStats,
    InterfaceStats,
    blkdev_name,
    blkdev_number,
    parse_vif_name,
)
from aiovirt.routing.identity import Identity

__all__ = ["DeviceStatsRoutes"]


# A node's disks use a handful of device numbers (sda1 for every guest, say); past this many
# distinct ones the names are worked out afresh.
_NAMES_KEPT = 1024


def _invalid(message: str) -> VirtError:
    return VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.DOM, message)


class DeviceStatsRoutes:
    """The device statistics answers of one connection, read under its statistics root."""

    def __init__(self, reader: DeviceStatsReader) -> None:
        """Answer from ``reader`` (owned by the connection)."""
        self.reader = reader
        self._names: dict[int, str] = {}  # device number -> disk name, as met

    async def close(self) -> None:
        """Close the reader (its forming snapshot fails, the running one is awaited)."""
        await self.reader.close()

    async def block_stats(self, ident: Identity, device: str) -> BlockStats:
        """Return ``ident``'s disk ``device``'s counters; INVALID_ARG for an unknown disk."""
        try:
            devnum = blkdev_number(device)
        except VirtError as err:
            raise _invalid(f"block device {device!r} of domain {ident.name!r}: "
                           f"{err.str2}") from err
        stats = await self.reader.block_stats(ident.id, devnum)
        if stats is None:
            raise _invalid(f"domain {ident.name!r} has no block device {device!r}")
        return stats

    def check_interface(self, ident: Identity, device: object) -> None:
        """Raise INVALID_ARG unless ``device`` names one of ``ident``'s vifs (no I/O)."""
        ids = parse_vif_name(device) if isinstance(device, str) else None
        if ids is None:
            raise _invalid(f"interface {device!r} of domain {ident.name!r} (Xen names it "
                           f"vif<domid>.<n>, e.g. vif{ident.id}.0)")
        if ids[0] != ident.id:
            raise _invalid(f"interface {device!r} is not domain {ident.name!r}'s (its id is "
                           f"{ident.id})")

    async def interface_stats(self, ident: Identity, device: str) -> InterfaceStats:
        """Return ``ident``'s vif ``device``'s counters (the guest's view)."""
        self.check_interface(ident, device)
        stats = (await self.reader.interface_stats(ident.id)).get(device)
        if stats is None:
            raise _invalid(f"domain {ident.name!r} has no interface {device!r}")
        return stats

    async def device_stats(self, idents: Sequence[Identity]) -> list[DeviceStats]:
        """Return each of ``idents``' device counters, in order, from one shared read."""
        snap = await self.reader.snapshot()
        names = self._names
        if len(names) > _NAMES_KEPT:
            names.clear()
        empty: dict[Any, Any] = {}
        out = []
        for ident in idents:
            block = {}
            for number, stats in snap.block.get(ident.id, empty).items():
                name = names.get(number)
                if name is None:
                    name = names[number] = blkdev_name(number) or str(number)
                block[name] = stats
            out.append(DeviceStats(block, dict(snap.net.get(ident.id, empty))))
        return out
