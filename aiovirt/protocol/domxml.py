"""Domain XML (libvirt's format) <-> a typed description <-> xend's S-expressions (sans-IO).

Three shapes of the same domain:

* the XML of libvirt's site (``<domain type='xen' id='18'><name>fc4</name><os>...``), read by
  :func:`parse_domain_xml` and written by :func:`config_to_xml` (plus ``<uuid>``, as libvirt
  0.1.1 added);
* :class:`DomainConfig`, a frozen description with :class:`DiskConfig` and
  :class:`InterfaceConfig` entries;
* xend's S-expressions: the creation config ``(vm (name ..) (memory ..) ... (image (linux ..))
  (device (vbd ..)) (device (vif ..)))`` written by :func:`config_to_sexpr`, and the domain
  record ``(domain (domid ..) ...)`` that xend reports, read by :func:`sexpr_to_config`.

Where libvirt 0.0.6 had a bug we follow the later fix (DESIGN.md): block disks are ``phy:``,
``<ip>``, ``<script>`` and ``<target>`` of interfaces are kept, every value is quoted by the
S-expression writer and escaped in the XML, a domain without disks is allowed, Domain-0 (no
kernel) has a description too, and malformed XML, a wrong root or a non-``xen`` type raise
``XML_ERROR`` instead of failing silently.

Memory rules (``<memory>`` is KiB; xend counts whole MiB):

* ``<memory>`` is required and must be a decimal integer of at least 1024 KiB; anything else
  raises ``XML_ERROR`` naming ``<memory>`` (0.0.6 silently used 128 MiB instead).
* KiB -> MiB rounds down (``(memory M) (maxmem M)`` with ``M = KiB // 1024``), so reading the
  domain back reports ``M * 1024`` KiB.
* From xend, ``maxmem`` (else ``memory``) MiB gives :attr:`DomainConfig.memory` in KiB and
  ``memory`` MiB gives :attr:`DomainConfig.current_memory`.

Other rules: ``<vcpu>`` defaults to 1 and must be a positive integer; ``<os>`` is required
(``NO_OS``); ``<type>`` defaults to ``linux``; ``<kernel>`` is required to create a domain
(``NO_KERNEL``), as is a root device, from ``<root>`` or a ``root=`` in ``<cmdline>``
(``NO_ROOT``); each ``<disk>`` needs its source (``NO_SOURCE``) and target (``NO_TARGET``).
Element texts other than ``<cmdline>`` are stripped of surrounding whitespace.
"""

from __future__ import annotations

import logging
import re
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.sexpr import SExpr, SexprError, find_all, parse
from aiovirt.protocol.xen import MAX_MEMORY_KIB as XEN_MAX_MEMORY_KIB

__all__ = [
    "DiskConfig",
    "DomainConfig",
    "InterfaceConfig",
    "config_to_sexpr",
    "config_to_xml",
    "parse_domain_xml",
    "root_device",
    "sexpr_to_config",
    "sexpr_to_xml",
    "xml_to_config",
    "xml_to_sexpr",
]

log = logging.getLogger(__name__)

MIN_MEMORY_KIB = 1024
MAX_MEMORY_KIB = XEN_MAX_MEMORY_KIB  # what every route can carry (protocol/xen.py)
MAX_VCPUS = 0xFFFF

DiskType = Literal["file", "block"]
InterfaceType = Literal["bridge", "ethernet"]


