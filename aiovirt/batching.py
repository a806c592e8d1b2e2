"""One request coalescer: concurrent requests answered together by as few round trips as possible.

The hypervisor backend (``GETDOMAININFOLIST`` for every ``info()``) and the xend route of the
router (one detailed domain list for many ``info()`` calls) both gather the requests made at
once into one *batch* and answer it with one call. The rules that make that safe live here,
once:

- **Freshness.** A request joins the batch that is *forming*; the batch is served once every
  request of the current loop iteration has joined (the runner's first step comes after every
  task already scheduled), and requests arriving while a batch is being served form the next
  one, served as soon as it returns. So no answer ever comes from a round trip that started
  before its request was made.
- **A cancelled waiter leaves the batch.** Each request has its own future: cancelling it
  never cancels the batch, and a batch whose waiters have all gone is not served at all.
- **Each waiter gets its own error.** When serving fails, every waiter's future gets an error
  of its own, built for it by the owner's ``error`` function (so each is raised, stored as the
  last error and handed to handlers in its own task, never shared between tasks).
- **Close leaves no waiter hanging.** :meth:`Coalescer.close` either lets the batch in flight
  and the forming one be served (``cancel=False``) or cancels the runner; then every request
  still unanswered fails with ``error(key, None)``.

The runner task is created on demand by :meth:`Coalescer.request` and owned by the coalescer,
which the backend or route that made it closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

K = TypeVar("K")
R = TypeVar("R")


class Coalescer(Generic[K, R]):
    """Coalesce requests keyed by ``K`` into batches served by one ``serve(keys)`` call.

    ``serve(keys)`` receives the keys of the live requests of one batch (in request order, a
    key once per request) and returns one answer per key, in the same order: a result, or an
    exception for that request alone. If ``serve`` raises, every request of the batch fails.
    ``error(key, exc)`` builds the exception a request for ``key`` receives when serving raised
    ``exc``, or when the coalescer closed before answering (``exc`` is None); it is called once
    per waiter, so each gets its own object. ``stats`` counts ``"batches"`` served and the
    ``"requests"`` they answered.
    """

    def __init__(
        self,
        serve: Callable[[list[K]], Awaitable[Sequence[R | BaseException]]],
        error: Callable[[K, BaseException | None], BaseException],
        *,
        name: str,
    ) -> None:
        self._serve = serve
        self._error = error
        self._name = name
        self._forming: list[tuple[asyncio.Future[R], K]] | None = None
        self._serving: list[tuple[asyncio.Future[R], K]] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.stats: dict[str, int] = {"batches": 0, "requests": 0}

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def request(self, key: K) -> asyncio.Future[R]:
        """Return a future of the answer for ``key``, from a batch served after this call.

        The future is this request's own: cancel it to leave the batch. Once the coalescer is
        closed, the future already holds ``error(key, None)``.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        if self._closed:
            fut.set_exception(self._error(key, None))
            return fut
        batch = self._forming
        if batch is None:
            batch = self._forming = []
            if self._runner is None:
                # Its first step comes after every task already scheduled in this loop
                # iteration, so requests made "at once" all join this batch.
                self._runner = loop.create_task(self._run(), name=self._name)
        batch.append((fut, key))
        return fut

    async def close(self, *, cancel: bool = False) -> None:
        """Take no more requests; end the runner; fail every request left unanswered.

        ``cancel=False`` serves the batch in flight and the forming one first (the accepted
        requests are answered); ``cancel=True`` cancels the round trip in flight. Idempotent.
        """
        self._closed = True
        runner = self._runner
        if runner is not None:
            if cancel:
                runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        for batch in (self._serving, self._forming):
            if batch is not None:
                self._fail(batch, None)
        self._serving = self._forming = None

    async def _run(self) -> None:
        try:
            while (batch := self._forming) is not None:
                self._forming = None
                self._serving = batch
                try:
                    await self._serve_batch(batch)
                except asyncio.CancelledError:
                    self._fail(batch, None)
                    raise
                self._serving = None
        finally:
            self._runner = None

    async def _serve_batch(self, batch: list[tuple[asyncio.Future[R], K]]) -> None:
        live = [(fut, key) for fut, key in batch if not fut.done()]
        if not live:
            return
        self.stats["batches"] += 1
        self.stats["requests"] += len(live)
        try:
            answers = await self._serve([key for _, key in live])
        except Exception as exc:
            self._fail(live, exc)
            return
        for (fut, key), answer in zip(live, answers, strict=True):
            if fut.done():
                continue
            if isinstance(answer, BaseException):
                fut.set_exception(self._error(key, answer))
            else:
                fut.set_result(answer)

    def _fail(self, batch: list[tuple[asyncio.Future[R], K]],
              exc: BaseException | None) -> None:
        for fut, key in batch:
            if not fut.done():
                fut.set_exception(self._error(key, exc))
