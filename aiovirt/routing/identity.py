"""Who a domain handle names, and the one check that an answer is still about it.

A handle's identity (name, id, UUID) is fixed when it is looked up. Domain ids are reused: a
domain that stops frees its id for the next one. So every answer a backend gives about an id
is checked with :func:`is_same` before it is used, and a domain that has gone (or whose id now
belongs to another domain) raises the error of :func:`gone`: never another domain's data.
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections.abc import Iterator
from typing import NamedTuple

from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.xen import NULL_UUID

__all__ = ["NULL_HANDLE", "Found", "Identity", "gone", "gone_if_missing", "is_missing",
           "is_same", "no_domain", "parse_uuid"]

NULL_HANDLE = NULL_UUID.bytes


class Identity:
    """A domain's name, id and UUID as they were when it was looked up (no I/O)."""

    __slots__ = ("_handle", "_id", "_name", "_uuid")

    def __init__(self, name: str, domid: int, uuid: uuidlib.UUID) -> None:
        self._name = name
        self._id = domid
        self._uuid = uuid
        self._handle = uuid.bytes

    @property
    def name(self) -> str:
        """The domain's name when it was looked up."""
        return self._name

    @property
    def id(self) -> int:
        """The domain's id (its hypervisor domid)."""
        return self._id

    @property
    def uuid(self) -> uuidlib.UUID:
        """The domain's UUID (all zeros for Domain-0)."""
        return self._uuid

    @property
    def handle(self) -> bytes:
        """The domain's UUID as 16 raw bytes (what the hypervisor calls its handle)."""
        return self._handle


class Found(NamedTuple):
    """A domain a backend found, made into a handle by the router."""

    name: str
    domid: int
    uuid: uuidlib.UUID


def is_same(ident: Identity, domid: int | None, handle: bytes) -> bool:
    """Whether an answer about ``domid`` whose UUID is ``handle`` (16 bytes) is about ``ident``.

    The id must be the same, and so must the UUID unless one side does not know it (all
    zeros: Domain-0, or a backend that gave none).
    """
    # Asked of every info() answer (thousands at once): the slots are read directly.
    mine = ident._handle
    return domid == ident._id and (
        handle == mine or handle == NULL_HANDLE or mine == NULL_HANDLE)


def gone(ident: Identity, uri: str, cause: BaseException | None = None) -> VirtError:
    """Return NO_DOMAIN naming ``ident``: it is no longer on the node of ``uri``."""
    err = VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM,
                    f"{ident.name!r} (id {ident.id}, uuid {ident.uuid}) is no longer on "
                    f"{uri!r}")
    err.__cause__ = cause
    return err


def no_domain(what: str, uri: str, cause: BaseException | None = None) -> VirtError:
    """Return NO_DOMAIN for a lookup of ``what`` (``"name 'web'"``, ``"id 7"``) on ``uri``."""
    err = VirtError(ErrorNumber.NO_DOMAIN, ErrorDomain.DOM, f"no domain with {what} on {uri!r}")
    err.__cause__ = cause
    return err


def is_missing(err: VirtError) -> bool:
    """Whether a backend's error means "no such domain or entry" (NO_DOMAIN, xenstore ENOENT)."""
    return err.code == ErrorNumber.NO_DOMAIN or getattr(err, "errno_name", None) == "ENOENT"


@contextlib.contextmanager
def gone_if_missing(ident: Identity, uri: str) -> Iterator[None]:
    """Turn a backend's no-such-domain answer into :func:`gone` naming ``ident``."""
    try:
        yield
    except VirtError as err:
        if is_missing(err):
            raise gone(ident, uri, err) from err
        raise


def parse_uuid(text: str | None) -> uuidlib.UUID | None:
    """Return the UUID in xend's 8-4-4-4-12 or 8-8-8-8 form (or ``/vm/<uuid>``), else None."""
    if not text:
        return None
    text = text.rsplit("/", 1)[-1].replace("-", "")
    try:
        return uuidlib.UUID(hex=text)
    except ValueError:
        return None