@dataclass(frozen=True, slots=True)
class DiskConfig:
    """One ``<disk>``: a dom0 file or block device (``source``) seen by the guest as ``target``."""

    type: DiskType
    source: str
    target: str
    readonly: bool = False

    @property
    def uname(self) -> str:
        """Return xend's ``uname``: ``file:<source>`` or ``phy:<source>``."""
        return ("phy:" if self.type == "block" else "file:") + self.source


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """One ``<interface>``; every field is optional, as in libvirt's format."""

    type: InterfaceType = "bridge"
    bridge: str | None = None
    mac: str | None = None
    ip: str | None = None
    script: str | None = None
    target: str | None = None


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """A domain's description. ``memory`` (the maximum) and ``current_memory`` are in KiB.

    ``id`` is the runtime domain id (None for a new or inactive domain); ``uuid`` is None when
    the description does not fix one (xend then picks one).
    """

    name: str
    memory: int
    vcpus: int = 1
    os_type: str = "linux"
    kernel: str | None = None
    initrd: str | None = None
    root: str | None = None
    cmdline: str | None = None
    disks: tuple[DiskConfig, ...] = ()
    interfaces: tuple[InterfaceConfig, ...] = ()
    id: int | None = None
    uuid: uuidlib.UUID | None = None
    current_memory: int | None = None


def _xml_error(code: ErrorNumber, info: str) -> VirtError:
    return VirtError(code, ErrorDomain.XML, info)


# ---------------------------------------------------------------------------------------------
# XML -> DomainConfig


_ENCODING_DECL = re.compile(r"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _parse_document(xml: str | bytes) -> etree._Element:
    # No entity expansion, no network, no DTD: domain XML comes from users and must not make
    # the parser fetch or amplify anything.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    data: bytes
    if isinstance(xml, str):
        # lxml refuses str input that declares an encoding; encode it the way it says.
        m = _ENCODING_DECL.match(xml)
        encoding = m.group(1) if m else "utf-8"
        try:
            data = xml.encode(encoding)
        except (LookupError, UnicodeError) as exc:
            raise _xml_error(
                ErrorNumber.XML_ERROR, f"the text cannot be encoded as {encoding!r}: {exc}"
            ) from exc
    elif isinstance(xml, bytes | bytearray | memoryview):
        data = bytes(xml)
    else:
        raise TypeError(f"domain XML must be str or bytes, not {type(xml).__name__}")
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise _xml_error(ErrorNumber.XML_ERROR, f"malformed domain XML: {exc}") from exc
    except (ValueError, LookupError, etree.LxmlError) as exc:
        raise _xml_error(ErrorNumber.XML_ERROR, f"unreadable domain XML: {exc}") from exc
    if root is None:
        raise _xml_error(ErrorNumber.XML_ERROR, "empty domain XML")
    doctype = getattr(root.getroottree().docinfo, "doctype", "")
    if doctype:
        raise _xml_error(ErrorNumber.XML_ERROR, "a DOCTYPE is not allowed in domain XML")
    return root


def _first(parent: etree._Element, tag: str) -> etree._Element | None:
    for child in parent:
        if child.tag == tag:
            return child
    return None


def _children(parent: etree._Element, tag: str) -> Iterator[etree._Element]:
    for child in parent:
        if child.tag == tag:
            yield child


def _text(el: etree._Element | None, *, strip: bool = True) -> str | None:
    """Return the element's text (descendants included), or None when absent or empty."""
    if el is None:
        return None
    text = "".join(t for t in el.itertext() if isinstance(t, str))
    if strip:
        text = text.strip()
    return text or None


def _attr(el: etree._Element | None, name: str) -> str | None:
    if el is None:
        return None
    value = el.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _int(text: str, where: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,25}", text):
        raise _xml_error(ErrorNumber.XML_ERROR, f"{where} must be a whole number, not {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise _xml_error(
            ErrorNumber.XML_ERROR, f"{where} value {value} is out of range ({low}..{high})"
        )
    return value


_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}\Z")


