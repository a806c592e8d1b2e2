"""Create a domain from XML, suspend it, resume it, and shut it down.

The aiovirt version of libvirt 0.0.6's ``python/tests/create.py``: while suspended the
domain's CPU time must not move; after the shutdown request it must go away within 30 s, or
it is destroyed and the example fails. (0.0.6 did all this on a read-only connection, which
could change state then; aiovirt's read-only connections cannot, so this one is read-write.)

Usage: ``python examples/create.py [URI]`` (default ``sim:///``). On a real node set
``AIOVIRT_KERNEL``, ``AIOVIRT_INITRD`` and ``AIOVIRT_DISK`` to files that exist in dom0.
"""

from __future__ import annotations

import asyncio
import os
import sys

import aiovirt
from aiovirt import ErrorNumber, VirtError

KERNEL = os.environ.get("AIOVIRT_KERNEL", "/boot/vmlinuz-2.6-xenU")
INITRD = os.environ.get("AIOVIRT_INITRD", "/boot/initrd-2.6-xenU.img")
DISK = os.environ.get("AIOVIRT_DISK", "/var/lib/xen/images/test.img")
PAUSE_SECONDS = float(os.environ.get("AIOVIRT_PAUSE_SECONDS", "1"))

XML = f"""<domain type='xen'>
  <name>test</name>
  <os>
    <type>linux</type>
    <kernel>{KERNEL}</kernel>
    <initrd>{INITRD}</initrd>
    <cmdline> root=/dev/sda1 ro selinux=0 3</cmdline>
  </os>
  <memory>131072</memory>
  <vcpu>1</vcpu>
  <devices>
    <disk type='file'>
      <source file='{DISK}'/>
      <target dev='sda1'/>
    </disk>
    <interface type='bridge'>
      <source bridge='xenbr0'/>
      <mac address='aa:00:00:00:00:12'/>
      <script path='/etc/xen/scripts/vif-bridge'/>
    </interface>
  </devices>
</domain>
"""


async def wait_until_gone(dom: aiovirt.Domain, seconds: float) -> bool:
    """Poll the domain's CPU time, as the original test did, until it stops existing."""
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while (await dom.info()).cpu_time != 0:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.1)
    except VirtError as err:
        if err.code != ErrorNumber.NO_DOMAIN:
            raise
    return True


def quiet_about_gone_domains(ctx: object, err: VirtError) -> None:
    """Report errors as usual, except the NO_DOMAIN that ends the shutdown wait."""
    if err.code != ErrorNumber.NO_DOMAIN:
        aiovirt.default_error_handler(err)


async def main(uri: str) -> int:
    async with aiovirt.open(uri) as conn:
        conn.set_error_handler(quiet_about_gone_domains)
        dom = await conn.create_linux(XML)
        print(f"created {dom.name} as domain {dom.id}")
        await dom.suspend()
        before = (await dom.info()).cpu_time
        await asyncio.sleep(PAUSE_SECONDS)
        after = (await dom.info()).cpu_time
        if after != before:
            print(f"CPU time moved while suspended: {before} -> {after}")
            await dom.destroy()
            return 1
        await dom.resume()
        await dom.shutdown()
        if not await wait_until_gone(dom, 30.0):
            print("the domain did not shut down in 30 s; destroying it")
            await dom.destroy()
            return 1
        print(f"{dom.name} has shut down")
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sim:///")))
