"""Watch many nodes from one event loop: 20 simulated nodes, one merged stream of events.

    python examples/fleet.py            # 20 simulated nodes of 5 domains each
    python examples/fleet.py 50 10      # 50 nodes of 10 domains

Each node gets its own connection and event stream; a task per node forwards its events into
one queue, which a single consumer reads. Meanwhile a "chaos" task suspends and destroys
random domains across the fleet, and the consumer checks that every action shows up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter

import aiovirt
from aiovirt.events import DomainEvent, EventKind


async def forward(node: str, conn: aiovirt.Connection,
                  queue: asyncio.Queue[tuple[str, DomainEvent]],
                  ready: asyncio.Event) -> None:
    """Put every event of ``conn`` on ``queue``, tagged with the node's name."""
    async with conn.events(interval=0.2) as events:
        ready.set()
        async for event in events:
            await queue.put((node, event))


async def chaos(conns: dict[str, aiovirt.Connection], actions: int,
                expected: Counter[tuple[str, str, EventKind]]) -> None:
    """Suspend or destroy ``actions`` random domains across the fleet, each at most once.

    (Twice would be a different demo: a pause undone within one poll interval is never seen,
    since Xen announces pauses to nobody; the event stream can only report what it observes.)
    """
    rng = random.Random(1)
    candidates = []
    for node, conn in conns.items():
        candidates += [(node, d) for d in await conn.list_domains() if d.id != 0]
    for node, dom in rng.sample(candidates, min(actions, len(candidates))):
        if rng.random() < 0.3:
            await dom.destroy()
            expected[(node, dom.name, EventKind.STOPPED)] += 1
        else:
            await dom.suspend()
            expected[(node, dom.name, EventKind.SUSPENDED)] += 1
        await asyncio.sleep(0.005)


async def main(nodes: int, domains: int) -> None:
    """Start the fleet, watch it, shake it, and report what was seen."""
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        opened = await asyncio.gather(*(
            stack.enter_async_context(aiovirt.open(f"sim:///?domains={domains}&seed={i}"))
            for i in range(nodes)))
        conns = {f"node{i:02d}": conn for i, conn in enumerate(opened)}
        print(f"{nodes} nodes, {nodes * (domains + 1)} domains, open in "
              f"{time.monotonic() - started:.2f}s")

        queue: asyncio.Queue[tuple[str, DomainEvent]] = asyncio.Queue()
        async with asyncio.TaskGroup() as tg:
            readies = []
            watchers = []
            for name, conn in conns.items():
                ready = asyncio.Event()
                readies.append(ready.wait())
                watchers.append(tg.create_task(forward(name, conn, queue, ready)))
            await asyncio.gather(*readies)
            print(f"watching all of them from one event loop after "
                  f"{time.monotonic() - started:.2f}s")

            expected: Counter[tuple[str, str, EventKind]] = Counter()
            actions = 4 * nodes
            t0 = time.monotonic()
            await chaos(conns, actions, expected)
            seen: Counter[tuple[str, str, EventKind]] = Counter()
            per_node: Counter[str] = Counter()
            async with asyncio.timeout(10):
                while seen != expected:
                    node, event = await queue.get()
                    if event.domain is not None:
                        seen[(node, event.domain.name, event.kind)] += 1
                    per_node[node] += 1
            for task in watchers:
                task.cancel()
        print(f"{sum(expected.values())} actions across the fleet, every one seen as an event "
              f"in {time.monotonic() - t0:.2f}s")
        kinds = Counter(kind.value for (_, _, kind) in seen.elements())
        print("events by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        busiest = per_node.most_common(3)
        print("busiest nodes: " + ", ".join(f"{n} ({c})" for n, c in busiest))


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(*(args + [20, 5][len(args):])))
