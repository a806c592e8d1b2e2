"""Reading a domain configuration as xend 3.0.3 did: ``op=create``'s S-expression into a domain.

The checks run in xend's order and fail with xend's messages (:class:`SimError`), so a client
sees the same refusal it would from the real toolstack.
"""

from __future__ import annotations

import random
import re
import time
import uuid as uuidlib
from collections.abc import Callable

from aiovirt.errors import VirtError
from aiovirt.protocol import devstats
from aiovirt.protocol.sexpr import SExpr, SexprError, dumps, parse_all
from aiovirt.sim.domain import SimDomain, Vbd, Vif
from aiovirt.sim.errors import SimError

__all__ = [
    "blkdev_number",
    "check_vm_name",
    "child",
    "domain_from_config",
    "parse_config",
    "py_int",
    "random_mac",
    "random_uuid",
    "value",
    "vbd_from_config",
]

RESTART_MODES = ("destroy", "restart", "preserve", "rename-restart")
DEVICE_CLASSES = ("vbd", "vif", "vtpm", "pci", "ioports", "irq", "usb", "tap")
VM_NAME = re.compile(r"[A-Za-z0-9_.:/+-]+\Z")


def py_int(text: object) -> int:
    """Return ``int(text)`` or raise :class:`SimError` with Python's message, as xend did."""
    try:
        return int(str(text).strip())
    except ValueError:
        raise SimError(f"invalid literal for int() with base 10: {str(text)!r}") from None


def blkdev_number(dev: str) -> int:
    """Return the Linux device number xend uses as a vbd's devid (``sda1`` -> 2049).

    The numbering is :func:`aiovirt.protocol.devstats.blkdev_number`'s, the one the block
    backends' statistics directories are named by; a name it refuses is xend's error.
    """
    try:
        return devstats.blkdev_number(dev)
    except VirtError:
        raise SimError(f"Invalid vbd device name: {dev}") from None


def child(expr: list[SExpr], key: str) -> list[SExpr] | None:
    """Return the first ``(key ...)`` list inside ``expr``, if any."""
    for item in expr[1:]:
        if isinstance(item, list) and item and item[0] == key:
            return item
    return None


def value(expr: list[SExpr], key: str, default: str | None = None) -> str | None:
    """Return the string of ``(key value)`` inside ``expr``: ``""`` for ``(key)``."""
    item = child(expr, key)
    if item is None:
        return default
    if len(item) < 2:
        return ""
    v = item[1]
    return v if isinstance(v, str) else default


def random_mac(rng: random.Random) -> str:
    """Return a MAC address in Xen's ``00:16:3e`` range, as xend picks one."""
    a, b, c = rng.randrange(0x80), rng.randrange(256), rng.randrange(256)
    return f"00:16:3e:{a:02x}:{b:02x}:{c:02x}"


def random_uuid(rng: random.Random) -> uuidlib.UUID:
    """Return a UUID as xend 3.0.x made one: 16 random bytes, no RFC 4122 version bits."""
    return uuidlib.UUID(bytes=rng.getrandbits(128).to_bytes(16, "big"))


def check_vm_name(name: str) -> None:
    """Raise xend's error if ``name`` is not a valid domain name."""
    if not name:
        raise SimError("missing vm name")
    if not VM_NAME.match(name):
        raise SimError("invalid vm name")


def parse_config(text_or_expr: str | bytes | SExpr) -> list[SExpr]:
    """Return the first S-expression of a create config, or raise xend's configuration error."""
    if isinstance(text_or_expr, list):
        return text_or_expr
    try:
        values = parse_all(text_or_expr) if isinstance(text_or_expr, (str, bytes)) else []
    except SexprError as exc:
        if exc.reason.startswith("unterminated list"):
            # xend's reader yields nothing for an unclosed list; op_create then fails so
            raise SimError("Configuration error list index out of range") from exc
        raise SimError(f"Invalid configuration {exc.reason}") from exc
    if not values or not isinstance(values[0], list) or not values[0]:
        raise SimError("Configuration error list index out of range")
    return values[0]


