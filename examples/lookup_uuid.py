"""Find a domain by id, then find it again by its UUID.

The aiovirt version of libvirt 0.0.6's ``python/tests/uuid.py``.
Usage: ``python examples/lookup_uuid.py [URI]`` (default ``sim:///``).
"""

from __future__ import annotations

import asyncio
import sys

import aiovirt


async def main(uri: str) -> int:
    async with aiovirt.open_read_only(uri) as conn:
        ids = await conn.list_domain_ids()
        if not ids:
            print("no running domain")
            return 1
        dom = await conn.lookup_by_id(ids[-1])
        name, uuid = dom.name, dom.uuid
        print(f"domain {dom.id} is {name} with UUID {uuid}")
        again = await conn.lookup_by_uuid(uuid.bytes)
        if again.name != name or again != dom:
            print(f"lookup by UUID found {again.name} instead of {name}")
            return 1
        again = await conn.lookup_by_uuid_string(str(uuid))
        if again != dom:
            print("lookup by UUID string disagrees")
            return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sim:///")))
