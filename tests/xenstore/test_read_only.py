"""Read-only access: refused by the client before any I/O, and by the daemon's socket_ro."""

from __future__ import annotations

import pytest

import aiovirt.xenstore as xenstore
from aiovirt.errors import ErrorNumber
from aiovirt.xenstore import Perm, PermAccess, XenStoreError
from tests.xenstore.conftest import Daemon


async def test_read_only_client_refuses_changes_before_any_io(daemon: Daemon,
                                                              base: str) -> None:
    async with xenstore.connect(daemon.path) as rw:
        await rw.write(f"{base}/ro", "v")
    async with xenstore.connect(daemon.path, read_only=True) as xs:
        assert xs.read_only
        link = xs._link
        assert link is not None
        for call in (xs.write(f"{base}/ro", "x"), xs.mkdir(f"{base}/m"), xs.rm(f"{base}/ro"),
                     xs.set_perms(f"{base}/ro", [Perm(0, PermAccess.NONE)])):
            with pytest.raises(XenStoreError) as info:
                await call
            assert info.value.code == ErrorNumber.OPERATION_DENIED
            assert f"{base}" in str(info.value)
            assert not link.pending and not link.out
        async with xs.transaction() as t:
            with pytest.raises(XenStoreError) as info:
                await t.write(f"{base}/ro", "x")
            assert info.value.code == ErrorNumber.OPERATION_DENIED
        assert await xs.read(f"{base}/ro") == b"v"


# The real C xenstored 4.17 has no read-only socket (removed in 4.15): these run on the sim only.
SIM_ONLY = pytest.mark.parametrize("daemon", ["sim"], indirect=True)


@SIM_ONLY
async def test_daemon_read_only_socket_refuses_changes(daemon: Daemon, base: str) -> None:
    assert daemon.ro_path is not None
    async with xenstore.connect(daemon.path) as rw:
        await rw.write(f"{base}/ro", "v")
    # No client-side flag: the refusal comes from the daemon (EACCES) and maps to DENIED.
    async with xenstore.connect(daemon.ro_path) as xs:
        assert await xs.read(f"{base}/ro") == b"v"
        assert await xs.directory(base) == ["ro"]
        for call in (xs.write(f"{base}/ro", "x"), xs.mkdir(f"{base}/m"), xs.rm(f"{base}/ro")):
            with pytest.raises(XenStoreError) as info:
                await call
            assert info.value.code == ErrorNumber.OPERATION_DENIED
            assert info.value.errno_name == "EACCES"
            assert "EACCES" in str(info.value)
        async with xs.watch(f"{base}/ro") as events:
            assert (await events.get(5)).path == f"{base}/ro"


@SIM_ONLY
async def test_connect_read_only_picks_the_ro_socket(daemon: Daemon,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert daemon.ro_path is not None
    monkeypatch.setenv("XENSTORED_PATH", daemon.path)
    async with xenstore.connect(read_only=True) as xs:
        assert xs.path == daemon.ro_path
        assert await xs.get_domain_path(2) == "/local/domain/2"
