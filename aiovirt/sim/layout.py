"""Where a domain lives in xenstore: the tree xend 3.0.3 and the hotplug scripts wrote.

``/local/domain/<id>`` (the guest's home, its device frontends), ``/local/domain/<backend>/backend``
(the device backends), ``/vm/<uuid>`` (xend's record of the VM); xenstore-layout.md §2-5 and §9.
Every function writes into a :class:`~aiovirt.sim.store.XenStoreDB` in the order xend did, so a
watcher sees the same sequence of events.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiovirt.protocol.sexpr import dumps, format_float
from aiovirt.protocol.xs_wire import Perm, PermAccess
from aiovirt.sim.config import value
from aiovirt.sim.domain import SimDomain, mib
from aiovirt.sim.store import XenStoreDB

__all__ = [
    "publish",
    "put",
    "remove",
    "unpublish",
    "write_base_tree",
    "write_vcpu_availability",
]


def put(db: XenStoreDB, path: str, text: str | int) -> None:
    """Write ``text`` (a number as its decimal string) at ``path``."""
    db.write(path, str(text))


def _put_all(db: XenStoreDB, directory: str, items: Iterable[tuple[str, str | int]]) -> None:
    """Write each ``(key, text)`` of ``items`` at ``directory/key``, in order."""
    for key, text in items:
        put(db, f"{directory}/{key}", text)


def remove(db: XenStoreDB, path: str) -> None:
    """Remove ``path`` and what is below it, if it exists."""
    if db.exists(path):
        db.rm(path)


def write_base_tree(db: XenStoreDB, dom0: SimDomain) -> None:
    """Write the tree a freshly booted dom0 has: ``/vm``, ``/local/domain`` and dom0's entries."""
    db.mkdir("/vm")
    db.set_perms("/vm", [Perm(0, PermAccess.NONE)])
    db.mkdir("/local/domain")
    _write_vm_record(db, dom0)
    _put_all(db, dom0.home, (("vm", dom0.vm_path), ("domid", 0), ("name", dom0.name),
                             ("console/limit", 1048576), ("memory/target", dom0.memory_kib)))
    write_vcpu_availability(db, dom0)


def write_vcpu_availability(db: XenStoreDB, dom: SimDomain) -> None:
    """Write ``cpu/<n>/availability`` for each of the domain's vCPUs."""
    home = dom.home
    for i in range(dom.vcpus):
        online = "online" if dom.vcpu_avail >> i & 1 else "offline"
        put(db, f"{home}/cpu/{i}/availability", online)


def publish(db: XenStoreDB, dom: SimDomain, *, restored: bool = False) -> None:
    """Write a new domain's store entries in xend 3.0.3's order (layout §9).

    A restored domain is introduced last, after its entries exist, as ``xc_restore`` did.
    """
    home = dom.home
    remove(db, home)
    db.mkdir(home)
    db.set_perms(home, [Perm(dom.domid, PermAccess.NONE)])
    _rm_vm_children(db, dom)
    _write_image(db, dom)
    if not restored:
        db.introduce_domain(dom.domid)
    _write_devices(db, dom)
    _write_vm_record(db, dom)
    _write_home(db, dom)
    if restored:
        db.introduce_domain(dom.domid)


def unpublish(db: XenStoreDB, dom: SimDomain, *, keep_vm: bool) -> None:
    """Remove a domain's store entries as xend and the hotplug cleanup did."""
    for vbd in dom.vbds:
        remove(db, _frontend(dom, "vbd", vbd.devid))
    for vif in dom.vifs:
        remove(db, _frontend(dom, "vif", vif.devid))
    backends = {v.backend for v in dom.vbds} | {v.backend for v in dom.vifs}
    for backdom in backends:
        for cls in ("vbd", "vif"):
            remove(db, f"/local/domain/{backdom}/backend/{cls}/{dom.domid}")
    remove(db, dom.home)
    if not keep_vm:
        remove(db, dom.vm_path)


def _write_vm_record(db: XenStoreDB, dom: SimDomain) -> None:
    vm = dom.vm_path
    put(db, f"{vm}/uuid", str(dom.uuid))
    db.set_perms(f"{vm}/uuid", [Perm(dom.domid, PermAccess.READ)])
    _put_all(db, vm, (("vcpus", dom.vcpus), ("vcpu_avail", dom.vcpu_avail),
                      ("memory", mib(dom.memory_kib)), ("shadow_memory", 0),
                      ("maxmem", mib(dom.maxmem_kib))))
    if dom.start_time is not None:
        put(db, f"{vm}/start_time", format_float(dom.start_time))
    _put_all(db, vm, (("name", dom.name), ("on_poweroff", dom.on_poweroff),
                      ("on_reboot", dom.on_reboot), ("on_crash", dom.on_crash),
                      ("xend/restart_count", str(dom.restart_count))))


