"""A small stand-in for real xend's HTTP layer, speaking one version's conventions at a time.

The simulated node speaks one dialect; the real daemons differed in how they signalled errors
(``xend-http.md`` §1.4, §2.5). This server reproduces those differences, and records what the
client sent, so that the xend backend can be checked against every convention.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from aiovirt.protocol import sexpr

DOM0 = ("(domain (domid 0) (uuid 00000000-0000-0000-0000-000000000000) (vcpus 2) (memory 1715) "
        "(maxmem 1715) (name Domain-0) (state r-----) (cpu_time 3129.46823762) (online_vcpus 2))")
VM1 = ("(domain (domid 3) (uuid 8f5d6a3e-02c1-9b7e-4d22-a1b0c3e5f719) (vcpus 1) (memory 256) "
       "(maxmem 256) (name vm1) (image (linux (kernel /boot/vmlinuz))) (state -b----) "
       "(cpu_time 18.732104588) (online_vcpus 1))")


@dataclass
class FakeXend:
    """What the fake saw, and how it answers (``version`` selects the error convention)."""

    version: str = "3.0.3"
    requests: list[web.Request] = field(default_factory=list)
    transports: set[int] = field(default_factory=set)
    big_body: bytes = b""
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def domains(self) -> dict[str, str]:
        return {"Domain-0": DOM0, "vm1": VM1, "0": DOM0, "3": VM1}

    def unknown_domain(self, name: str) -> web.StreamResponse:
        if self.version in ("3.0.0", "3.0.2", "3.0.3"):
            return web.Response(status=404, reason="Not found", text=f"No such domain {name}")
        if self.version == "3.0.4":
            return web.Response(status=404, reason="Not found",
                                text=f"No domain named '{name}'.")
        if self.version == "3.1":
            return web.Response(status=500, reason="Internal server error")
        return web.Response(status=404, reason="Not found", text=f"<Fault 3: '{name}'>")

    def failed(self, op: str, message: str, accepted: bool = False) -> web.StreamResponse:
        body = sexpr.dumps(["xend.err", message])
        if self.version in ("3.0.0", "3.0.2"):
            return web.Response(status=202 if accepted else 200, reason="OK", body=body,
                                content_type="application/sxp")
        return web.Response(status=500, reason=f"Request failed: {op}", body=body,
                            content_type="application/sxp")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.transports.add(id(request.transport))
        accept = request.headers.get("Accept")
        if request.headers.get("User-Agent") and (accept is None
                                                  or "application/sxp" not in accept):
            return web.Response(text="<html>xend</html>", content_type="text/html")
        path = request.path.rstrip("/")
        form = await request.post() if request.method == "POST" else {}
        op = form.get("op")
        if path == "/xend/node":
            return web.Response(body=b"(node (machine x86_64) (nr_cpus 2) (xen_major 3) "
                                     b"(xen_minor 0))", content_type="application/sxp")
        if path == "/xend/domain" and request.method == "GET":
            if request.query.get("detail") == "1":
                return web.Response(body=f"({DOM0} {VM1})", content_type="application/sxp")
            return web.Response(body=b"(Domain-0 vm1)", content_type="application/sxp")
        if path == "/xend/big":
            return web.Response(body=self.big_body, content_type="application/sxp")
        if path == "/xend/domain" and op == "restore":
            return self.failed("restore", f"can't read guest state file {form.get('file')}")
        if path.startswith("/xend/domain/"):
            name = path[len("/xend/domain/"):]
            if name not in self.domains():
                return self.unknown_domain(name)
            if request.method == "GET":
                return web.Response(body=self.domains()[name], content_type="application/sxp")
            if op == "pause" and name in ("0", "Domain-0"):
                return self.failed("pause", "Cannot pause privileged domain 0")
            if op in ("pause", "unpause"):
                return web.Response(status=200)
            if op == "stall":
                await self.release.wait()
                raise ConnectionResetError("stalled request dropped")
            if op == "save":
                return self.failed("save", "Failed to save domain", accepted=True)
            return web.Response(status=501, reason=f"Operation not implemented: {op}",
                                text=f"Operation not implemented: {op}",
                                content_type="application/sxp")
        return web.Response(status=404, reason="Not found", text=f"Not found: {path}")


@asynccontextmanager
async def fake_xend(socket_path: str, version: str = "3.0.3") -> AsyncIterator[FakeXend]:
    """Serve a :class:`FakeXend` on the unix socket ``socket_path``."""
    fake = FakeXend(version)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.UnixSite(runner, socket_path)
    await site.start()
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()
