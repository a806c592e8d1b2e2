"""The ``xenctrl`` driver against Debian's real libxenctrl and libxen-dev headers."""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

from aiovirt.backends.hypervisor import Hypervisor
from aiovirt.backends.xenctrl import LAYOUTS, SONAME, XcDomainInfo, records_of
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from tests.support.interop import require, require_tool
from tests.support.threads import threads_doing_our_work

HEADER = Path("/usr/include/xenctrl.h")


def _library_loads() -> bool:
    try:
        ctypes.CDLL(SONAME)
    except OSError:
        return False
    return True


def _on_xen() -> bool:
    return os.path.exists("/dev/xen/privcmd") or os.path.exists("/proc/xen/privcmd")


def _probe_source() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <xenctrl.h>",
             "int main(void) {"]
    for ctype, (_struct, fields) in LAYOUTS.items():
        lines.append(f'    printf("{ctype} sizeof %zu %zu\\n", sizeof({ctype}), sizeof({ctype}));')
        for name in fields:
            lines.append(
                f'    printf("{ctype} {name} %zu %zu\\n", offsetof({ctype}, {name}), '
                f"sizeof((({ctype} *)0)->{name}));"
            )
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


def test_info_entries_become_records() -> None:
    buf = (XcDomainInfo * 3)()
    buf[1].domain = 7
    buf[1].flags = 0x30010
    buf[1].tot_pages, buf[1].max_pages = 1000, 2000
    buf[1].cpu_time = 123_456_789
    buf[1].nr_online_vcpus, buf[1].max_vcpu_id = 2, 1
    buf[1].handle[:] = list(range(16))
    rec = records_of(buf, 2)[1]
    assert (rec.domid, rec.flags, rec.tot_pages, rec.max_pages) == (7, 0x30010, 1000, 2000)
    assert (rec.cpu_time, rec.nr_online_vcpus, rec.max_vcpu_id) == (123_456_789, 2, 1)
    assert rec.handle == bytes(range(16))
    assert len(records_of(buf, 2)) == 2


@pytest.mark.interop
def test_ctypes_layouts_match_the_installed_headers(tmp_path: Path) -> None:
    gcc = require_tool("gcc")
    require(HEADER.exists(), f"libxen-dev is not installed ({HEADER} is missing)")
    source = tmp_path / "probe.c"
    source.write_text(_probe_source())
    binary = tmp_path / "probe"
    subprocess.run([gcc, "-o", str(binary), str(source)], check=True, capture_output=True,
                   timeout=60)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True,
                            timeout=10).stdout
    seen = 0
    for line in output.splitlines():
        ctype, name, offset, size = line.split()
        struct = LAYOUTS[ctype][0]
        if name == "sizeof":
            assert ctypes.sizeof(struct) == int(size), f"sizeof({ctype})"
        else:
            field = getattr(struct, name)
            assert (field.offset, field.size) == (int(offset), int(size)), f"{ctype}.{name}"
        seen += 1
    assert seen == sum(len(fields) + 1 for _struct, fields in LAYOUTS.values())


@pytest.mark.interop
@pytest.mark.parametrize("spec", ["xenctrl", "auto"])
async def test_open_without_a_hypervisor_says_so(
    spec: str, capfd: pytest.CaptureFixture[str]
) -> None:
    require(_library_loads(), f"{SONAME} (Debian's libxenctrl) is not installed")
    if _on_xen():
        pytest.skip("this machine runs on Xen: the no-hypervisor error cannot happen here")
    with pytest.raises(VirtError) as info:
        await Hypervisor.open(spec)
    err = info.value
    assert err.code == ErrorNumber.NO_XEN and err.domain == ErrorDomain.XEN
    assert "no Xen hypervisor is reachable" in str(err)
    assert "/dev/xen/privcmd" in str(err)
    assert err.__cause__ is not None
    assert not threads_doing_our_work()
    # libxenctrl's own complaint went to logging, not to the terminal.
    assert "xencall" not in capfd.readouterr().err
