"""Open a read-only connection, find Domain-0 and print what it says about itself.

The aiovirt version of libvirt 0.0.6's ``python/tests/basic.py``.
Usage: ``python examples/basic.py [URI]`` (default ``sim:///``, a simulated node).
"""

from __future__ import annotations

import os
import sys

# This directory holds uuid.py (named after libvirt's test), which would shadow the standard
# library's uuid module for everything imported below when a script here is run directly; and
# run from a checkout, the checkout's aiovirt should win over any installed one.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if os.path.exists(os.path.join(_HERE, os.pardir, "aiovirt", "__init__.py")):
    sys.path.insert(0, os.path.dirname(_HERE))

import asyncio  # noqa: E402

import aiovirt  # noqa: E402


async def main(uri: str) -> int:
    async with aiovirt.open_read_only(uri) as conn:
        dom0 = await conn.lookup_by_name("Domain-0")
        print(f"Domain 0: id {dom0.id} running {await dom0.os_type()}")
        print(list(await dom0.info()))
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sim:///")))
