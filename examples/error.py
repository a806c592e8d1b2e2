"""Errors reach a registered handler before the call raises, with libvirt's codes.

The aiovirt version of libvirt 0.0.6's ``python/tests/error.py``: register a global handler,
look up a domain that does not exist, and check that the call raised and that the handler saw
the error (NO_DOMAIN here; 0.0.6 reported NO_CONNECT, INVALID_DOMAIN or GET_FAILED).
Usage: ``python examples/error.py [URI]`` (default ``sim:///``).
"""

from __future__ import annotations

import asyncio
import sys

import aiovirt
from aiovirt import ErrorNumber, VirtError

ACCEPTED = {ErrorNumber.NO_CONNECT, ErrorNumber.INVALID_DOMAIN, ErrorNumber.GET_FAILED,
            ErrorNumber.NO_DOMAIN}
seen: list[tuple[object, VirtError]] = []


def handler(ctx: object, err: VirtError) -> None:
    seen.append((ctx, err))


async def main(uri: str) -> int:
    aiovirt.set_error_handler(handler, "context")
    try:
        async with aiovirt.open_read_only(uri) as conn:
            try:
                await conn.lookup_by_name("Does_not_exist")
            except VirtError as err:
                print(f"lookup failed as expected: {err} (code {err.get_error_code()})")
            else:
                print("lookup of Does_not_exist succeeded")
                return 1
    finally:
        aiovirt.set_error_handler(None)
    if not seen:
        print("the handler was not called")
        return 1
    ctx, last = seen[-1]
    if ctx != "context" or last.code not in ACCEPTED:
        print(f"unexpected handler call: {ctx!r} {last!r}")
        return 1
    print(f"handler got {last.as_tuple()}")
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sim:///")))
