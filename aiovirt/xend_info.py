"""What xend says about domains: its domain records read into values, and the coalescing of
concurrent ``info()`` calls on the xend route into as few HTTP requests as possible.

Split from :mod:`aiovirt.connection`, which decides *when* xend answers; this module knows how
to read the answer. The event source reads xend's domain list through it too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from aiovirt.backends.xend import XendClient
from aiovirt.domain import DomainInfo
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.sexpr import SExpr
from aiovirt.protocol.states import state_from_xend

if TYPE_CHECKING:
    from aiovirt.connection import Connection

__all__ = [
    "XendDomainRecord",
    "XendInfoBatches",
    "info_from_xend",
    "int_field",
    "is_enoent",
    "parse_uuid",
    "read_domain_sxpr",
    "record_fields",
]

log = logging.getLogger(__name__)

ZERO_UUID = uuidlib.UUID(int=0)


def is_enoent(err: VirtError) -> bool:
    """Return True if ``err`` is the xenstore daemon's ENOENT."""
    return getattr(err, "errno_name", None) == "ENOENT"


def parse_uuid(text: str | None) -> uuidlib.UUID | None:
    """Return the UUID in xend's 8-4-4-4-12 or 8-8-8-8 form (or ``/vm/<uuid>``), else None."""
    if not text:
        return None
    text = text.rsplit("/", 1)[-1].replace("-", "")
    try:
        return uuidlib.UUID(hex=text)
    except ValueError:
        return None


def record_fields(sx: SExpr) -> dict[str, str]:
    """Return the first atom value of each ``(key value)`` child of ``sx`` (one pass)."""
    out: dict[str, str] = {}
    if isinstance(sx, list):
        for item in sx[1:]:
            if isinstance(item, list) and item and isinstance(item[0], str):
                key = item[0]
                if key not in out:
                    value = item[1] if len(item) > 1 else ""
                    out[key] = value if isinstance(value, str) else ""
    return out


def int_field(text: str | None, default: int = 0) -> int:
    """Return xend's integer (or float) text as an int, ``default`` when absent or bad."""
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            return default


class XendDomainRecord(NamedTuple):
    """One domain as xend describes it: identity, its first-level fields, the whole sxpr."""

    name: str
    domid: int | None
    uuid: uuidlib.UUID
    fields: dict[str, str]
    sx: SExpr


def read_domain_sxpr(sx: SExpr) -> XendDomainRecord:
    """Return the record of xend's ``(domain ...)`` S-expression."""
    f = record_fields(sx)
    domid = int_field(f.get("domid"), -1) if f.get("domid") else None
    return XendDomainRecord(f.get("name", ""), domid if domid is None or domid >= 0 else None,
                       parse_uuid(f.get("uuid")) or ZERO_UUID, f, sx)


def info_from_xend(rec: XendDomainRecord) -> DomainInfo:
    """Return libvirt's info (KiB, nanoseconds) from xend's record (MiB, float seconds)."""
    f = rec.fields
    memory = int_field(f.get("memory")) * 1024
    max_mem = int_field(f.get("maxmem")) * 1024 or memory
    vcpus = int_field(f.get("online_vcpus")) or int_field(f.get("vcpus"))
    try:
        cpu_time = round(float(f.get("cpu_time") or 0.0) * 1e9)
    except ValueError:
        cpu_time = 0
    return DomainInfo(state_from_xend(f.get("state")), max(max_mem, memory), memory, vcpus,
                      cpu_time)