def _write_image(db: XenStoreDB, dom: SimDomain) -> None:
    if dom.image is None:
        return
    vm = dom.vm_path
    img = dom.image
    put(db, f"{vm}/image", dumps(img))
    put(db, f"{vm}/image/ostype", img[0] if isinstance(img[0], str) else "linux")
    put(db, f"{vm}/image/kernel", value(img, "kernel", "") or "")
    cmdline = ""
    ip, root, args = value(img, "ip"), value(img, "root"), value(img, "args")
    if ip:
        cmdline += f" ip={ip}"
    if root:
        cmdline += f" root={root}"
    if args:
        cmdline += f" {args}"
    put(db, f"{vm}/image/cmdline", cmdline)
    put(db, f"{vm}/image/ramdisk", value(img, "ramdisk", "") or "")


def _frontend(dom: SimDomain, cls: str, devid: int) -> str:
    return f"{dom.home}/device/{cls}/{devid}"


def _make_device_dirs(db: XenStoreDB, dom: SimDomain, cls: str, devid: int,
                      backend: int) -> tuple[str, str]:
    """Create a device's frontend and backend directories, each owned by its end and readable
    by the other, as the hotplug scripts did; return their paths."""
    front = _frontend(dom, cls, devid)
    back = f"/local/domain/{backend}/backend/{cls}/{dom.domid}/{devid}"
    db.mkdir(front)
    db.set_perms(front, [Perm(dom.domid, PermAccess.NONE), Perm(backend, PermAccess.READ)])
    db.mkdir(back)
    db.set_perms(back, [Perm(backend, PermAccess.NONE), Perm(dom.domid, PermAccess.READ)])
    return front, back


def _write_devices(db: XenStoreDB, dom: SimDomain) -> None:
    domid, home = dom.domid, dom.home
    port = 3
    for vbd in dom.vbds:
        front, back = _make_device_dirs(db, dom, "vbd", vbd.devid, vbd.backend)
        _put_all(db, front, (("backend", back), ("backend-id", vbd.backend), ("state", 4),
                             ("virtual-device", vbd.devid), ("device-type", vbd.device_type),
                             ("ring-ref", 8 + vbd.devid % 64), ("event-channel", port)))
        port += 1
        kind, _, params = vbd.uname.partition(":")
        _put_all(db, back, (("domain", dom.name), ("frontend", front), ("frontend-id", domid),
                            ("state", 4), ("online", 1), ("dev", vbd.dev), ("type", kind),
                            ("params", params), ("mode", vbd.mode)))
        if kind == "file":
            _put_all(db, back, (("node", "/dev/loop0"), ("physical-device", "7:0")))
        _put_all(db, back, (("hotplug-status", "connected"), ("sectors", 4194304),
                            ("info", 1 if vbd.device_type == "cdrom" else 0),
                            ("sector-size", 512)))
    for vif in dom.vifs:
        front, back = _make_device_dirs(db, dom, "vif", vif.devid, vif.backend)
        _put_all(db, front, (("backend", back), ("backend-id", vif.backend), ("state", 4),
                             ("handle", vif.devid), ("mac", vif.mac),
                             ("tx-ring-ref", 521 + 2 * vif.devid),
                             ("rx-ring-ref", 522 + 2 * vif.devid), ("event-channel", port),
                             ("request-rx-copy", 0), ("feature-rx-notify", 1),
                             ("feature-sg", 1), ("feature-gso-tcpv4", 1)))
        port += 1
        items: list[tuple[str, str | int]] = [
            ("domain", dom.name), ("frontend", front), ("frontend-id", domid),
            ("state", 4), ("online", 1),
            ("script", vif.script if vif.script.startswith("/")
             else f"/etc/xen/scripts/{vif.script}"),
            ("mac", vif.mac), ("handle", vif.devid)]
        for key in ("bridge", "ip", "vifname", "rate", "type"):
            attr = getattr(vif, key)
            if attr:
                items.append((key, attr))
        items += [("hotplug-status", "connected"), ("feature-sg", 1),
                  ("feature-gso-tcpv4", 1), ("feature-rx-copy", 1)]
        _put_all(db, back, items)
    if dom.vifs:
        put(db, f"{home}/device-misc/vif/nextDeviceID", max(v.devid for v in dom.vifs) + 1)


def _write_home(db: XenStoreDB, dom: SimDomain) -> None:
    _put_all(db, dom.home, (
        ("vm", dom.vm_path), ("domid", dom.domid), ("name", dom.name),
        ("console/limit", 1048576), ("console/port", 2),
        ("console/ring-ref", dom.console_mfn or 0),
        ("console/tty", f"/dev/pts/{dom.domid % 4096}"),
        ("memory/target", dom.memory_kib), ("store/port", 1),
        ("store/ring-ref", dom.store_mfn or 0)))
    write_vcpu_availability(db, dom)


def _rm_vm_children(db: XenStoreDB, dom: SimDomain) -> None:
    # a rewritten /vm/<uuid> (restart, restore) keeps only the xend bookkeeping
    vm = dom.vm_path
    if not db.exists(vm):
        return
    for name in db.directory(vm):
        if name != "xend":
            db.rm(f"{vm}/{name}")
