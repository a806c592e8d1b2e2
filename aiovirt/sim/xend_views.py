"""How xend 3.0.3 shows the node's state: the S-expressions of domains, devices, vCPUs, the node.

Each function renders one of xend's answers from the model, fields in xend's order, memory in
MiB; :mod:`aiovirt.sim.xend` serves them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from aiovirt.protocol.privcmd import PAGE_KIB, PhysInfo
from aiovirt.protocol.sexpr import SExpr, format_float
from aiovirt.protocol.states import xend_state_string
from aiovirt.sim.domain import SimDomain, Vbd, Vif, mib

__all__ = ["config_sxpr", "domain_sxpr", "node_sxpr", "vbd_sxpr", "vcpu_sxpr", "vif_sxpr"]

# xend's names of the hypervisor's shutdown codes (code 4 is Xen's "halt"/watchdog slot).
REASON_NAMES = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "halt"}


def vbd_sxpr(vbd: Vbd) -> list[SExpr]:
    """Return xend 3.0.3's report of a block device."""
    return ["vbd", ["backend", str(vbd.backend)], ["dev", f"{vbd.dev}:{vbd.device_type}"],
            ["uname", vbd.uname], ["mode", vbd.mode]]


def vif_sxpr(vif: Vif) -> list[SExpr]:
    """Return xend 3.0.3's report of a network interface (script as a basename)."""
    out: list[SExpr] = ["vif", ["backend", str(vif.backend)],
                        ["script", os.path.basename(vif.script)]]
    if vif.ip:
        out.append(["ip", vif.ip])
    if vif.bridge:
        out.append(["bridge", vif.bridge])
    out.append(["mac", vif.mac])
    for key in ("type", "vifname", "rate"):
        value = getattr(vif, key)
        if value:
            out.append([key, value])
    return out


def config_sxpr(dom: SimDomain) -> list[SExpr]:
    """Return the domain's configuration as xend accepts it back (create, restore)."""
    return domain_sxpr(dom, now=0.0, wall=0.0, merged=False, state=False)


def domain_sxpr(dom: SimDomain, now: float, wall: float, *, merged: bool = True,
                state: bool = True) -> list[SExpr]:
    """Return xend 3.0.3's ``(domain ...)`` S-expression, fields in its order (memory MiB).

    ``merged=False`` is the record before xend merged hypervisor info (``op=create``'s
    reply): state ``??????``, no shutdown reason or CPU time. ``state=False`` leaves out
    everything but the configuration.
    """
    out: list[SExpr] = [
        "domain", ["domid", str(dom.domid)], ["uuid", str(dom.uuid)],
        ["vcpus", str(dom.vcpus)], ["vcpu_avail", str(dom.vcpu_avail)],
        ["cpu_weight", format_float(dom.cpu_weight)],
        ["memory", str(mib(dom.memory_kib))], ["shadow_memory", "0"],
        ["maxmem", str(mib(dom.maxmem_kib))],
    ]
    if dom.bootloader is not None:
        out.append(["bootloader", dom.bootloader])
    if dom.bootloader_args is not None:
        out.append(["bootloader_args", dom.bootloader_args])
    out += [["features", ""], ["name", dom.name], ["on_poweroff", dom.on_poweroff],
            ["on_reboot", dom.on_reboot], ["on_crash", dom.on_crash]]
    if dom.image is not None:
        out.append(["image", dom.image])
    out += [["device", vif_sxpr(vif)] for vif in dom.vifs]
    out += [["device", vbd_sxpr(vbd)] for vbd in dom.vbds]
    if not state:
        return out
    if merged:
        out.append(["state", xend_state_string(dom.flags)])
        out.append(["shutdown_reason", REASON_NAMES.get(dom.shutdown_code or 0, "poweroff")])
        out.append(["cpu_time", format_float(dom.cpu_time_ns(now) / 1e9)])
    else:
        out.append(["state", "??????"])
    out.append(["online_vcpus", str(dom.online_vcpus)])
    if dom.start_time is not None:
        out.append(["up_time", format_float(max(0.0, wall - dom.start_time))])
        out.append(["start_time", format_float(dom.start_time)])
    if dom.store_mfn:
        out.append(["store_mfn", str(dom.store_mfn)])
    if dom.console_mfn:
        out.append(["console_mfn", str(dom.console_mfn)])
    return out


def vcpu_sxpr(dom: SimDomain, now: float) -> list[SExpr]:
    """Return xend's ``vcpuinfo`` answer for a domain at monotonic time ``now``."""
    per = dom.cpu_time_ns(now) / 1e9 / dom.online_vcpus
    out: list[SExpr] = ["domain", ["domid", str(dom.domid)], ["name", dom.name],
                        ["vcpu_count", str(dom.online_vcpus)]]
    for i in range(dom.vcpus):
        online = dom.vcpu_avail >> i & 1 and dom.shutdown_code is None
        running = bool(online and dom.consuming and (dom.busy or dom.domid == 0))
        out.append(["vcpu", ["number", str(i)], ["online", "1" if online else "0"],
                    ["blocked", "0" if running or not online else "1"],
                    ["running", "1" if running else "0"],
                    ["cpu_time", format_float(per if online else 0.0)],
                    ["cpu", str(i % 4)], ["cpumap", [str(c) for c in range(32)]]])
    return out


def node_sxpr(phys: PhysInfo, version: tuple[int, int, str]) -> list[SExpr]:
    """Return xend 3.0.3's ``(node ...)`` S-expression for a host (memory in MiB)."""
    major, minor, extra = version
    items: Iterable[tuple[str, str]] = (
        ("system", "Linux"), ("host", socket.gethostname() or "xenhost1"),
        ("release", "2.6.16.29-xen"), ("version", "#1 SMP Tue Oct 17 10:22:51 BST 2006"),
        ("machine", "x86_64"), ("nr_cpus", str(phys.nr_cpus)),
        ("nr_nodes", str(phys.nr_nodes)),
        ("sockets_per_node", str(phys.nr_cpus // (phys.nr_nodes * phys.cores_per_socket
                                                 * phys.threads_per_core))),
        ("cores_per_socket", str(phys.cores_per_socket)),
        ("threads_per_core", str(phys.threads_per_core)),
        ("cpu_mhz", str(phys.cpu_khz // 1000)),
        ("hw_caps", "bfebfbff:20100800:00000000:00000140:0000e3bd:00000000:00000001"),
        ("total_memory", str(phys.total_pages * PAGE_KIB // 1024)),
        ("free_memory", str(phys.free_pages * PAGE_KIB // 1024)),
        ("xen_major", str(major)), ("xen_minor", str(minor)), ("xen_extra", extra),
        ("xen_caps", "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"),
        ("xen_pagesize", "4096"), ("platform_params", "virt_start=0xffff800000000000"),
        ("xen_changeset", "Sun Oct 15 21:44:34 2006 +0100 11774:6c167ac0db8f"),
        ("cc_compiler", "gcc version 4.1.1 20060525 (Red Hat 4.1.1-1)"),
        ("cc_compile_by", "root"), ("cc_compile_domain", "example.org"),
        ("cc_compile_date", "Tue Oct 17 10:09:58 BST 2006"), ("xend_config_format", "2"),
    )
    out: list[SExpr] = ["node"]
    out += [[k, v] for k, v in items]
    return out
