"""What a simulated node starts with: its sockets claimed and a seeded population of guests.

A fresh node has Domain-0 and ``count`` running guests (``vm1``, ``vm2`` ...) whose sizes, loads
and up-times come from the node's random generator, so one seed always gives the same node; the
host's memory fits them with room to spare.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import stat

from aiovirt.sim.config import random_mac, random_uuid
from aiovirt.sim.domain import DOM0_UUID, SimDomain, Vbd, Vif

log = logging.getLogger(__name__)

__all__ = [
    "DOM0_KIB",
    "MAX_SOCKET_PATH",
    "SimDirInUse",
    "claim_socket_path",
    "host_memory_kib",
    "initial_dom0",
    "initial_guests",
    "remove_socket",
]

MAX_SOCKET_PATH = 107
DOM0_KIB = 2048 * 1024

_KERNEL = "/boot/vmlinuz-2.6.16.29-xen"
_RAMDISK = "/boot/initrd-2.6.16.29-xen.img"


class SimDirInUse(RuntimeError):
    """The node's directory holds a socket that a live server still answers on."""


def initial_guests(rng: random.Random, count: int, now: float, wall: float) -> list[SimDomain]:
    """Return ``count`` running guests with ids 1..count, drawn from ``rng``."""
    guests: list[SimDomain] = []
    for i in range(1, count + 1):
        mem = rng.choice((128, 256, 256, 384, 512, 512, 768, 1024)) * 1024
        maxmem = mem if rng.random() < 0.7 else mem * 2
        vcpus = rng.choice((1, 1, 1, 2, 2, 4))
        busy = rng.random() < 0.25
        load = rng.uniform(0.3, 0.9) if busy else rng.uniform(0.002, 0.03)
        uptime = rng.uniform(60.0, 3 * 86400.0)
        name = f"vm{i}"
        dom = SimDomain(
            domid=i, name=name, uuid=random_uuid(rng), vcpus=vcpus, memory_kib=mem,
            maxmem_kib=maxmem, busy=busy, load=load,
            cpu_ns_base=int(uptime * load * vcpus * 1e9), run_since=now,
            start_time=round(wall - uptime, 2),
            image=["linux", ["kernel", _KERNEL], ["ramdisk", _RAMDISK],
                   ["root", "/dev/sda1 ro"]],
            vbds=[Vbd(2049, "sda1", f"file:/var/lib/xen/images/{name}.img")],
            vifs=[Vif(0, random_mac(rng))],
            store_mfn=0x3FFFE - 2 * i, console_mfn=0x3FFFD - 2 * i,
        )
        guests.append(dom)
    return guests


def initial_dom0(rng: random.Random, now: float) -> SimDomain:
    """Return Domain-0, up for a while already (its CPU time drawn from ``rng``)."""
    return SimDomain(
        domid=0, name="Domain-0", uuid=DOM0_UUID, vcpus=2, memory_kib=DOM0_KIB,
        maxmem_kib=DOM0_KIB, busy=True, load=0.05, run_since=now,
        cpu_ns_base=int(rng.uniform(100.0, 5000.0) * 1e9),
    )


def host_memory_kib(guests: list[SimDomain]) -> int:
    """Return the memory of a host that holds Domain-0 and ``guests`` with 8 GiB to spare."""
    used = sum(d.maxmem_kib for d in guests)
    return (DOM0_KIB + used + 8 * 1024 * 1024) // 1024 * 1024


def claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new server: remove a stale socket, refuse a live one."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SimDirInUse(f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SimDirInUse(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        log.info("removed stale socket %s", path)
        return
    except OSError as exc:
        raise SimDirInUse(f"cannot probe socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise SimDirInUse(
        f"{path} is in use by a running server; stop it or choose another directory")


def remove_socket(path: str) -> None:
    """Remove ``path`` if it is a socket (a server's leftover); leave any other file."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
