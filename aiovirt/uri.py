"""Connection URIs: which endpoint each backend of a connection talks to.

``xen:///`` is the local node at the standard places; the query parameters ``xend=`` (an
``http://`` URL or ``unix:PATH``), ``xenstore=`` (a socket path) and ``hypervisor=`` (``auto``,
``xenctrl`` or ``sim:PATH``) override one endpoint each, and the value ``none`` turns that
backend off. ``xen://HOST[:PORT]/`` is a remote xend over TCP (port 8000 by default) with no
xenstore and no hypervisor. ``sim:///?domains=N&seed=S`` asks for a simulated node started inside
the process. ``stats_root=PATH`` says under which root the dom0's device statistics files are
read (``sys/bus/xen-backend/devices`` and ``proc/net/dev``; ``/`` by default for the local
node, ``none`` or a remote node: no device statistics). The simulator prints a ``xen:///?...``
URI naming its sockets and its statistics root, which is just the ``xen`` form with every
endpoint given. Two tuning parameters apply to both schemes:
``xend_connections=N`` bounds the connections used at once against a xend that serves
connections concurrently (default 32; xend 3.0.4 and later, which say so in their node record;
3.0.0-3.0.3 serve one connection at a time and always get one) and ``timeout=S`` bounds each
request (seconds).

Parsing is pure: nothing here touches the file system except :func:`default_xend` (a stat of
the standard unix socket) and the ``XENSTORED_PATH`` environment variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError

__all__ = [
    "DEFAULT_XEND_TCP",
    "DEFAULT_XEND_UNIX",
    "ConnectionURI",
    "default_xend",
    "parse_uri",
]

DEFAULT_XEND_UNIX = "/var/lib/xend/xend-socket"
DEFAULT_XEND_TCP = "http://localhost:8000/"

DEFAULT_URI = "xen:///"
_HYPERVISOR_KINDS = ("auto", "xenctrl")
_KNOWN_PARAMS = {
    "xen": {"xend", "xenstore", "hypervisor", "stats_root", "xend_connections", "timeout"},
    "sim": {"domains", "seed", "xend_connections", "timeout"},
}


@dataclass(frozen=True)
class ConnectionURI:
    """A parsed connection URI: one endpoint (or ``None`` = off) per backend.

    ``xend`` is ``unix:PATH`` or an ``http://`` URL; ``xenstore`` a socket path (the read-only
    socket is that path plus ``_ro``) or ``""`` for libxenstore's default place;
    ``hypervisor`` is ``auto``, ``xenctrl`` or ``sim:PATH``; ``stats_root`` the directory
    under which the device statistics files are read (None: none). For ``sim:`` URIs the endpoints
    are filled in once the simulated node has started.
    """

    uri: str
    scheme: str
    xend: str | None
    xenstore: str | None
    hypervisor: str | None
    stats_root: str | None = None
    sim_domains: int = 3
    sim_seed: int | None = None
    xend_connections: int = 32
    timeout: float = 30.0

    @property
    def is_sim(self) -> bool:
        """Return True if this URI asks for an in-process simulated node."""
        return self.scheme == "sim"


def default_xend() -> str:
    """Return the standard xend endpoint: its unix socket if present, else localhost:8000."""
    if os.path.exists(DEFAULT_XEND_UNIX):
        return "unix:" + DEFAULT_XEND_UNIX
    return DEFAULT_XEND_TCP


def _bad(uri: str, why: str) -> VirtError:
    return VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.URI, f"connection URI {uri!r}: {why}")


def _check_xend(uri: str, value: str) -> str:
    if value.startswith("unix:"):
        path = value[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise _bad(uri, "xend=unix: needs a socket path")
        return "unix:" + path
    parts = urlsplit(value)
    if parts.scheme not in ("http",) or not parts.hostname:
        raise _bad(uri, f"xend={value!r} is neither an http:// URL nor unix:PATH")
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError as exc:
        raise _bad(uri, f"xend={value!r} has an invalid port") from exc
    return value if value.endswith("/") else value + "/"


def _check_hypervisor(uri: str, value: str) -> str:
    if value in _HYPERVISOR_KINDS:
        return value
    if value.startswith("sim:") and len(value) > len("sim:"):
        return value
    raise _bad(uri, f"hypervisor={value!r} is not one of auto, xenctrl, sim:PATH, none")


def _positive_int(uri: str, name: str, value: str, *, minimum: int = 1) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad(uri, f"{name}={value!r} is not an integer") from None
    if number < minimum:
        raise _bad(uri, f"{name}={value!r} must be at least {minimum}")
    return number


def parse_uri(uri: str | None = None) -> ConnectionURI:
    """Return the endpoints named by ``uri`` (``None``: ``$AIOVIRT_DEFAULT_URI`` or ``xen:///``).

    Raises :class:`VirtError` ``NO_SUPPORT`` for an unknown scheme and ``INVALID_ARG`` for a
    malformed endpoint, naming the offending part.
    """
    if uri is None:
        uri = os.environ.get("AIOVIRT_DEFAULT_URI") or DEFAULT_URI
    if not isinstance(uri, str):
        raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.URI,
                        f"connection URI must be a string, not {type(uri).__name__}")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _KNOWN_PARAMS:
        raise VirtError(ErrorNumber.NO_SUPPORT, ErrorDomain.URI,
                        f"{uri!r} (known URI schemes: xen:///, xen://HOST/, sim:///)")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _KNOWN_PARAMS[scheme]:
            raise _bad(uri, f"unknown parameter {key!r}")
        if key in params:
            raise _bad(uri, f"parameter {key!r} given twice")
        params[key] = value
    if parts.path not in ("", "/"):
        raise _bad(uri, f"unexpected path {parts.path!r} (use {scheme}:///)")
    connections = _positive_int(uri, "xend_connections", params.get("xend_connections", "32"))
    try:
        timeout = float(params.get("timeout", "30"))
    except ValueError:
        raise _bad(uri, f"timeout={params['timeout']!r} is not a number") from None
    if not timeout > 0:
        raise _bad(uri, "timeout must be positive")

    if scheme == "sim":
        if parts.netloc:
            raise _bad(uri, "a simulated node is always local (use sim:///)")
        domains = _positive_int(uri, "domains", params.get("domains", "3"), minimum=0)
        seed = params.get("seed")
        return ConnectionURI(
            uri=uri, scheme="sim", xend=None, xenstore=None, hypervisor=None,
            sim_domains=domains,
            sim_seed=None if seed is None else _positive_int(uri, "seed", seed, minimum=0),
            xend_connections=connections, timeout=timeout,
        )

    if parts.netloc:
        # A remote node: only its xend is reachable from here.
        try:
            host, port = parts.hostname, parts.port or 8000
        except ValueError as exc:
            raise _bad(uri, "invalid port") from exc
        if not host:
            raise _bad(uri, "missing host name")
        netloc = f"[{host}]" if ":" in host else host
        xend_default: str | None = f"http://{netloc}:{port}/"
        xenstore_default: str | None = None
        hypervisor_default: str | None = None
        stats_default: str | None = None
    else:
        xend_default = default_xend()
        xenstore_default = ""
        hypervisor_default = "auto"
        stats_default = "/"

    def endpoint(name: str, default: str | None) -> str | None:
        value = params.get(name)
        if value is None:
            return default
        if value == "none":
            return None
        if value == "":
            raise _bad(uri, f"{name}= is empty (use {name}=none to turn it off)")
        return value

    xend = endpoint("xend", xend_default)
    xenstore = endpoint("xenstore", xenstore_default)
    hypervisor = endpoint("hypervisor", hypervisor_default)
    stats_root = endpoint("stats_root", stats_default)
    if stats_root is not None and not stats_root.startswith("/"):
        raise _bad(uri, f"stats_root={stats_root!r} is not an absolute path")
    return ConnectionURI(
        uri=uri, scheme="xen",
        xend=None if xend is None else _check_xend(uri, xend),
        xenstore=xenstore,
        hypervisor=None if hypervisor is None else _check_hypervisor(uri, hypervisor),
        stats_root=stats_root, xend_connections=connections, timeout=timeout,
    )