def parse_domain_xml(xml: str | bytes) -> DomainConfig:
    """Return the :class:`DomainConfig` that the domain XML describes.

    Raises :class:`VirtError` (domain XML) with ``XML_ERROR`` for malformed XML, a root other
    than ``<domain>``, a ``type`` other than ``xen`` or a bad value, and ``NO_NAME``,
    ``NO_OS``, ``OS_TYPE``, ``NO_SOURCE``, ``NO_TARGET`` for the missing pieces; the message
    names the element.
    """
    root = _parse_document(xml)
    if root.tag != "domain":
        raise _xml_error(
            ErrorNumber.XML_ERROR, f"the root element is <{root.tag}>, expected <domain>"
        )
    dom_type = root.get("type")
    if dom_type is not None and dom_type.strip() != "xen":
        raise _xml_error(
            ErrorNumber.XML_ERROR, f"<domain type='{dom_type}'> is not supported, only 'xen'"
        )
    dom_id: int | None = None
    id_text = root.get("id")
    if id_text is not None and id_text.strip() not in ("", "-1"):
        dom_id = _int(id_text.strip(), "<domain id>", 0, 0xFFFF)

    name = _text(_first(root, "name"))
    if name is None:
        raise _xml_error(ErrorNumber.NO_NAME, "<name>")

    dom_uuid: uuidlib.UUID | None = None
    uuid_text = _text(_first(root, "uuid"))
    if uuid_text is not None:
        try:
            dom_uuid = uuidlib.UUID(uuid_text)
        except ValueError as exc:
            raise _xml_error(
                ErrorNumber.XML_ERROR, f"<uuid> {uuid_text!r} is not a UUID"
            ) from exc

    memory_text = _text(_first(root, "memory"))
    if memory_text is None:
        raise _xml_error(ErrorNumber.XML_ERROR, "<memory> is missing (KiB, at least 1024)")
    memory = _int(memory_text, "<memory>", MIN_MEMORY_KIB, MAX_MEMORY_KIB)

    vcpu_text = _text(_first(root, "vcpu"))
    vcpus = 1 if vcpu_text is None else _int(vcpu_text, "<vcpu>", 1, MAX_VCPUS)

    os_el = _first(root, "os")
    if os_el is None:
        raise _xml_error(ErrorNumber.NO_OS, f"domain {name} (<os> is missing)")
    os_type = _text(_first(os_el, "type")) or "linux"
    if os_type != "linux":
        raise _xml_error(ErrorNumber.OS_TYPE, f"{os_type!r} in <os><type>, only 'linux'")

    disks: list[DiskConfig] = []
    interfaces: list[InterfaceConfig] = []
    devices = _first(root, "devices")
    if devices is not None:
        disks = [_parse_disk(el) for el in _children(devices, "disk")]
        interfaces = [_parse_interface(el) for el in _children(devices, "interface")]

    return DomainConfig(
        name=name,
        memory=memory,
        vcpus=vcpus,
        os_type=os_type,
        kernel=_text(_first(os_el, "kernel")),
        initrd=_text(_first(os_el, "initrd")),
        root=_text(_first(os_el, "root")),
        cmdline=_text(_first(os_el, "cmdline"), strip=False),
        disks=tuple(disks),
        interfaces=tuple(interfaces),
        id=dom_id,
        uuid=dom_uuid,
    )


xml_to_config = parse_domain_xml


def _parse_disk(el: etree._Element) -> DiskConfig:
    disk_type = (el.get("type") or "file").strip()
    if disk_type not in ("file", "block"):
        raise _xml_error(
            ErrorNumber.XML_ERROR, f"<disk type='{disk_type}'> is not 'file' or 'block'"
        )
    attr = "dev" if disk_type == "block" else "file"
    source = _attr(_first(el, "source"), attr)
    target = _attr(_first(el, "target"), "dev")
    if source is None:
        raise _xml_error(
            ErrorNumber.NO_SOURCE, f"{target or '?'} (<disk><source {attr}='...'/> is missing)"
        )
    if target is None:
        raise _xml_error(
            ErrorNumber.NO_TARGET, f"{source} (<disk><target dev='...'/> is missing)"
        )
    readonly = _first(el, "readonly") is not None
    return DiskConfig(type="block" if disk_type == "block" else "file", source=source,
                      target=target, readonly=readonly)


