"""Every store operation, its errors and the client-side checks, on every daemon."""

from __future__ import annotations

import asyncio
import os

import pytest

import aiovirt.xenstore as xenstore
from aiovirt.errors import ErrorDomain, ErrorNumber, VirtError
from aiovirt.xenstore import Perm, PermAccess, XenStoreClient, XenStoreError
from tests.xenstore.conftest import Daemon


async def test_write_then_read_returns_the_bytes(xs: XenStoreClient, base: str) -> None:
    await xs.write(f"{base}/a", "hello")
    await xs.write(f"{base}/bin", b"\x00\x01\xffend\x00")
    assert await xs.read(f"{base}/a") == b"hello"
    assert await xs.read(f"{base}/bin") == b"\x00\x01\xffend\x00"


async def test_write_creates_parents_with_empty_values(xs: XenStoreClient, base: str) -> None:
    await xs.write(f"{base}/p/q/r", "v")
    assert await xs.read(f"{base}/p") == b""
    assert await xs.read(f"{base}/p/q") == b""


# The largest value each daemon stores: C (and the sim) what fits the 4096-byte payload;
# oxenstored 2048 bytes, even from dom0.
VALUE_MAX = {"sim": None, "real": None, "oxenstored": 2048}


async def test_largest_value_round_trips(daemon: Daemon, xs: XenStoreClient, base: str) -> None:
    path = f"{base}/big"
    size = VALUE_MAX[daemon.kind] or 4095 - len(path) - 1
    value = os.urandom(size)
    await xs.write(path, value)
    assert await xs.read(path) == value


async def test_value_over_the_daemons_limit_says_so(daemon: Daemon, xs: XenStoreClient,
                                                     base: str) -> None:
    limit = VALUE_MAX[daemon.kind]
    if limit is None:
        return  # the client's own check covers it (test_oversized_write_is_refused_...)
    with pytest.raises(XenStoreError) as info:
        await xs.write(f"{base}/big", b"x" * (limit + 1))
    assert info.value.errno_name == "E2BIG"
    assert "refuses a value this large" in str(info.value)
    assert not await xs.exists(f"{base}/big")


async def test_oversized_write_is_refused_before_sending(xs: XenStoreClient, base: str) -> None:
    with pytest.raises(XenStoreError) as info:
        await xs.write(f"{base}/big", b"x" * 4096)
    assert info.value.code == ErrorNumber.INVALID_ARG
    assert info.value.path == f"{base}/big"
    assert xs.connected
    await xs.write(f"{base}/after", "ok")
    assert await xs.read(f"{base}/after") == b"ok"


@pytest.mark.parametrize("bad", ["", "/a//b", "/a/", "/a b", "/é", "@introduceDomain",
                                 "/" + "x" * 2048])
async def test_invalid_path_is_refused_before_sending(xs: XenStoreClient, bad: str) -> None:
    with pytest.raises(XenStoreError) as info:
        await xs.read(bad)
    assert info.value.code == ErrorNumber.INVALID_ARG
    assert info.value.domain == ErrorDomain.XENSTORE
    assert info.value.errno_name is None
    assert not xs._link or not xs._link.pending  # nothing went out


async def test_read_of_missing_path_names_errno_and_path(xs: XenStoreClient, base: str) -> None:
    with pytest.raises(VirtError) as info:
        await xs.read(f"{base}/missing")
    err = info.value
    assert isinstance(err, XenStoreError)
    assert err.code == ErrorNumber.OPERATION_FAILED
    assert err.domain == ErrorDomain.XENSTORE
    assert err.errno_name == "ENOENT"
    assert err.path == f"{base}/missing"
    assert "ENOENT" in str(err) and f"{base}/missing" in str(err)
    assert err.int1 == 2


async def test_mkdir_creates_an_empty_node_and_is_idempotent(xs: XenStoreClient,
                                                             base: str) -> None:
    await xs.mkdir(f"{base}/d/e")
    await xs.mkdir(f"{base}/d/e")
    assert await xs.read(f"{base}/d/e") == b""
    assert await xs.directory(f"{base}/d") == ["e"]


async def test_rm_removes_the_subtree(xs: XenStoreClient, base: str) -> None:
    await xs.write(f"{base}/r/a/b", "1")
    await xs.rm(f"{base}/r")
    assert not await xs.exists(f"{base}/r")
    assert not await xs.exists(f"{base}/r/a/b")
    await xs.rm(f"{base}/r")  # missing node whose parent exists: fine
    with pytest.raises(XenStoreError) as info:
        await xs.rm(f"{base}/nope/deeper")
    assert info.value.errno_name == "ENOENT"