class XendInfoBatches:
    """Coalesces concurrent ``info()`` calls on the xend route, as the hypervisor backend does.

    Every request joins the *forming* batch; the batch starts once the requests of the current
    loop iteration have joined, and requests arriving while one is in flight form the next. So
    no answer comes from an HTTP request started before its call. A batch asks xend once for
    every domain's detail (``GET /xend/domain?detail=1``) when that is cheaper than asking per
    domain, i.e. when it holds at least :attr:`MIN_LIST` requests and at least half as many
    as the node has domains (as last seen); otherwise it asks per domain, concurrently. Each
    waiter has its own future (cancelling one leaves the batch to the others) and its own copy
    of an error, raised and reported in the waiting task.
    """

    MIN_LIST = 8

    def __init__(self, conn: Connection, xend: XendClient) -> None:
        """Coalesce ``conn``'s info() calls that go to ``xend``."""
        self._conn = conn
        self._xend = xend
        self._forming: list[tuple[asyncio.Future[XendDomainRecord | None], int]] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._known = 0  # domains on the node at the last list (0: not listed yet)
        self.stats: dict[str, int] = {"batches": 0, "lists": 0, "single": 0}

    def request(self, domid: int) -> asyncio.Future[XendDomainRecord | None]:
        """Return a future of domain ``domid``'s record (None: no such domain)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[XendDomainRecord | None] = loop.create_future()
        batch = self._forming
        if batch is None:
            batch = self._forming = []
            if self._runner is None:
                # Its first step comes after every task scheduled in this loop iteration.
                self._runner = loop.create_task(self._run(), name=f"aiovirt xend info "
                                                f"({self._conn.uri})")
        batch.append((fut, domid))
        return fut

    async def close(self) -> None:
        """Stop the runner; the requests it held fail with INVALID_CONN."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        if self._forming is not None:
            self._fail(self._forming, None)
            self._forming = None

    def seen(self, count: int) -> None:
        """Note that the node had ``count`` domains (from a detailed list made elsewhere)."""
        self._known = count

    async def _run(self) -> None:
        try:
            while (batch := self._forming) is not None:
                self._forming = None
                try:
                    await self._serve(batch)
                except asyncio.CancelledError:
                    self._fail(batch, None)
                    raise
                except Exception as exc:  # a bug here must not leave waiters hanging
                    log.exception("%s: xend info batch failed", self._conn.uri)
                    self._fail(batch, exc)
        finally:
            self._runner = None

    async def _serve(
        self, batch: list[tuple[asyncio.Future[XendDomainRecord | None], int]],
    ) -> None:
        live = [(fut, domid) for fut, domid in batch if not fut.done()]
        if not live:
            return
        self.stats["batches"] += 1
        if len(live) >= self.MIN_LIST and len(live) * 2 >= self._known:
            self.stats["lists"] += 1
            try:
                recs = [read_domain_sxpr(sx) for sx in await self._xend.list_domains_detail()]
            except Exception as exc:
                self._fail(live, exc)
                return
            self._known = len(recs)
            by_id = {r.domid: r for r in recs if r.domid is not None}
            for fut, domid in live:
                if not fut.done():
                    fut.set_result(by_id.get(domid))
            return
        self.stats["single"] += len(live)
        results: list[XendDomainRecord | BaseException | None]
        if len(live) == 1:  # the common lone call: no task of its own
            try:
                results = [await self._one(live[0][1])]
            except Exception as exc:
                results = [exc]
        else:
            results = await asyncio.gather(*(self._one(domid) for _, domid in live),
                                           return_exceptions=True)
        for (fut, _), result in zip(live, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, BaseException):
                self._fail([(fut, 0)], result)
            else:
                fut.set_result(result)

    async def _one(self, domid: int) -> XendDomainRecord | None:
        try:
            return read_domain_sxpr(await self._xend.domain(domid))
        except VirtError as err:
            if err.code == ErrorNumber.NO_DOMAIN or is_enoent(err):
                return None
            raise

    def _fail(self, batch: Sequence[tuple[asyncio.Future[Any], int]],
              exc: BaseException | None) -> None:
        """Fail each unanswered request of ``batch`` with its own error (None: closed)."""
        for fut, _ in batch:
            if fut.done():
                continue
            if isinstance(exc, VirtError):
                err = exc.copy()
                err.__cause__ = exc.__cause__
            elif exc is None:
                err = VirtError(ErrorNumber.INVALID_CONN, ErrorDomain.NONE,
                                f"connection to {self._conn.uri!r} (closed before the Xen "
                                "daemon answered)", conn=self._conn)
            else:
                err = VirtError(ErrorNumber.INTERNAL_ERROR, ErrorDomain.XEND,
                                f"asking {self._xend.where} for domain information: "
                                f"{type(exc).__name__}: {exc}")
                err.__cause__ = exc
            fut.set_exception(err)