def _parse_interface(el: etree._Element) -> InterfaceConfig:
    if_type = (el.get("type") or "bridge").strip()
    if if_type not in ("bridge", "ethernet"):
        raise _xml_error(
            ErrorNumber.XML_ERROR,
            f"<interface type='{if_type}'> is not 'bridge' or 'ethernet'",
        )
    mac = _attr(_first(el, "mac"), "address")
    if mac is not None and not _MAC.match(mac):
        raise VirtError(
            ErrorNumber.INVALID_MAC, ErrorDomain.XML, f"{mac!r} in <interface><mac address>"
        )
    return InterfaceConfig(
        type="ethernet" if if_type == "ethernet" else "bridge",
        bridge=_attr(_first(el, "source"), "bridge") if if_type == "bridge" else None,
        mac=mac,
        ip=_attr(_first(el, "ip"), "address"),
        script=_attr(_first(el, "script"), "path"),
        target=_attr(_first(el, "target"), "dev"),
    )


# ---------------------------------------------------------------------------------------------
# DomainConfig -> xend's creation S-expression

# Only the kernel's own syntax: 0.0.6 also took "root /dev/x", which the kernel ignores.
_ROOT_IN_CMDLINE = re.compile(r"(?:^|\s)root=(\S+)")


def root_device(cfg: DomainConfig) -> str | None:
    """Return the guest's root device: ``<root>``, else the ``root=`` of the command line."""
    if cfg.root:
        return cfg.root
    if cfg.cmdline:
        m = _ROOT_IN_CMDLINE.search(cfg.cmdline)
        if m:
            return m.group(1)
    return None


def config_to_sexpr(cfg: DomainConfig) -> SExpr:
    """Return xend's creation config for ``cfg`` (``dumps`` it for ``op=create&config=``).

    Raises :class:`VirtError` (domain XML) when ``cfg`` cannot be created: ``NO_NAME``,
    ``XML_ERROR`` for memory under 1 MiB or bad vcpus, ``OS_TYPE`` unless linux,
    ``NO_KERNEL``, ``NO_ROOT``. A root device found only in the command line is not repeated
    as ``(root ..)``: xend prepends ``root=`` itself, and the command line already has it.
    """
    if not cfg.name:
        raise _xml_error(ErrorNumber.NO_NAME, "<name>")
    if not MIN_MEMORY_KIB <= cfg.memory <= MAX_MEMORY_KIB:
        raise _xml_error(
            ErrorNumber.XML_ERROR,
            f"<memory> of {cfg.memory} KiB is out of range ({MIN_MEMORY_KIB}..{MAX_MEMORY_KIB})",
        )
    if not 1 <= cfg.vcpus <= MAX_VCPUS:
        raise _xml_error(ErrorNumber.XML_ERROR, f"<vcpu> of {cfg.vcpus} is out of range")
    if cfg.os_type != "linux":
        raise _xml_error(ErrorNumber.OS_TYPE, f"{cfg.os_type!r} in <os><type>, only 'linux'")
    if not cfg.kernel:
        raise _xml_error(ErrorNumber.NO_KERNEL, f"for domain {cfg.name} (<os><kernel>)")
    if root_device(cfg) is None:
        raise _xml_error(
            ErrorNumber.NO_ROOT, f"domain {cfg.name}: neither <root> nor root= in <cmdline>"
        )
    mib = str(cfg.memory // 1024)
    vm: list[SExpr] = [
        "vm",
        ["name", cfg.name],
        ["memory", mib],
        ["maxmem", mib],
        ["vcpus", str(cfg.vcpus)],
    ]
    if cfg.uuid is not None:
        vm.append(["uuid", str(cfg.uuid)])
    linux: list[SExpr] = ["linux", ["kernel", cfg.kernel]]
    if cfg.initrd:
        linux.append(["ramdisk", cfg.initrd])
    if cfg.root:
        linux.append(["root", cfg.root])
    if cfg.cmdline:
        linux.append(["args", cfg.cmdline])
    vm.append(["image", linux])
    for disk in cfg.disks:
        vm.append(["device", [
            "vbd",
            ["dev", disk.target],
            ["uname", disk.uname],
            ["mode", "r" if disk.readonly else "w"],
        ]])
    for nic in cfg.interfaces:
        vif: list[SExpr] = ["vif"]
        if nic.mac:
            vif.append(["mac", nic.mac])
        if nic.type == "bridge" and nic.bridge:
            vif.append(["bridge", nic.bridge])
        if nic.script:
            vif.append(["script", nic.script])
        if nic.ip:
            vif.extend(["ip", address] for address in nic.ip.split())
        if nic.target:
            vif.append(["vifname", nic.target])
        vm.append(["device", vif])
    return vm


def xml_to_sexpr(xml: str | bytes) -> SExpr:
    """Return xend's creation config for domain XML (see :func:`config_to_sexpr`)."""
    return config_to_sexpr(parse_domain_xml(xml))


# ---------------------------------------------------------------------------------------------
# xend's domain S-expression -> DomainConfig


def _xend_error(info: str) -> VirtError:
    return VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                     f"domain information incomplete, {info}")


