"""An event-driven guardian: bring protected domains back from their checkpoint when they stop
without their owner meaning it.

    python examples/orchestrate.py                 # demo on a simulated node
    python examples/orchestrate.py URI NAME...     # guard NAMEs on a real node (Ctrl-C stops)

At start the guardian checkpoints each protected domain: it saves it to a file and restores it
at once (Xen 3.0's save stops the domain, so a checkpoint is a save plus a restore). Then it
reacts to the node's events:

- ``STOPPED destroyed`` or ``STOPPED crashed`` of a protected domain: nobody asked for that.
  Unless Xen restarted it already (``on_crash = restart``), restore it from its checkpoint.
- ``STOPPED shutdown`` or ``saved``: its owner stopped it on purpose; leave it alone.
- ``STARTED`` of any domain: a new domain appeared; this is where monitoring would be attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path

import aiovirt
from aiovirt.errors import ErrorNumber, VirtError
from aiovirt.events import EventKind

log = logging.getLogger("guardian")

UNINTENDED = {"destroyed", "crashed"}


class Guardian:
    """Keeps ``names`` running on ``conn`` from checkpoints kept in ``store``."""

    def __init__(self, conn: aiovirt.Connection, names: list[str], store: Path) -> None:
        self.conn = conn
        self.names = set(names)
        self.store = store
        # what the guardian did, for whoever wants to know (the demo paces itself on it)
        self.actions: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def checkpoint_path(self, name: str) -> Path:
        """Return where ``name``'s checkpoint lives."""
        return self.store / f"{name}.save"

    async def checkpoint(self, name: str) -> None:
        """Save ``name`` and restore it at once: the file is its checkpoint."""
        dom = await self.conn.lookup_by_name(name)
        path = self.checkpoint_path(name)
        await dom.save(path)
        await self.conn.restore(path)
        log.info("checkpointed %s to %s", name, path)

    async def is_running(self, name: str) -> bool:
        """Return True if a domain called ``name`` runs now."""
        try:
            await self.conn.lookup_by_name(name)
        except VirtError as err:
            if err.code == ErrorNumber.NO_DOMAIN:
                return False
            raise
        return True

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """React to events until cancelled."""
        for name in sorted(self.names):
            await self.checkpoint(name)
        async with self.conn.events(interval=0.5) as events:
            if ready is not None:
                ready.set()
            async for event in events:
                dom = event.domain
                if dom is None:  # OVERFLOW: we may have missed a stop; look at every domain
                    await self.sweep()
                    continue
                if event.kind is EventKind.STARTED:
                    log.info("%s started (%s, id %d): attach monitoring here",
                             dom.name, event.detail, dom.id)
                elif event.kind is EventKind.STOPPED and dom.name in self.names:
                    if event.detail in UNINTENDED:
                        await self.bring_back(dom.name, event.detail)
                    else:
                        self.actions.put_nowait((dom.name, "left alone"))
                        log.info("%s stopped (%s) by its owner: leaving it", dom.name,
                                 event.detail)

    async def bring_back(self, name: str, why: str) -> None:
        """Restore ``name`` from its checkpoint unless it runs again already."""
        if await self.is_running(name):
            log.info("%s %s but Xen restarted it already", name, why)
            return
        await self.conn.restore(self.checkpoint_path(name))
        self.actions.put_nowait((name, "restored"))
        log.warning("%s %s: restored it from its checkpoint", name, why)

    async def sweep(self) -> None:
        """Restore every protected domain that is not running."""
        for name in sorted(self.names):
            if not await self.is_running(name):
                await self.bring_back(name, "is gone")


async def demo() -> None:
    """Guard vm1 and vm2 of a simulated node while an 'operator' makes mistakes."""
    with tempfile.TemporaryDirectory(prefix="aiovirt-guardian-") as store:
        async with aiovirt.open("sim:///?domains=3") as conn:
            conn.set_error_handler(_log_error)
            guardian = Guardian(conn, ["vm1", "vm2"], Path(store))
            ready = asyncio.Event()
            task = asyncio.create_task(guardian.run(ready))
            await ready.wait()

            log.info("operator: destroys vm1 by mistake")
            await (await conn.lookup_by_name("vm1")).destroy()
            assert await guardian.actions.get() == ("vm1", "restored")

            log.info("operator: shuts vm2 down on purpose")
            await (await conn.lookup_by_name("vm2")).shutdown()
            assert await guardian.actions.get() == ("vm2", "left alone")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            doms = await conn.list_domains()
            states = await asyncio.gather(*(d.info() for d in doms), return_exceptions=True)
            log.info("domains now: %s", ", ".join(
                f"{d.name} ({s.state.name.lower() if not isinstance(s, BaseException) else 'gone'})"
                for d, s in zip(doms, states, strict=True)))


def _log_error(_ctx: object, err: VirtError) -> None:
    # "no such domain" is an answer here, not a failure: log errors instead of printing them
    log.debug("libvirt error: %s", err)


async def guard(uri: str, names: list[str]) -> None:
    """Guard ``names`` on the node at ``uri`` until interrupted."""
    with tempfile.TemporaryDirectory(prefix="aiovirt-guardian-") as store:
        async with aiovirt.open(uri) as conn:
            conn.set_error_handler(_log_error)
            await Guardian(conn, names, Path(store)).run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        if len(sys.argv) > 2:
            asyncio.run(guard(sys.argv[1], sys.argv[2:]))
        else:
            asyncio.run(demo())
