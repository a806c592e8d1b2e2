"""The hypervisor backend: blocking hypercalls offloaded to threads (bounded), info coalesced.

libvirt 0.0.6 asked the hypervisor directly "for performance and accuracy" when it had root
rights. Hypercalls are blocking system calls, so here they run on worker threads, never on the
event loop, through a *driver*: ``xenctrl`` (ctypes on the real libxenctrl) or ``sim`` (the
simulated node's ``DIR/privcmd`` endpoint). The driver is chosen by a spec string:

- ``"xenctrl"``: the real hypervisor through libxenctrl;
- ``"auto"``: the same, under the name a URI uses when it does not say (fails the same way);
- ``"sim:/path/to/privcmd"``: a simulated node's endpoint.

Two pieces do the work:

- :class:`HypercallExecutor` runs the driver's calls on anyio's worker threads
  (``anyio.to_thread.run_sync``, in a copy of the caller's context), at most ``threads`` at
  once (its own ``CapacityLimiter``). Each call may take ``timeout`` seconds; a call that takes
  longer fails with ``OPERATION_TIMEOUT`` while its thread keeps its slot until the driver
  returns, so the bound holds even then, and a call its caller gave up on while it still
  waited for a slot never runs. :meth:`close <HypercallExecutor.close>` waits until no call
  is queued or running, so no thread does this backend's work afterwards.
- :class:`Hypervisor` coalesces :meth:`~Hypervisor.domain_info` and
  :meth:`~Hypervisor.list_domains` with an :class:`aiovirt.batching.Coalescer`: every such
  request joins the *forming* batch; the batch starts once the requests of the current loop
  iteration have joined, as one
  GETDOMAININFOLIST over all domains (paged by ``MAX_BATCH``); requests arriving while it is in
  flight form the next batch, which starts as soon as it returns. So a thousand concurrent
  ``info()`` calls cost one or two hypercalls, and no answer comes from a batch that started
  before its request arrived. A lone request asks for its one domain only, as 0.0.6 did.

Each waiter has its own future: cancelling one never cancels the batch, and a failing batch
fails only the requests it served, each with its own :class:`VirtError` (``XEN_CALL``,
``ErrorDomain.XEN``, naming the operation and domain) raised in the waiting task, so that
task's last error and handlers apply when the caller's seam reports it. Waiters have no timer of
their own (a timer per request would cost more than the batch): a request waits at most for the
batch in flight and its own, each bounded by the executor's timeout.

This module does not report errors (no ``@reporting``): it raises them, and the public seam that
called it (``Connection``) reports them against its own connection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, overload

import anyio
import anyio.to_thread

from aiovirt.batching import Coalescer
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.protocol.privcmd import MAX_BATCH, DomainInfoRecord, PhysInfo
from aiovirt.protocol.xen import DOMID_FIRST_RESERVED  # ids from here on are never listed

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THREADS",
    "DEFAULT_TIMEOUT",
    "DOMID_FIRST_RESERVED",
    "HypercallExecutor",
    "Hypervisor",
    "HypervisorDriver",
    "open_driver",
]

DEFAULT_THREADS = 4
DEFAULT_TIMEOUT = 10.0

_T = TypeVar("_T")


class HypervisorDriver(Protocol):
    """A blocking, thread-safe hypervisor interface; failures raise ``OSError`` with errno."""

    name: str

    def getinfolist(self, first_domid: int, max_count: int) -> list[DomainInfoRecord]:
        """Return up to ``max_count`` records of the domains with id >= ``first_domid``."""
        ...

    def pause(self, domid: int) -> None:
        """Pause domain ``domid``."""
        ...

    def unpause(self, domid: int) -> None:
        """Unpause domain ``domid``."""
        ...

    def destroy(self, domid: int) -> None:
        """Destroy domain ``domid``."""
        ...

    def set_max_mem(self, domid: int, kib: int) -> None:
        """Set the memory limit of domain ``domid`` to ``kib`` KiB."""
        ...

    def version(self) -> tuple[int, int, str]:
        """Return the hypervisor's ``(major, minor, extra)`` version."""
        ...

    def physinfo(self) -> PhysInfo:
        """Return the node's physical description."""
        ...

    def close(self) -> None:
        """Release the interface; called once no call is running."""
        ...