def _value(expr: list[SExpr], key: str) -> str | None:
    """Return the first atom under ``(key ..)`` of a record, or None when absent or empty."""
    for item in expr[1:]:
        if isinstance(item, list) and item and item[0] == key:
            if len(item) > 1 and isinstance(item[1], str) and item[1]:
                return item[1]
            return None
    return None


def _mib_to_kib(text: str, key: str) -> int:
    try:
        mib = int(text)
    except ValueError:
        try:
            mib = int(float(text))
        except (ValueError, OverflowError):
            raise _xend_error(f"({key} {text!r}) is not a number of MiB") from None
    if mib < 0:
        raise _xend_error(f"({key} {text!r}) is negative")
    return mib * 1024


def _atoms(expr: SExpr) -> Iterator[str]:
    if isinstance(expr, str):
        if expr:
            yield expr
    else:
        for item in expr:
            yield from _atoms(item)


def sexpr_to_config(sxpr: SExpr | str | bytes) -> DomainConfig:
    """Return the description of a domain from xend's domain S-expression (any 3.x/4.x format).

    Accepts ``(domain ..)`` records (and ``(vm ..)`` configs) as parsed lists or as text.
    ``maxmem`` (else ``memory``) MiB gives ``memory`` in KiB; a ``dev`` of ``sda1:disk`` gives
    the target ``sda1``; Domain-0, which has no image, is described with no kernel. Raises
    :class:`VirtError` ``INTERNAL_ERROR`` (xend) when the name or memory is missing or a value
    is not what xend writes.
    """
    if isinstance(sxpr, str | bytes):
        try:
            sxpr = parse(sxpr)
        except SexprError as exc:
            raise _xend_error(f"unreadable domain S-expression: {exc}") from exc
    if not isinstance(sxpr, list) or not sxpr or sxpr[0] not in ("domain", "vm"):
        raise _xend_error("expected a (domain ...) S-expression")
    name = _value(sxpr, "name")
    if name is None:
        raise _xend_error("missing name")

    dom_id: int | None = None
    domid_text = _value(sxpr, "domid")
    if domid_text is not None:
        if not domid_text.isdigit() or not domid_text.isascii():
            raise _xend_error(f"(domid {domid_text!r}) is not a domain id")
        dom_id = int(domid_text)

    dom_uuid: uuidlib.UUID | None = None
    uuid_text = _value(sxpr, "uuid")
    if uuid_text is not None:
        try:
            dom_uuid = uuidlib.UUID(uuid_text)
        except ValueError:
            raise _xend_error(f"(uuid {uuid_text!r}) is not a UUID") from None

    maxmem_text = _value(sxpr, "maxmem")
    memory_text = _value(sxpr, "memory")
    if maxmem_text is None and memory_text is None:
        raise _xend_error("missing memory")
    current = _mib_to_kib(memory_text, "memory") if memory_text is not None else None
    maximum = _mib_to_kib(maxmem_text, "maxmem") if maxmem_text is not None else None
    memory = max(m for m in (current, maximum) if m is not None)

    vcpus = 1
    vcpus_text = _value(sxpr, "vcpus")
    if vcpus_text is not None:
        if not vcpus_text.isdigit() or not vcpus_text.isascii():
            raise _xend_error(f"(vcpus {vcpus_text!r}) is not a number")
        vcpus = int(vcpus_text)

    os_type = "linux"
    kernel = initrd = root = cmdline = None
    image = next(iter(find_all(sxpr, "image")), None)
    if image is not None:
        kind = next((item for item in image[1:] if isinstance(item, list) and item), None)
        if kind is not None and isinstance(kind[0], str):
            os_type = kind[0]
            kernel = _value(kind, "kernel")
            initrd = _value(kind, "ramdisk")
            root = _value(kind, "root")
            cmdline = _value(kind, "args")

    disks: list[DiskConfig] = []
    interfaces: list[InterfaceConfig] = []
    for device in find_all(sxpr, "device"):
        for dev in device[1:]:
            if not isinstance(dev, list) or not dev:
                continue
            if dev[0] in ("vbd", "tap"):
                disk = _disk_from_sexpr(dev)
                if disk is not None:
                    disks.append(disk)
            elif dev[0] == "vif":
                interfaces.append(_interface_from_sexpr(dev, dom_id, len(interfaces)))

    return DomainConfig(
        name=name,
        memory=memory,
        vcpus=vcpus,
        os_type=os_type,
        kernel=kernel,
        initrd=initrd,
        root=root,
        cmdline=cmdline,
        disks=tuple(disks),
        interfaces=tuple(interfaces),
        id=dom_id,
        uuid=dom_uuid,
        current_memory=current,
    )