async def test_exists(xs: XenStoreClient, base: str) -> None:
    await xs.write(f"{base}/e", "")
    assert await xs.exists(f"{base}/e")
    assert not await xs.exists(f"{base}/e2")


async def test_directory_lists_children(xs: XenStoreClient, base: str) -> None:
    for name in ("x", "y", "new"):
        await xs.write(f"{base}/dir/{name}", name)
    assert sorted(await xs.directory(f"{base}/dir")) == ["new", "x", "y"]
    assert await xs.directory(f"{base}/dir/x") == []
    with pytest.raises(XenStoreError) as info:
        await xs.directory(f"{base}/nodir")
    assert info.value.errno_name == "ENOENT"


@pytest.mark.parametrize("count", [400, 1000])
async def test_long_directory_is_listed_whole(xs: XenStoreClient, base: str, count: int) -> None:
    # ~12 KiB and ~105 KiB of names: C and the sim answer E2BIG and the client falls back to
    # DIRECTORY_PART; oxenstored has no DIRECTORY_PART and sends the whole listing at once.
    names = [f"child-with-a-long-name-{i:04d}" + "x" * (count // 15) for i in range(count)]
    await asyncio.gather(*(xs.mkdir(f"{base}/long/{n}") for n in names))
    assert sorted(await xs.directory(f"{base}/long")) == names


async def test_relative_paths_are_under_the_domain_0_home(xs: XenStoreClient) -> None:
    await xs.write("reltest/k", "v")
    assert await xs.read("/local/domain/0/reltest/k") == b"v"
    assert await xs.read("reltest/k") == b"v"


async def test_perms_round_trip(xs: XenStoreClient, base: str) -> None:
    path = f"{base}/perm"
    await xs.write(path, "v")
    assert (await xs.get_perms(path))[0].domid == 0
    perms = [Perm(7, PermAccess.BOTH), Perm(9, PermAccess.READ)]
    await xs.set_perms(path, perms)
    got = await xs.get_perms(path)
    assert got == perms
    assert str(got[0]) == "b7" and str(got[1]) == "r9"
    await xs.set_perms(path, [(0, PermAccess.NONE)])
    assert await xs.get_perms(path) == [Perm(0, PermAccess.NONE)]


async def test_empty_perm_list_is_refused(xs: XenStoreClient, base: str) -> None:
    with pytest.raises(XenStoreError) as info:
        await xs.set_perms(f"{base}/x", [])
    assert info.value.code == ErrorNumber.INVALID_ARG


async def test_get_domain_path(xs: XenStoreClient) -> None:
    assert await xs.get_domain_path(0) == "/local/domain/0"
    assert await xs.get_domain_path(17) == "/local/domain/17"
    with pytest.raises(XenStoreError):
        await xs.get_domain_path(-1)


async def test_unreachable_socket_raises_no_xenstore_naming_it(short_dir: str) -> None:
    path = f"{short_dir}/nothing-here"
    with pytest.raises(XenStoreError) as info:
        await xenstore.connect(path)
    assert info.value.code == ErrorNumber.NO_XENSTORE
    assert path in str(info.value)


def test_default_socket_path_follows_libxenstore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    assert xenstore.default_socket_path() == "/var/run/xenstored/socket"
    assert xenstore.default_socket_path(read_only=True) == "/var/run/xenstored/socket_ro"
    monkeypatch.setenv("XENSTORED_RUNDIR", "/run/x")
    assert xenstore.default_socket_path() == "/run/x/socket"
    monkeypatch.setenv("XENSTORED_PATH", "/p/sock")
    assert xenstore.default_socket_path(read_only=True) == "/p/sock_ro"


async def test_connect_without_path_uses_xenstored_path(
        daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENSTORED_PATH", daemon.path)
    xs = await xenstore.connect()
    try:
        assert xs.path == daemon.path
        assert await xs.get_domain_path(1) == "/local/domain/1"
    finally:
        await xs.close()


async def test_calls_after_close_fail_with_no_xenstore(daemon: Daemon) -> None:
    xs = await xenstore.connect(daemon.path)
    await xs.close()
    with pytest.raises(XenStoreError) as info:
        await xs.read("/")
    assert info.value.code == ErrorNumber.NO_XENSTORE
