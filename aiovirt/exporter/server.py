"""The exporter's HTTP side: ``/metrics`` in Prometheus's text format, served by aiohttp.

Each request to ``/metrics`` refreshes every node once, concurrently (a node's refresh is
coalesced with any other caller's inside its connection), builds the metric families, and has
``prometheus_client`` write the exposition of those that changed since the previous scrape
(:class:`~aiovirt.exporter.exposition.ScrapeText`). Writing the text is CPU work proportional
to the number of series, so it runs in a worker thread: the event loop keeps serving other
requests and refreshes meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Sequence

import anyio.to_thread
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from aiovirt.exporter.exposition import ScrapeText, render_once
from aiovirt.exporter.metrics import NodeSample
from aiovirt.exporter.source import NodeSource

__all__ = ["DEFAULT_PORT", "Exporter", "parse_listen", "serve"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9177  # libvirt_exporter's
DEFAULT_TIMEOUT = 10.0  # seconds, when Prometheus does not say (its default scrape timeout)
_MARGIN = 0.25  # answer this much before Prometheus gives up on the scrape


def render(samples: Iterable[NodeSample]) -> bytes:
    """Return the Prometheus text exposition of one scrape's samples (nothing cached)."""
    return render_once(samples)


def parse_listen(text: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``HOST:PORT``, ``:PORT``, ``[v6]:PORT`` or ``HOST``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text or "0.0.0.0", DEFAULT_PORT
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


class Exporter:
    """A Prometheus exporter for ``sources`` (one per node), serving ``/metrics``."""

    def __init__(self, sources: Sequence[NodeSource]) -> None:
        """Serve ``sources``; their connections open at the first scrape."""
        self.sources = list(sources)
        self.scrapes = 0
        self.text = ScrapeText()

    async def scrape(self, timeout: float = DEFAULT_TIMEOUT) -> list[NodeSample]:  # noqa: ASYNC109
        """Refresh every node once, concurrently; return their samples in order."""
        self.scrapes += 1
        return list(await asyncio.gather(*(s.scrape(timeout) for s in self.sources)))

    async def render(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:  # noqa: ASYNC109
        """Return the text exposition of a fresh scrape of every node."""
        samples = await self.scrape(timeout)
        body: bytes = await anyio.to_thread.run_sync(self.text.render, samples)
        return body

    async def close(self) -> None:
        """Close every node's connection."""
        await asyncio.gather(*(s.close() for s in self.sources), return_exceptions=True)

    def app(self) -> web.Application:
        """Return the aiohttp application: ``/metrics`` and a small index page."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        timeout = DEFAULT_TIMEOUT
        header = request.headers.get("X-Prometheus-Scrape-Timeout-Seconds")
        if header:
            try:
                timeout = max(0.1, float(header) - _MARGIN)
            except ValueError:
                pass
        body = await self.render(timeout)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _index(self, request: web.Request) -> web.Response:
        nodes = "".join(f"<li>{s.name}</li>" for s in self.sources)
        return web.Response(
            text=f"<html><head><title>aiovirt exporter</title></head><body>"
                 f"<h1>aiovirt exporter</h1><p><a href='/metrics'>Metrics</a></p>"
                 f"<ul>{nodes}</ul></body></html>", content_type="text/html")


async def serve(sources: Sequence[NodeSource], host: str, port: int,
                *, announce: Callable[[str], None] | None = None) -> int:
    """Serve ``sources`` on ``host:port`` until SIGTERM or SIGINT; return the exit status.

    Once listening, calls ``announce`` with a line naming the address (the port the system
    chose, if 0 was asked for). Exit status 1 if it cannot listen.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exporter = Exporter(sources)
    runner = web.AppRunner(exporter.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc)
            return 1
        bound = _bound_address(site) or (host, port)
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        if announce is not None:
            announce(f"aiovirt exporter serving http://{shown}:{bound[1]}/metrics for "
                     f"{len(sources)} node(s)")
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        await exporter.close()
    return 0


def _bound_address(site: web.TCPSite) -> tuple[str, int] | None:
    server = site._server  # aiohttp keeps the asyncio server here
    sockets = getattr(server, "sockets", None)
    if not sockets:
        return None
    addr = sockets[0].getsockname()
    return str(addr[0]), int(addr[1])