def _disk_from_sexpr(dev: list[SExpr]) -> DiskConfig | None:
    uname = _value(dev, "uname")
    target = _value(dev, "dev")
    if uname is None or target is None:
        log.warning("skipping a %s device without uname or dev: %r", dev[0], dev)
        return None
    # xend 3.0.3+ appends ':disk' or ':cdrom'; 0.0.6-created domains carry a '/dev/' prefix.
    target = target.split(":", 1)[0]
    target = target.removeprefix("/dev/")
    kind, _, path = uname.partition(":")
    disk_type: DiskType
    if kind == "file":
        disk_type = "file"
    elif kind == "phy":
        disk_type = "block"
    elif kind in ("tap", "tap2"):
        # tap:aio:/path: a file served by blktap; described as the file it is.
        disk_type = "file"
        path = path.partition(":")[2]
    else:
        log.warning("skipping disk %s: unknown uname %r", target, uname)
        return None
    if not path or not target:
        log.warning("skipping a disk with an empty source or target: %r", dev)
        return None
    mode = _value(dev, "mode") or "w"
    return DiskConfig(type=disk_type, source=path, target=target, readonly=mode == "r")


def _interface_from_sexpr(dev: list[SExpr], dom_id: int | None, index: int) -> InterfaceConfig:
    bridge = _value(dev, "bridge")
    # A running domain's interface without a vifname is the backend netdev vif<domid>.<n>
    # (n counts its vifs), the name interface_stats() takes, as libvirt's xend driver shows.
    target = _value(dev, "vifname")
    if target is None and dom_id is not None:
        target = f"vif{dom_id}.{index}"
    script = _value(dev, "script")
    # (ip A) may repeat, and 3.0.x wrote it as a list: collect every address.
    addresses = [a for ip in find_all(dev, "ip") for a in _atoms(ip[1:])]
    if_type: InterfaceType = "bridge"
    if bridge is None and not (script and script.rsplit("/", 1)[-1] == "vif-bridge"):
        if_type = "ethernet"
    return InterfaceConfig(
        type=if_type,
        bridge=bridge,
        mac=_value(dev, "mac"),
        ip=" ".join(addresses) or None,
        script=script,
        target=target,
    )