def open_driver(spec: str, timeout: float | None = DEFAULT_TIMEOUT) -> HypervisorDriver:
    """Return the driver named by ``spec`` (blocking: call it from a worker thread).

    Raises :class:`VirtError`: ``NO_XEN`` when the hypervisor cannot be reached, ``INVALID_ARG``
    for a spec that names no driver.
    """
    if spec in ("auto", "xenctrl"):
        from aiovirt.backends.xenctrl import XenctrlDriver

        return XenctrlDriver.open()
    if spec.startswith("sim:"):
        path = spec[len("sim:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.XEN,
                            f"hypervisor spec {spec!r} names no endpoint path")
        from aiovirt.backends.privcmd_sim import SimPrivcmdDriver

        return SimPrivcmdDriver.open(path, timeout)
    raise VirtError(
        ErrorNumber.INVALID_ARG, ErrorDomain.XEN,
        f"hypervisor spec {spec!r} (expected 'auto', 'xenctrl' or 'sim:/path/to/privcmd')",
    )


class HypercallExecutor:
    """Blocking driver calls offloaded to worker threads, at most ``threads`` at a time.

    The calls run on anyio's worker threads (``anyio.to_thread.run_sync``), bounded by this
    executor's own :class:`anyio.CapacityLimiter`, in a copy of the caller's context. Each call
    runs in a task of its own, which the executor owns and :meth:`close` awaits: the caller
    waits for it under its timeout, and when the caller gives up (timeout or cancellation) the
    executor cancels the call's anyio scope, which drops a call still waiting for a slot (it
    never runs) while a running one finishes in its thread and keeps its slot until then, so
    the bound holds even for abandoned calls. ``running`` and ``peak`` count the calls
    executing in threads now and at most so far.
    """

    def __init__(self, threads: int = DEFAULT_THREADS,
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        if threads < 1:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.XEN,
                            f"hypervisor thread limit {threads} (must be at least 1)")
        self.threads = threads
        self.timeout = timeout
        self.running = 0
        self.peak = 0
        self._count_lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(threads)
        self._calls: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def _counted(self, func: Callable[..., _T], *args: Any) -> _T:
        with self._count_lock:
            self.running += 1
            if self.running > self.peak:
                self.peak = self.running
        try:
            return func(*args)
        finally:
            with self._count_lock:
                self.running -= 1

    async def _offload(self, scope: anyio.CancelScope, func: Callable[..., _T],
                       args: tuple[Any, ...]) -> _T:
        with scope:
            return await anyio.to_thread.run_sync(self._counted, func, *args,
                                                  limiter=self._limiter)
        raise asyncio.CancelledError  # the caller gave up before the call got a thread

    async def run(self, func: Callable[..., _T], *args: Any) -> _T:
        """Return ``func(*args)`` run in a worker thread, in the caller's context.

        An exception of ``func`` is raised here, in the calling task. Raises ``TimeoutError``
        after :attr:`timeout` seconds, counted from the submission, and ``RuntimeError`` once
        closed. When the caller times out or is cancelled, a call still queued for a thread is
        dropped (it never runs); a running one finishes in the background, keeping its slot.
        """
        if self._closed:
            raise RuntimeError("the hypercall executor is closed")
        scope = anyio.CancelScope()
        call = asyncio.get_running_loop().create_task(self._offload(scope, func, args))
        self._calls.add(call)
        call.add_done_callback(self._finished)
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(call)
        except BaseException:
            scope.cancel()  # queued: never runs; running: finishes in its thread
            raise

    def _finished(self, call: asyncio.Task[Any]) -> None:
        self._calls.discard(call)
        if not call.cancelled():
            call.exception()  # retrieved: the caller may have stopped waiting for it

    async def close(self) -> None:
        """Refuse new calls and wait until no call of this executor is queued or running.

        No thread does this executor's work afterwards; anyio's idle worker threads are
        shared by the event loop and end with it (or after ten idle seconds).
        """
        self._closed = True
        if self._calls:
            await asyncio.wait(list(self._calls))


class Hypervisor:
    """The hypervisor of one node, through a driver, with coalesced domain information.

    Open with ``hv = await Hypervisor.open(spec)`` (or ``async with await Hypervisor.open(...)``)
    and close with ``await hv.close()``. ``stats`` counts batches (``"batches"``), the hypercalls
    they made (``"getinfolist"``) and the requests they answered (``"info_requests"``).
    """

    def __init__(self, driver: HypervisorDriver, executor: HypercallExecutor,
                 spec: str | None = None) -> None:
        self.driver = driver
        self.executor = executor
        self.spec = spec or driver.name
        self.stats: Counter[str] = Counter()
        self._batches: Coalescer[int | None, Any] = Coalescer(
            self._serve, self._batch_error, name=f"aiovirt hypervisor batches ({self.spec})")
        self._closing: asyncio.Task[None] | None = None
        self._version: int | None = None

    @classmethod
    async def open(cls, spec: str = "auto", *, threads: int = DEFAULT_THREADS,
                   call_timeout: float | None = DEFAULT_TIMEOUT) -> Hypervisor:
        """Return a :class:`Hypervisor` on the driver named by ``spec``.

        ``threads`` bounds the worker threads, ``call_timeout`` each driver call (seconds).
        Raises :class:`VirtError` ``NO_XEN`` (saying why) when no hypervisor can be reached.
        """
        executor = HypercallExecutor(threads, call_timeout)
        try:
            driver = await executor.run(open_driver, spec, call_timeout)
        except BaseException as exc:
            await executor.close()
            if isinstance(exc, TimeoutError):
                raise VirtError(ErrorNumber.NO_XEN, ErrorDomain.XEN,
                                f"{spec}: no answer within {call_timeout} s") from exc
            raise
        return cls(driver, executor, spec)

    async def __aenter__(self) -> Hypervisor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closing is not None else "open"
        return f"<Hypervisor {self.spec} {state}>"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closing is not None

    async def close(self) -> None:
        """Refuse new calls, answer the accepted ones, join the threads, close the driver.

        Idempotent; cancelling the caller does not interrupt the shutdown.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        try:
            await self._batches.close()  # serves the batch in flight and the forming one
        finally:
            await self.executor.close()
            self.driver.close()

    # -- the single operations -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing is not None:
            raise VirtError(ErrorNumber.OPERATION_INVALID, ErrorDomain.XEN,
                            f"the hypervisor connection ({self.spec}) is closed")

    async def _call(self, op: str, domid: int | None, func: Callable[..., _T], *args: Any) -> _T:
        self._check_open()
        try:
            return await self.executor.run(func, *args)
        except VirtError:
            raise
        except Exception as exc:
            raise self._error(op, domid, exc) from exc

    async def pause(self, domid: int) -> None:
        """Pause domain ``domid`` (PAUSEDOMAIN)."""
        await self._call("PAUSEDOMAIN", _checked(domid), self.driver.pause, domid)

    async def unpause(self, domid: int) -> None:
        """Unpause domain ``domid`` (UNPAUSEDOMAIN)."""
        await self._call("UNPAUSEDOMAIN", _checked(domid), self.driver.unpause, domid)

    async def destroy(self, domid: int) -> None:
        """Destroy domain ``domid`` (DESTROYDOMAIN)."""
        await self._call("DESTROYDOMAIN", _checked(domid), self.driver.destroy, domid)

    async def set_max_memory(self, domid: int, kib: int) -> None:
        """Set the memory limit of domain ``domid`` to ``kib`` KiB (SETDOMAINMAXMEM)."""
        if type(kib) is not int or kib < 0:
            raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.XEN,
                            f"maximum memory {kib!r} KiB for domain {domid}")
        await self._call("SETDOMAINMAXMEM", _checked(domid), self.driver.set_max_mem, domid, kib)

    async def version(self) -> int:
        """Return the running hypervisor's version as ``major * 1_000_000 + minor * 1_000``."""
        if self._version is None:
            major, minor, _extra = await self._call("XEN_VERSION", None, self.driver.version)
            self._version = major * 1_000_000 + minor * 1_000
        return self._version

    async def physinfo(self) -> PhysInfo:
        """Return the node's physical description (memory in pages)."""
        return await self._call("PHYSINFO", None, self.driver.physinfo)

    # -- coalesced domain information ------------------------------------------------------

    async def domain_info(self, domid: int) -> DomainInfoRecord | None:
        """Return domain ``domid``'s record from a batch started after this call, or None.

        None means no such domain (a vanished id never yields another domain's record).
        """
        return await self.request_info(domid)

    async def list_domains(self) -> list[DomainInfoRecord]:
        """Return the records of every domain, in id order, from a batch started after this call."""
        return await self.request_info(None)

    @overload
    def request_info(self, domid: int) -> asyncio.Future[DomainInfoRecord | None]: ...

    @overload
    def request_info(self, domid: None) -> asyncio.Future[list[DomainInfoRecord]]: ...

    def request_info(self, domid: int | None) -> asyncio.Future[Any]:
        """Return a future of ``domid``'s record (or None), or of every record for ``domid=None``.

        What :meth:`domain_info` and :meth:`list_domains` await, for callers that ask for
        thousands at once: a plain future costs no coroutine, and gathered futures cost no task
        each. The request joins the batch forming now, so its answer comes from a hypercall made
        after this call. The future is this request's own: cancelling it leaves the batch to the
        others. Errors (closed, invalid id) are set on the future, not raised.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closing is not None or (domid is not None and (
                type(domid) is not int or not 0 <= domid < DOMID_FIRST_RESERVED)):
            try:
                self._check_open()
                _checked(domid)
            except VirtError as err:
                fut.set_exception(err)
            return fut
        return self._batches.request(domid)

    def _fetch_all(self) -> list[DomainInfoRecord]:
        """Return every domain's record (blocking; in a worker thread)."""
        records: list[DomainInfoRecord] = []
        first = 0
        while True:
            page = self.driver.getinfolist(first, MAX_BATCH)
            self.stats["getinfolist"] += 1
            records.extend(page)
            if len(page) < MAX_BATCH:
                return records
            first = page[-1].domid + 1
            if first >= DOMID_FIRST_RESERVED:
                return records

    def _fetch_one(self, domid: int) -> list[DomainInfoRecord]:
        """Return ``[record]`` of ``domid``, or ``[]`` if it does not exist (blocking)."""
        page = self.driver.getinfolist(domid, 1)
        self.stats["getinfolist"] += 1
        return [rec for rec in page[:1] if rec.domid == domid]

    async def _serve(self, domids: list[int | None]) -> list[Any]:
        """Answer one batch with one GETDOMAININFOLIST (a lone request asks for its domain)."""
        self.stats["batches"] += 1
        self.stats["info_requests"] += len(domids)
        if len(domids) == 1 and domids[0] is not None:
            records = await self.executor.run(self._fetch_one, domids[0])
        else:
            records = await self.executor.run(self._fetch_all)
        by_id = {rec.domid: rec for rec in records}
        return [list(records) if domid is None else by_id.get(domid) for domid in domids]

    def _batch_error(self, domid: int | None, exc: BaseException | None) -> VirtError:
        """Return one waiter's own error: the batch failed with ``exc``, or closed (None)."""
        if exc is None:
            return VirtError(ErrorNumber.OPERATION_INVALID, ErrorDomain.XEN,
                             f"the hypervisor connection ({self.spec}) closed before "
                             "GETDOMAININFOLIST answered")
        err = self._error("GETDOMAININFOLIST", domid, exc)
        err.__cause__ = exc
        return err

    def _error(self, op: str, domid: int | None, exc: BaseException) -> VirtError:
        """Return the :class:`VirtError` for driver call ``op`` on ``domid`` failing as ``exc``."""
        target = "all domains" if domid is None else f"domain {domid}"
        where = f"{op} for {target} through {self.spec}"
        if isinstance(exc, VirtError):
            return exc.copy()
        if isinstance(exc, TimeoutError):
            return VirtError(ErrorNumber.OPERATION_TIMEOUT, ErrorDomain.XEN,
                             f"{where}: no answer within {self.executor.timeout} s")
        if isinstance(exc, RuntimeError) and self.executor.closed:
            return VirtError(ErrorNumber.OPERATION_INVALID, ErrorDomain.XEN,
                             f"{where}: the hypervisor connection is closed")
        if isinstance(exc, OSError):
            return VirtError(ErrorNumber.XEN_CALL, ErrorDomain.XEN,
                             f"{where}: {exc.strerror or exc}", int1=exc.errno or 0)
        return VirtError(ErrorNumber.XEN_CALL, ErrorDomain.XEN, f"{where}: {exc!r}")


def _checked(domid: object) -> int:
    """Return ``domid`` if it can name a domain, else raise ``INVALID_ARG``."""
    if type(domid) is not int or not 0 <= domid < DOMID_FIRST_RESERVED:
        raise VirtError(ErrorNumber.INVALID_ARG, ErrorDomain.XEN,
                        f"domain id {domid!r} (must be an integer from 0 to "
                        f"{DOMID_FIRST_RESERVED - 1})")
    return domid
