"""The API against a simulated node in another process, reached through its printed URI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import aiovirt
from aiovirt import DomainState, ErrorNumber, VirtError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def printed(short_dir: str) -> Iterator[dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiovirt.sim", "--dir", short_dir, "--domains", "4"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "python -m aiovirt.sim printed nothing"
        yield json.loads(line)
    finally:
        proc.terminate()
        proc.wait(10)


async def test_every_route_works_through_the_printed_uri(printed: dict[str, str]) -> None:
    uri = printed["uri"]
    async with aiovirt.open(uri) as conn:
        assert conn.backends == {"xend", "xenstore", "hypervisor"}
        doms = await conn.list_domains()
        assert [d.name for d in doms] == ["Domain-0", "vm1", "vm2", "vm3", "vm4"]
        vm = doms[1]
        await vm.suspend()
        assert (await vm.info()).state == DomainState.PAUSED
        await vm.resume()
        assert "<name>vm1</name>" in await vm.xml_desc()
        assert await conn.lookup_by_uuid(vm.uuid) == vm
    async with aiovirt.open_read_only(uri) as ro:
        vm = await ro.lookup_by_name("vm1")
        assert (await vm.info()).state != DomainState.PAUSED
        with pytest.raises(VirtError) as info:
            await vm.suspend()
        assert info.value.code == ErrorNumber.OPERATION_DENIED
    tcp = f"xen:///?xend={printed['xend']}&xenstore=none&hypervisor=none"
    async with aiovirt.open(tcp) as conn:
        assert conn.backends == {"xend"}
        assert len(await conn.list_domain_ids()) == 5