# ---------------------------------------------------------------------------------------------
# DomainConfig -> XML

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;",
    "\t": "&#9;", "\n": "&#10;", "\r": "&#13;",
})


def _check_xml_chars(value: str, where: str) -> None:
    m = _XML_INVALID.search(value)
    if m:
        raise _xml_error(
            ErrorNumber.XML_ERROR,
            f"{where} holds the character {m.group()!r}, which XML cannot carry",
        )


def _esc_text(value: str, where: str) -> str:
    _check_xml_chars(value, where)
    return value.translate(_TEXT_ESCAPES)


def _esc_attr(value: str, where: str) -> str:
    _check_xml_chars(value, where)
    return value.translate(_ATTR_ESCAPES)


def config_to_xml(cfg: DomainConfig) -> str:
    """Return the domain XML of ``cfg`` in the format of libvirt's site, plus ``<uuid>``.

    Two-space indentation, single-quoted attributes, every value escaped. Raises
    :class:`VirtError` ``XML_ERROR`` for a value holding a character XML cannot carry.
    """
    lines: list[str] = []
    add = lines.append
    head = "<domain type='xen'"
    if cfg.id is not None:
        head += f" id='{int(cfg.id)}'"
    add(head + ">")
    add(f"  <name>{_esc_text(cfg.name, '<name>')}</name>")
    if cfg.uuid is not None:
        add(f"  <uuid>{cfg.uuid}</uuid>")
    add("  <os>")
    add(f"    <type>{_esc_text(cfg.os_type, '<os><type>')}</type>")
    for tag, value in (("kernel", cfg.kernel), ("initrd", cfg.initrd), ("root", cfg.root),
                       ("cmdline", cfg.cmdline)):
        if value:
            add(f"    <{tag}>{_esc_text(value, f'<{tag}>')}</{tag}>")
    add("  </os>")
    add(f"  <memory>{int(cfg.memory)}</memory>")
    add(f"  <vcpu>{int(cfg.vcpus)}</vcpu>")
    if cfg.disks or cfg.interfaces:
        add("  <devices>")
        for disk in cfg.disks:
            add(f"    <disk type='{disk.type}'>")
            attr = "dev" if disk.type == "block" else "file"
            add(f"      <source {attr}='{_esc_attr(disk.source, '<disk><source>')}'/>")
            add(f"      <target dev='{_esc_attr(disk.target, '<disk><target>')}'/>")
            if disk.readonly:
                add("      <readonly/>")
            add("    </disk>")
        for nic in cfg.interfaces:
            add(f"    <interface type='{nic.type}'>")
            if nic.bridge and nic.type == "bridge":
                add(f"      <source bridge='{_esc_attr(nic.bridge, '<source bridge>')}'/>")
            for tag, name, value in (("target", "dev", nic.target), ("mac", "address", nic.mac),
                                     ("ip", "address", nic.ip), ("script", "path", nic.script)):
                if value:
                    add(f"      <{tag} {name}='{_esc_attr(value, f'<interface><{tag}>')}'/>")
            add("    </interface>")
        add("  </devices>")
    else:
        add("  <devices/>")
    add("</domain>")
    return "\n".join(lines) + "\n"


def sexpr_to_xml(sxpr: SExpr | str | bytes) -> str:
    """Return the domain XML for xend's domain S-expression (``dom.xml_desc()``)."""
    return config_to_xml(sexpr_to_config(sxpr))