def domain_from_config(
    expr: list[SExpr], rng: random.Random, *, check_name: Callable[[str], None],
    allocate: Callable[[int], int],
) -> SimDomain:
    """Return the domain ``expr`` configures, checked in xend's order.

    ``check_name(name)`` refuses a bad or taken name; ``allocate(kib)`` refuses what the node
    cannot hold and returns the new domain's id. ``rng`` picks what the config leaves out.
    """
    name = value(expr, "name") or ""
    check_name(name)
    memory = py_int(value(expr, "memory", "0"))
    if memory <= 0:
        raise SimError("Invalid memory size")
    maxmem = max(memory, py_int(value(expr, "maxmem", str(memory)) or memory))
    image = child(expr, "image")
    img = image[1] if image is not None and len(image) > 1 else None
    bootloader = value(expr, "bootloader")
    if img is None and not bootloader:
        raise SimError("Missing image in configuration")
    if img is not None and not (isinstance(img, list) and img and img[0] in ("linux", "hvm")):
        head = img[0] if isinstance(img, list) and img else img
        raise SimError(f"unknown image type: {dumps(head) if head is not None else ''}")
    vcpus = py_int(value(expr, "vcpus", "1") or 1)
    if isinstance(img, list) and value(img, "vcpus"):
        vcpus = py_int(value(img, "vcpus"))
    if vcpus <= 0:
        raise SimError(f"Invalid VCPU count: {vcpus}")
    restart: dict[str, str] = {}
    for event, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                           ("on_crash", "restart")):
        mode = value(expr, event, default) or default
        if mode not in RESTART_MODES:
            raise SimError(f"invalid restart event: {event} = {mode}")
        restart[event] = mode
    uuid_text = value(expr, "uuid")
    try:
        dom_uuid = uuidlib.UUID(uuid_text) if uuid_text else random_uuid(rng)
    except ValueError:
        raise SimError(f"Invalid uuid: {uuid_text}") from None
    vbds: list[Vbd] = []
    vifs: list[Vif] = []
    for item in expr[1:]:
        if not (isinstance(item, list) and item and item[0] == "device"):
            continue
        dev = item[1] if len(item) > 1 else None
        if not (isinstance(dev, list) and dev and dev[0] in DEVICE_CLASSES):
            raise SimError(f"invalid device {dumps(dev) if dev is not None else '()'}")
        if dev[0] in ("vbd", "tap"):
            vbds.append(vbd_from_config(dev))
        elif dev[0] == "vif":
            vifs.append(Vif(
                len(vifs), value(dev, "mac") or random_mac(rng),
                bridge=value(dev, "bridge"), script=value(dev, "script") or "vif-bridge",
                ip=value(dev, "ip"), type=value(dev, "type"),
                vifname=value(dev, "vifname"), rate=value(dev, "rate"),
                backend=py_int(value(dev, "backend", "0") or 0)))
    domid = allocate(memory * 1024)
    return SimDomain(
        domid=domid, name=name, uuid=dom_uuid, vcpus=vcpus, memory_kib=memory * 1024,
        maxmem_kib=maxmem * 1024,
        vcpu_avail=py_int(value(expr, "vcpu_avail", "0") or 0) & ((1 << vcpus) - 1),
        cpu_weight=float(value(expr, "cpu_weight", "1.0") or 1.0),
        image=img if isinstance(img, list) else None, bootloader=bootloader,
        bootloader_args=value(expr, "bootloader_args"), vbds=vbds, vifs=vifs,
        load=rng.uniform(0.002, 0.03), run_since=time.monotonic(),
        store_mfn=0x3FFFE - 2 * domid, console_mfn=0x3FFFD - 2 * domid,
        on_poweroff=restart["on_poweroff"], on_reboot=restart["on_reboot"],
        on_crash=restart["on_crash"])


def vbd_from_config(dev: list[SExpr]) -> Vbd:
    """Return the block device a ``(vbd ...)`` or ``(tap ...)`` entry configures."""
    uname = value(dev, "uname") or ""
    name = value(dev, "dev") or ""
    device_type = "disk"
    if ":" in name:
        name, _, device_type = name.partition(":")
    mode = value(dev, "mode", "r") or "r"
    if mode not in ("r", "w", "w!"):
        raise SimError("Invalid mode")
    if not name:
        raise SimError(f"invalid device {dumps(dev)}")
    return Vbd(blkdev_number(name), name, uname, mode, device_type,
               py_int(value(dev, "backend", "0") or 0))
