"""Open a read-only connection, find Domain-0 and print what it says about itself.

The aiovirt version of libvirt 0.0.6's ``python/tests/basic.py``.
Usage: ``python examples/basic.py [URI]`` (default ``sim:///``, a simulated node).
"""

from __future__ import annotations

import asyncio
import sys

import aiovirt


async def main(uri: str) -> int:
    async with aiovirt.open_read_only(uri) as conn:
        dom0 = await conn.lookup_by_name("Domain-0")
        print(f"Domain 0: id {dom0.id} running {await dom0.os_type()}")
        print(list(await dom0.info()))
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sim:///")))
