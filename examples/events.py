"""Print a node's domain lifecycle events as they happen.

    python examples/events.py            # a simulated node, changed by a small demo script
    python examples/events.py URI        # a real (or already running simulated) node: Ctrl-C stops

With no URI, a simulated node is started in this process, and a demo task suspends, resumes,
balloons, saves, restores, shuts down and destroys some of its domains so there is something to
see.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import aiovirt
from aiovirt.events import DomainEvent, EventKind


def show(event: DomainEvent) -> None:
    """Print one event as a line: time, domain, kind, detail."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
    millis = int(event.timestamp * 1000) % 1000
    dom = event.domain
    who = f"{dom.name} (id {dom.id})" if dom is not None else "-"
    print(f"{stamp}.{millis:03d}  {who:<18} {event.kind.value:<15} {event.detail}")


async def demo(conn: aiovirt.Connection, workdir: Path) -> None:
    """Change the node the way an operator would, one step every few tenths of a second."""
    vm1 = await conn.lookup_by_name("vm1")
    vm2 = await conn.lookup_by_name("vm2")
    vm3 = await conn.lookup_by_name("vm3")
    image = workdir / "vm2.save"
    steps = [
        ("suspend vm1", vm1.suspend()),
        ("resume vm1", vm1.resume()),
        ("balloon vm1 to 64 MiB", vm1.set_memory(65536)),
        ("save vm2", vm2.save(image)),
        ("restore vm2", conn.restore(image)),
        ("shut down vm3", vm3.shutdown()),
        ("destroy vm1", vm1.destroy()),
    ]
    for what, action in steps:
        await asyncio.sleep(0.4)
        print(f"--- {what}")
        await action


async def main(uri: str | None) -> None:
    """Watch the node at ``uri`` (or a demo node) and print every event."""
    async with aiovirt.open(uri or "sim:///?domains=3") as conn:
        # `async with` returns once the watches are set: nothing done after it is missed
        async with conn.events(interval=0.2) as events:
            if uri is not None:
                print(f"watching {uri}; Ctrl-C stops", file=sys.stderr)
                async for event in events:
                    show(event)
                return
            with tempfile.TemporaryDirectory(prefix="aiovirt-events-") as workdir:
                actor = asyncio.create_task(demo(conn, Path(workdir)))
                try:
                    async for event in events:
                        show(event)
                        if event.kind is EventKind.STOPPED and event.domain is not None \
                                and event.domain.name == "vm1":
                            break  # the demo's last step
                finally:
                    if not actor.done():
                        actor.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await actor


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
