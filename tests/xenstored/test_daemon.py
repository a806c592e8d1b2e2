"""The simulated xenstored over its sockets: ops, errors, watches, transactions, permissions,
the read-only socket, fault knobs and misbehaving clients."""

from __future__ import annotations

import asyncio
import socket

import pytest

from aiovirt.protocol.xs_wire import HEADER, FrameDecoder, XsOp, encode
from aiovirt.sim.store import StoreError, XenStoreDB, parse_perm
from tests.xenstored.conftest import Daemon, RawClient

O = XsOp  # noqa: E741


# ------------------------------------------------------------- C 4.17's answers (issue 11)

@pytest.mark.parametrize("op,payload", [
    (O.WRITE, b"@introduceDomain\0v"), (O.READ, b"@releaseDomain\0"),
    (O.RM, b"@releaseDomain\0"), (O.MKDIR, b"@introduceDomain\0"),
    (O.DIRECTORY, b"@releaseDomain\0"), (O.DIRECTORY_PART, b"@releaseDomain\0000\0"),
    (O.GET_PERMS, b"@x\0"), (O.WRITE, b"@x/y\0v"),
])
async def test_at_names_are_not_paths(xs: RawClient, op: int, payload: bytes) -> None:
    assert await xs.err(op, payload) == "EINVAL"
    assert await xs.err(O.READ, b"/local/domain/0/@introduceDomain\0") == "ENOENT"


async def test_unwatch_of_an_invalid_path_is_enoent(xs: RawClient) -> None:
    assert await xs.err(O.UNWATCH, b"/a b\0t\0") == "ENOENT"
    assert await xs.err(O.UNWATCH, b"//\0t\0") == "ENOENT"
    assert await xs.err(O.UNWATCH, b"/a\0") == "EINVAL"  # not two strings


@pytest.mark.parametrize("perm,stored", [
    (b"b-1", b"b-1"), (b"r4294967295", b"r-1"), (b"n0x10", b"n16"), (b"w010", b"w8"),
    (b"b 5", b"b5"), (b"r+3", b"r3"), (b"n99999999999999999999", b"n-1"),
])
async def test_set_perms_reads_domids_as_c_strtol(xs: RawClient, perm: bytes,
                                                  stored: bytes) -> None:
    await xs.ok(O.SET_PERMS, b"/\0" + perm + b"\0")
    assert await xs.ok(O.GET_PERMS, b"/\0") == stored + b"\0"


@pytest.mark.parametrize("perm", [b"q0", b"r", b"r0junk", b"b0x", b"w08", b"R1", b""])
async def test_set_perms_refuses_what_c_cannot_parse(xs: RawClient, perm: bytes) -> None:
    assert await xs.err(O.SET_PERMS, b"/\0" + perm + b"\0") == "EINVAL"


async def test_set_perms_on_a_missing_node_is_enoent(xs: RawClient) -> None:
    assert await xs.err(O.SET_PERMS, b"/missing\0b-1\0") == "ENOENT"


async def test_missing_node_read_in_a_tx_records_its_nearest_ancestor(
        daemon: Daemon, xs: RawClient) -> None:
    other = await daemon.client()
    tx = await xs.tx_start()
    assert await xs.err(O.READ, b"/x/y\0", tx=tx) == "ENOENT"
    await other.ok(O.WRITE, b"/z\0v")
    assert await xs.ok(O.DIRECTORY, b"/\0", tx=tx) == b"tool\0"  # the transaction's view
    assert await xs.ok(O.DIRECTORY, b"/\0") == b"tool\0z\0"
    assert await xs.err(O.TRANSACTION_END, b"T\0", tx=tx) == "EAGAIN"


async def test_rm_in_a_tx_of_a_subtree_changed_outside_is_eio(daemon: Daemon,
                                                               xs: RawClient) -> None:
    other = await daemon.client()
    await xs.ok(O.WRITE, b"/r/c/d\0")
    await xs.ok(O.WRITE, b"/r/e\0")
    tx = await xs.tx_start()
    assert await xs.ok(O.DIRECTORY, b"/r\0", tx=tx) == b"c\0e\0"
    await other.ok(O.RM, b"/r/e\0")
    assert await xs.err(O.RM, b"/r\0", tx=tx) == "EIO"
    # What the walk removed before it met the missing child stays removed in the tx.
    assert await xs.ok(O.DIRECTORY, b"/r\0", tx=tx) == b"e\0"
    assert await xs.err(O.READ, b"/r/c\0", tx=tx) == "ENOENT"
    assert await xs.err(O.TRANSACTION_END, b"T\0", tx=tx) == "EAGAIN"
    assert await xs.ok(O.DIRECTORY, b"/r\0") == b"c\0"


async def test_node_created_and_removed_in_a_tx_fires_nothing(daemon: Daemon,
                                                              xs: RawClient) -> None:
    watcher = await daemon.client()
    await watcher.watch("/", "w")
    tx = await xs.tx_start()
    await xs.ok(O.WRITE, b"/n/m\0v", tx=tx)
    await xs.ok(O.RM, b"/n\0", tx=tx)
    await xs.ok(O.WRITE, b"/kept\0v", tx=tx)
    await xs.ok(O.TRANSACTION_END, b"T\0", tx=tx)
    assert await watcher.events_after_sync() == [("/kept", "w")]


async def test_introduce_takes_an_unsigned_event_channel(daemon: Daemon,
                                                         xs: RawClient) -> None:
    assert await xs.err(O.INTRODUCE, b"5\0001\0000\0") == "EINVAL"
    await xs.ok(O.INTRODUCE, b"5\0001\000-1\0")
    assert await xs.ok(O.IS_DOMAIN_INTRODUCED, b"5\0") == b"T\0"
    await xs.ok(O.SET_TARGET, b"5\0005\0ignored\0")


# ------------------------------------------------------------------------------ basic ops

async def test_write_read_directory_rm_round_trip(xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"/a/b\0hello")
    assert await xs.ok(O.READ, b"/a/b\0") == b"hello"
    assert await xs.ok(O.READ, b"/a\0") == b""
    await xs.ok(O.WRITE, b"/a/c\0")
    assert await xs.ok(O.DIRECTORY, b"/a\0") == b"b\0c\0"
    await xs.ok(O.RM, b"/a\0")
    assert await xs.err(O.READ, b"/a/b\0") == "ENOENT"


async def test_reply_echoes_req_id_and_tx_id_also_for_errors(xs: RawClient) -> None:
    tx = await xs.tx_start()
    req = xs.send(O.READ, b"/nope\0", tx=tx, req=1001)
    reply = await xs.reply(req)
    assert (reply.op, reply.req_id, reply.tx_id, reply.payload) == (O.ERROR, 1001, tx, b"ENOENT\0")


async def test_values_are_raw_bytes(xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"/bin\0\0\x01\xff")
    assert await xs.ok(O.READ, b"/bin\0") == b"\0\x01\xff"


async def test_children_listed_in_creation_order(xs: RawClient) -> None:
    for name in (b"m", b"bin", b"a"):
        await xs.ok(O.WRITE, b"/o/" + name + b"\0")
    assert await xs.ok(O.DIRECTORY, b"/o\0") == b"m\0bin\0a\0"


async def test_relative_paths_resolve_against_dom0_home(xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"rel/x\0v")
    assert await xs.ok(O.READ, b"/local/domain/0/rel/x\0") == b"v"


@pytest.mark.parametrize("payload", [b"/a b\0", b"//\0", b"/a/\0", b"\0"])
async def test_invalid_paths_are_einval(xs: RawClient, payload: bytes) -> None:
    assert await xs.err(O.READ, payload) == "EINVAL"


async def test_directory_over_payload_limit_is_e2big_and_directory_part_pages(
        xs: RawClient) -> None:
    names = [f"child-with-a-long-name-{i:04d}".encode() for i in range(300)]
    for n in names:
        await xs.ok(O.WRITE, b"/long/" + n + b"\0")
    assert await xs.err(O.DIRECTORY, b"/long\0") == "E2BIG"
    got, offset = b"", 0
    while True:
        chunk = await xs.ok(O.DIRECTORY_PART, b"/long\0" + str(offset).encode() + b"\0")
        _gen, rest = chunk.split(b"\0", 1)
        assert len(chunk) <= 4096
        if rest.endswith(b"\0\0") or rest == b"\0":
            got += rest[:-1]
            break
        got += rest
        offset += len(rest)
    assert got == b"".join(n + b"\0" for n in names)


async def test_get_domain_path_and_is_domain_introduced(daemon: Daemon, xs: RawClient) -> None:
    assert await xs.ok(O.GET_DOMAIN_PATH, b"7\0") == b"/local/domain/7\0"
    assert await xs.ok(O.IS_DOMAIN_INTRODUCED, b"7\0") == b"F\0"
    daemon.db.introduce_domain(7)
    assert await xs.ok(O.IS_DOMAIN_INTRODUCED, b"7\0") == b"T\0"


async def test_control_check_help_and_unknown(xs: RawClient) -> None:
    assert await xs.ok(O.CONTROL, b"check\0") == b"OK\0"
    assert b"quota" in await xs.ok(O.CONTROL, b"help\0")
    assert await xs.err(O.CONTROL, b"nope\0") == "EINVAL"


@pytest.mark.parametrize("op", [20, 15, 16, 99])
async def test_unknown_ops_are_enosys(xs: RawClient, op: int) -> None:
    assert await xs.err(op, b"\0") == "ENOSYS"


# ------------------------------------------------------------------------------ watches

async def test_watch_initial_event_comes_after_ok(xs: RawClient) -> None:
    req = xs.send(O.WATCH, b"/w\0tok\0")
    await xs.reply(req)
    assert await xs.event() == ("/w", "tok")


async def test_events_for_each_kind_of_change(daemon: Daemon, xs: RawClient) -> None:
    other = await daemon.client()
    await other.watch("/w", "t")
    await xs.ok(O.WRITE, b"/w/a\0")                  # create
    await xs.ok(O.WRITE, b"/w/a\0same")              # write
    await xs.ok(O.MKDIR, b"/w/d\0")                  # mkdir creating
    await xs.ok(O.MKDIR, b"/w/d\0")                  # mkdir existing: no event
    await xs.ok(O.SET_PERMS, b"/w/a\0n0\0r1\0")      # set_perms
    await xs.ok(O.RM, b"/w/d\0")                     # rm
    daemon.db.write("/w/inproc", "x")                # in-process write
    assert await other.events_after_sync() == [
        ("/w/a", "t"), ("/w/a", "t"), ("/w/d", "t"), ("/w/a", "t"), ("/w/d", "t"),
        ("/w/inproc", "t"),
    ]


async def test_event_is_queued_before_the_reply_that_caused_it(xs: RawClient) -> None:
    await xs.watch("/p", "t")
    req = xs.send(O.WRITE, b"/p/b/c\0")
    while len(xs.frames) < 2:
        await xs._fill()
    assert [f.op for f in xs.frames[:2]] == [O.WATCH_EVENT, O.WRITE]
    await xs.reply(req)


async def test_rm_events_deepest_first_descendants_exact(daemon: Daemon, xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"/r/a/b/c\0")
    w = await daemon.client()
    for path, token in (("/", "root"), ("/r/a", "wr"), ("/r/a/b/c", "wc"), ("/r/a/b", "wb"),
                        ("/r/a/b/missing", "wm")):
        await w.watch(path, token)
    await xs.ok(O.RM, b"/r/a\0")
    assert await w.events_after_sync() == [
        ("/r/a/b/c", "wc"), ("/r/a/b", "wb"), ("/r/a", "root"), ("/r/a", "wr")]


async def test_relative_watch_gets_relative_event_path(xs: RawClient) -> None:
    await xs.watch("rel", "t")
    await xs.ok(O.WRITE, b"/local/domain/0/rel/x\0")
    assert await xs.events_after_sync() == [("rel/x", "t")]


async def test_unwatch_and_reset_watches(xs: RawClient) -> None:
    await xs.watch("/u", "t")
    assert await xs.err(O.WATCH, b"/u\0t\0") == "EEXIST"
    await xs.ok(O.UNWATCH, b"/u\0t\0")
    assert await xs.err(O.UNWATCH, b"/u\0t\0") == "ENOENT"
    await xs.watch("/u", "t2")
    await xs.ok(O.RESET_WATCHES, b"\0")
    await xs.ok(O.WRITE, b"/u/x\0")
    assert await xs.events_after_sync() == []


async def test_special_watches(daemon: Daemon, xs: RawClient) -> None:
    await xs.watch("@introduceDomain", "i")
    await xs.watch("@releaseDomain", "r")
    daemon.db.introduce_domain(3)
    daemon.db.introduce_domain(3)                    # known: no event
    daemon.db.fire_special("@releaseDomain")
    await xs.ok(O.INTRODUCE, b"4\0001\0002\0")
    await xs.ok(O.RELEASE, b"4\0")
    assert await xs.events_after_sync() == [
        ("@introduceDomain", "i"), ("@releaseDomain", "r"), ("@introduceDomain", "i"),
        ("@releaseDomain", "r")]


async def test_duplicate_pipelined_events_are_dropped(daemon: Daemon, xs: RawClient) -> None:
    w = await daemon.client()
    await w.watch("/dup", "t")
    xs.writer.write(encode(O.WRITE, 1, 0, b"/dup\0a") + encode(O.WRITE, 2, 0, b"/dup\0b"))
    await xs.reply(1)
    await xs.reply(2)
    assert await w.events_after_sync() == [("/dup", "t")]


# ------------------------------------------------------------------------------ transactions

async def test_transaction_read_your_writes_and_commit_events(daemon: Daemon,
                                                              xs: RawClient) -> None:
    w = await daemon.client()
    await w.watch("/t", "t")
    tx = await xs.tx_start()
    assert tx == 1
    await xs.ok(O.WRITE, b"/t/b\0b", tx=tx)
    await xs.ok(O.WRITE, b"/t/a\0a", tx=tx)
    assert await xs.ok(O.READ, b"/t/b\0", tx=tx) == b"b"
    assert await xs.err(O.READ, b"/t/b\0") == "ENOENT"
    assert await w.events_after_sync() == []
    await xs.ok(O.TRANSACTION_END, b"T\0", tx=tx)
    assert await w.events_after_sync() == [("/t/b", "t"), ("/t/a", "t")]
    assert await xs.tx_start() == 2


async def test_transaction_conflict_is_eagain_and_applies_nothing(xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"/c/a\0a")
    tx = await xs.tx_start()
    assert await xs.ok(O.READ, b"/c/a\0", tx=tx) == b"a"
    await xs.ok(O.WRITE, b"/c/a\0b")
    assert await xs.ok(O.READ, b"/c/a\0", tx=tx) == b"a"  # stable once touched
    await xs.ok(O.WRITE, b"/c/other\0c", tx=tx)
    assert await xs.err(O.TRANSACTION_END, b"T\0", tx=tx) == "EAGAIN"
    assert await xs.err(O.READ, b"/c/other\0") == "ENOENT"
    assert await xs.err(O.TRANSACTION_END, b"T\0", tx=tx) == "ENOENT"  # the id is gone


async def test_transaction_errors(daemon: Daemon, xs: RawClient) -> None:
    tx = await xs.tx_start()
    assert await xs.err(O.TRANSACTION_START, b"\0", tx=tx) == "EBUSY"
    assert await xs.err(O.READ, b"/\0", tx=999) == "ENOENT"
    assert await xs.err(O.TRANSACTION_END, b"X\0", tx=tx) == "EINVAL"
    other = await daemon.client()
    assert await other.err(O.READ, b"/\0", tx=tx) == "ENOENT"
    await xs.ok(O.TRANSACTION_END, b"F\0", tx=tx)


# ------------------------------------------------------------------------------ permissions

async def _as_guest(daemon: Daemon, domid: int) -> RawClient:
    guest = await daemon.client()
    await guest.ok(O.CONTROL, f"sim-as-domain\0{domid}\0".encode())
    return guest


async def test_guest_permissions_are_enforced(daemon: Daemon, xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"/p/secret\0s")
    await xs.ok(O.WRITE, b"/p/readable\0r")
    await xs.ok(O.SET_PERMS, b"/p/readable\0n0\0r5\0")
    await xs.ok(O.WRITE, b"/local/domain/5\0")
    await xs.ok(O.SET_PERMS, b"/local/domain/5\0n5\0")
    guest = await _as_guest(daemon, 5)
    assert await guest.err(O.READ, b"/p/secret\0") == "EACCES"
    assert await guest.err(O.READ, b"/p/secret/missing\0") == "EACCES"  # existence hidden
    assert await guest.ok(O.READ, b"/p/readable\0") == b"r"
    assert await guest.err(O.WRITE, b"/p/readable\0x") == "EACCES"
    assert await guest.err(O.READ, b"/p/readable/missing\0") == "ENOENT"
    # its home: relative paths, it owns what it creates, it cannot give ownership away
    await guest.ok(O.WRITE, b"data/x\0v")
    assert await xs.ok(O.GET_PERMS, b"/local/domain/5/data/x\0") == b"n5\0"
    await guest.ok(O.SET_PERMS, b"data/x\0n5\0r0\0")
    assert await guest.err(O.SET_PERMS, b"data/x\0n7\0") == "EPERM"
    assert await guest.err(O.IS_DOMAIN_INTRODUCED, b"5\0") == "EACCES"
    assert await guest.err(O.CONTROL, b"check\0") == "EACCES"


async def test_guest_quotas(daemon: Daemon, xs: RawClient) -> None:
    # C 4.17's defaults for unprivileged domains; dom0's socket has none of them.
    await xs.ok(O.WRITE, b"/local/domain/5\0")
    await xs.ok(O.SET_PERMS, b"/local/domain/5\0n5\0")
    guest = await _as_guest(daemon, 5)
    for i in range(129):  # C compares the count before adding with '>': 129 fit
        await guest.ok(O.WATCH, f"w{i}\0t\0".encode())
        assert await guest.event() == (f"w{i}", "t")
    assert await guest.err(O.WATCH, b"w129\0t\0") == "E2BIG"
    await guest.ok(O.RESET_WATCHES, b"\0")
    ids = [await guest.tx_start() for _ in range(11)]  # '>' again: an 11th gets through
    assert await guest.err(O.TRANSACTION_START, b"\0") == "ENOSPC"
    for tx in ids:
        await guest.ok(O.TRANSACTION_END, b"F\0", tx=tx)
    four = b"r1\0r2\0r3\0r4\0"
    assert await guest.err(O.SET_PERMS, b"data\0n5\0" + four) == "ENOENT"  # 5 entries fit
    assert await guest.err(O.SET_PERMS, b"data\0n5\0" + four + b"r6\0") == "ENOSPC"
    # The node record (24-byte header, 8 per perm, value, child names) must stay under 2048.
    assert await guest.err(O.WRITE, b"big\0" + b"x" * 2016) == "ENOSPC"
    assert await guest.err(O.READ, b"big\0") == "ENOENT"
    await guest.ok(O.WRITE, b"big\0" + b"x" * 2015)
    assert await guest.err(O.WRITE, b"big\0" + b"x" * 2016) == "ENOSPC"
    assert len(await guest.ok(O.READ, b"big\0")) == 2015
    assert await guest.err(O.WRITE, b"big/child\0") == "ENOSPC"  # the parent would grow
    assert await guest.ok(O.DIRECTORY, b"big\0") == b""
    await xs.ok(O.WRITE, b"/local/domain/5/big\0" + b"x" * 4000)  # dom0 is not limited
    # In a transaction the failed write dooms the commit, as in C.
    tx = await guest.tx_start()
    assert await guest.err(O.WRITE, b"big\0" + b"x" * 2016, tx=tx) == "ENOSPC"
    await guest.ok(O.WRITE, b"small\0v", tx=tx)
    assert await guest.err(O.TRANSACTION_END, b"T\0", tx=tx) == "ENOMEM"
    assert await guest.err(O.READ, b"small\0") == "ENOENT"


async def test_owner_entry_default_and_privileged_creator_keeps_owner(xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"/o\0")
    await xs.ok(O.SET_PERMS, b"/o\0b7\0r9\0")
    await xs.ok(O.WRITE, b"/o/child\0")
    assert await xs.ok(O.GET_PERMS, b"/o/child\0") == b"b7\0r9\0"
    assert await xs.ok(O.SET_PERMS, b"/o\0b0x10\0") == b"OK\0"
    assert await xs.ok(O.GET_PERMS, b"/o\0") == b"b16\0"


async def test_guest_gets_events_only_for_nodes_it_may_read(daemon: Daemon,
                                                            xs: RawClient) -> None:
    await xs.ok(O.WRITE, b"/g/open\0")
    await xs.ok(O.SET_PERMS, b"/g/open\0r0\0")
    await xs.ok(O.WRITE, b"/g/closed\0")
    await xs.ok(O.SET_PERMS, b"/g\0n0\0")
    guest = await _as_guest(daemon, 3)
    await guest.watch("/g", "t")
    await guest.watch("@releaseDomain", "r")
    await xs.ok(O.WRITE, b"/g/open\0x")
    await xs.ok(O.WRITE, b"/g/closed\0x")
    daemon.db.fire_special("@releaseDomain")                # n0 by default: not for guests
    assert await guest.events_after_sync() == [("/g/open", "t")]


# ------------------------------------------------------------------------------ read-only socket

@pytest.mark.parametrize("op,payload", [
    (O.WRITE, b"/x\0v"), (O.MKDIR, b"/x\0"), (O.RM, b"/tool\0"), (O.SET_PERMS, b"/\0n0\0"),
    (O.INTRODUCE, b"5\0001\0002\0"), (O.RELEASE, b"5\0"), (O.CONTROL, b"check\0"),
])
async def test_read_only_socket_refuses_mutations(daemon: Daemon, op: int,
                                                  payload: bytes) -> None:
    ro = await daemon.client(read_only=True)
    assert await ro.err(op, payload) == "EACCES"


async def test_read_only_socket_serves_reads_watches_transactions(daemon: Daemon,
                                                                  xs: RawClient) -> None:
    ro = await daemon.client(read_only=True)
    await xs.ok(O.WRITE, b"/ro/x\0v")
    assert await ro.ok(O.READ, b"/ro/x\0") == b"v"
    assert await ro.ok(O.DIRECTORY, b"/ro\0") == b"x\0"
    assert await ro.ok(O.GET_DOMAIN_PATH, b"3\0") == b"/local/domain/3\0"
    await ro.watch("/ro", "t")
    tx = await ro.tx_start()
    assert await ro.err(O.WRITE, b"/ro/y\0", tx=tx) == "EACCES"
    await ro.ok(O.TRANSACTION_END, b"T\0", tx=tx)
    await xs.ok(O.WRITE, b"/ro/x\0w")
    assert await ro.events_after_sync() == [("/ro/x", "t")]


# ------------------------------------------------------------------------------ bad clients

async def test_oversized_frame_drops_that_client_alone(daemon: Daemon, xs: RawClient) -> None:
    bad = await daemon.client()
    bad.writer.write(HEADER.pack(O.READ, 1, 0, 4097))
    assert await asyncio.wait_for(bad.reader.read(), 5) == b""
    assert await xs.ok(O.READ, b"/tool\0") == b""


async def test_len_4096_is_allowed(xs: RawClient) -> None:
    payload = b"/big\0" + b"v" * (4096 - 5)
    await xs.ok(O.WRITE, payload)
    assert len(await xs.ok(O.READ, b"/big\0")) == 4091


async def test_fragmented_and_pipelined_requests(xs: RawClient) -> None:
    data = b"".join(encode(O.READ, i, 0, b"/tool\0") for i in range(1, 201))
    for i in range(0, len(data), 7):
        xs.writer.write(data[i:i + 7])
        await xs.writer.drain()
    for i in range(1, 201):
        assert (await xs.reply(i)).payload == b""


async def test_disconnect_mid_frame_and_garbage_do_not_hurt_others(daemon: Daemon,
                                                                   xs: RawClient) -> None:
    half = await daemon.client()
    await half.watch("/h", "t")
    tx = await half.tx_start()
    half.writer.write(encode(O.WRITE, 1, tx, b"/h/x\0v")[:10])
    await half.close()
    garbage = await daemon.client()
    garbage.writer.write(b"\xff" * 64)
    assert await asyncio.wait_for(garbage.reader.read(), 5) == b""
    await xs.ok(O.WRITE, b"/h/y\0")
    assert await xs.ok(O.DIRECTORY, b"/h\0") == b"y\0"


# ------------------------------------------------------------------------------ fault knobs

async def test_fault_delay_holds_replies(daemon: Daemon, xs: RawClient) -> None:
    daemon.server.faults.delay = 0.2
    loop = asyncio.get_running_loop()
    start = loop.time()
    await xs.ok(O.READ, b"/tool\0")
    assert loop.time() - start >= 0.19


async def test_fault_drop_after_k_requests(daemon: Daemon, xs: RawClient) -> None:
    daemon.server.faults.drop_after = 2
    await xs.ok(O.READ, b"/tool\0")
    await xs.ok(O.READ, b"/tool\0")
    xs.send(O.READ, b"/tool\0")
    assert await asyncio.wait_for(xs.reader.read(), 5) == b""
    daemon.server.faults.clear()
    fresh = await daemon.client()
    await fresh.ok(O.READ, b"/tool\0")


async def test_fault_stall_never_answers_matching_requests(daemon: Daemon,
                                                           xs: RawClient) -> None:
    daemon.server.faults.stall_ops = {O.READ}
    daemon.server.faults.stall_paths = {"/stall"}
    stalled = xs.send(O.READ, b"/stall/x\0")
    assert await xs.ok(O.READ, b"/tool\0") == b""
    assert await xs.ok(O.DIRECTORY, b"/tool\0") == b"xenstored\0"
    assert all(f.req_id != stalled for f in xs.frames)


# ------------------------------------------------------------------------------ in-process API

def test_in_process_api() -> None:
    db = XenStoreDB()
    events: list[tuple[str, str]] = []
    session = db.connect(lambda p, t: events.append((p, t)))
    db.op_watch(session, "/vm", "tok")()
    db.write("/vm/u/name", "web1")
    assert db.read("/vm/u/name") == b"web1"
    assert db.directory("/vm") == ["u"]
    assert db.exists("/vm/u") and not db.exists("/vm/x") and not db.exists("bad path")
    db.set_perms("/vm/u", [db.get_perms("/vm/u")[0]])
    db.mkdir("/vm/d")
    db.rm("/vm/u")
    with pytest.raises(StoreError) as info:
        db.read("/vm/u")
    assert info.value.name == "ENOENT"
    assert events == [("/vm", "tok"), ("/vm/u/name", "tok"), ("/vm/u", "tok"),
                      ("/vm/d", "tok"), ("/vm/u", "tok")]  # rm: descendants fire exact watches only


def test_release_domain_removes_its_nodes_then_fires() -> None:
    db = XenStoreDB()
    events: list[tuple[str, str]] = []
    session = db.connect(lambda p, t: events.append((p, t)))
    db.op_watch(session, "/local", "l")()
    db.op_watch(session, "@releaseDomain", "r")()
    events.clear()
    db.introduce_domain(5)
    db.write("/local/domain/5/name", "g")
    db.set_perms("/local/domain/5", [db.get_perms("/")[0]._replace(domid=5)])
    events.clear()
    db.release_domain(5)
    assert not db.exists("/local/domain/5")
    assert events[-1] == ("@releaseDomain", "r")
    with pytest.raises(StoreError):
        db.release_domain(5)


def test_socket_is_replaced_when_stale(short_dir: str) -> None:
    path = f"{short_dir}/socket"
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()

    async def main() -> None:
        from aiovirt.sim.xenstored import XenStored
        async with XenStored(XenStoreDB(), path, None):
            c = await RawClient.open(path)
            assert await c.ok(O.READ, b"/tool\0") == b""
            await c.close()

    asyncio.run(main())


def test_frame_decoder_interop() -> None:
    assert FrameDecoder().feed(encode(O.READ, 1, 0, b"/\0"))[0].payload == b"/\0"


async def test_frames_before_an_oversized_header_are_answered(daemon: Daemon) -> None:
    # As C: each request is handled as it is read, so those before the bad header get replies.
    bad = await daemon.client()
    bad.writer.write(encode(O.READ, 1, 0, b"/tool\0") + encode(O.GET_DOMAIN_PATH, 2, 0, b"3\0")
                     + HEADER.pack(O.READ, 3, 0, 4097) + encode(O.READ, 4, 0, b"/tool\0"))
    data = await asyncio.wait_for(bad.reader.read(), 5)  # to the end of the stream
    frames = FrameDecoder().feed(data)
    assert [(m.op, m.req_id, m.payload) for m in frames] == [
        (O.READ, 1, b""), (O.GET_DOMAIN_PATH, 2, b"/local/domain/3\0")]


# --------------------------------------------- domains that do not exist (XSA-322, issue 11)

# The hypervisor has domains 0, 1 and 2 only; 7 is introduced on the way, 9 never exists.
EXISTING = (0, 1, 2)
MISSING_DOMAIN_SCRIPT = [
    (O.WRITE, b"/a\0v"),
    (O.SET_PERMS, b"/a\0n9\0"),  # owner does not exist
    (O.SET_PERMS, b"/missing\0n9\0"),  # ... refused before the path is looked at
    (O.SET_PERMS, b"/missing\0n1\0"),
    (O.SET_PERMS, b"@releaseDomain\0n9\0"),
    (O.SET_PERMS, b"/a\0x9\0"),  # a bad entry is EINVAL first
    (O.SET_PERMS, b"/a\0b9\0"),
    (O.SET_PERMS, b"/a\0n1\0r9\0w2\0"),  # other entries may name anyone; kept as given
    (O.GET_PERMS, b"/a\0"),
    (O.INTRODUCE, b"7\0001\0001\0"),
    (O.SET_PERMS, b"/a\0n7\0"),  # an introduced domain exists
    (O.GET_PERMS, b"/a\0"),
    (O.SET_PERMS, b"@introduceDomain\0n2\0r9\0"),
    (O.SET_PERMS, b"/\0b2\0"),
]


def _run_missing_domain_script(path: str) -> list[tuple[str, bytes]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    dec = FrameDecoder()
    out: list[tuple[str, bytes]] = []
    try:
        for req, (op, payload) in enumerate(MISSING_DOMAIN_SCRIPT, 1):
            sock.sendall(encode(op, req, 0, payload))
            while True:
                replies = [m for m in dec.feed(sock.recv(65536)) if m.op != O.WATCH_EVENT]
                if replies:
                    break
            out.extend((XsOp(m.op).name, m.payload) for m in replies)
    finally:
        sock.close()
    return out


@pytest.mark.interop
async def test_missing_owner_and_entries_as_c_xenstored(short_dir: str) -> None:
    from aiovirt.sim.xenstored import XenStored
    from tests.support.real_xenstored import real_xenstored, require_real_xenstored

    require_real_xenstored()
    with real_xenstored(f"{short_dir}/real", trace=False, domains=EXISTING) as real_path:
        real = await asyncio.to_thread(_run_missing_domain_script, real_path)
    db = XenStoreDB(domain_exists=EXISTING.__contains__)
    async with XenStored(db, f"{short_dir}/sim-socket", None) as server:
        sim = await asyncio.to_thread(_run_missing_domain_script, server.socket_path)
    assert sim == real
    assert real[1] == ("ERROR", b"ENOENT\0") and real[8] == ("GET_PERMS", b"n1\0r9\0w2\0")


async def test_entries_naming_a_gone_domain_are_ignored(short_dir: str) -> None:
    """XSA-322: once the hypervisor no longer has a domain, entries naming it grant nothing,
    for good (a later domain with the id does not inherit them), and it cannot be made an
    owner any more."""
    from aiovirt.sim.xenstored import XenStored

    alive = {0, 1, 2}
    db = XenStoreDB(domain_exists=alive.__contains__)
    async with XenStored(db, f"{short_dir}/socket", None) as server:
        d = Daemon(db, server, server.socket_path, "", short_dir)
        xs = await d.client()
        guest = await _as_guest(d, 1)
        try:
            await xs.ok(O.WRITE, b"/p\0secret")
            await xs.ok(O.SET_PERMS, b"/p\0n0\0r1\0")
            assert await guest.ok(O.READ, b"/p\0") == b"secret"
            alive.discard(1)
            db.forget_domain(1)
            assert await guest.err(O.READ, b"/p\0") == "EACCES"
            assert await xs.ok(O.GET_PERMS, b"/p\0") == b"n0\0r1\0"  # still listed
            assert await xs.err(O.SET_PERMS, b"/p\0n1\0") == "ENOENT"
            await xs.ok(O.WRITE, b"/p/child\0c")  # a new node copies the marked entry
            alive.add(1)  # a new domain 1 does not inherit what the old one was given
            assert await guest.err(O.READ, b"/p\0") == "EACCES"
            assert await guest.err(O.READ, b"/p/child\0") == "EACCES"
            await xs.ok(O.WRITE, b"/p\0rewritten")
            assert await guest.err(O.READ, b"/p\0") == "EACCES"
            await xs.ok(O.SET_PERMS, b"/p\0n0\0r1\0")  # given anew, it counts
            assert await guest.ok(O.READ, b"/p\0") == b"rewritten"
            # an entry for a domain that does not exist yet grants nothing once it does
            await xs.ok(O.SET_PERMS, b"/p/child\0n0\0r4\0")
            alive.add(4)
            guest4 = await _as_guest(d, 4)
            assert await guest4.err(O.READ, b"/p/child\0") == "EACCES"
            await guest4.close()
        finally:
            await guest.close()
            await xs.close()


# ------------------------------------------------ C's node quotas for guests (issue 11 part 4)

def _guest_with_nodes(owned: int) -> tuple[XenStoreDB, object]:
    """A store where domain 5 owns ``owned`` nodes: its home and ``owned - 1`` under it."""
    db = XenStoreDB()
    db.write("/local/domain/5", "")
    db.set_perms("/local/domain/5", [parse_perm("n5")])
    guest = db.connect(domid=5)
    for i in range(owned - 1):  # in groups of 100 (a node record must stay under 2048)
        group, k = divmod(i, 101)
        db.op_write(guest, None, f"/local/domain/5/g{group}" + (f"/{k}" if k else ""), b"")
    assert db.owned_nodes(5) == owned
    return db, guest


def _recount(db: XenStoreDB) -> dict[int, int]:
    counts: dict[int, int] = {}

    def walk(path: str) -> None:
        owner = db.get_perms(path)[0].domid
        counts[owner] = counts.get(owner, 0) + 1
        for name in db.directory(path):
            walk(f"{path.rstrip('/')}/{name}")

    walk("/")
    return counts


def test_a_guest_owns_at_most_1000_nodes() -> None:
    db, guest = _guest_with_nodes(999)
    db.op_write(guest, None, "/local/domain/5/last", b"")  # C checks the count before adding
    assert db.owned_nodes(5) == 1000
    with pytest.raises(StoreError, match="ENOSPC"):
        db.op_write(guest, None, "/local/domain/5/one-more", b"")
    with pytest.raises(StoreError, match="ENOSPC"):
        db.op_mkdir(guest, None, "/local/domain/5/one-more")
    db.op_write(guest, None, "/local/domain/5/last", b"rewritten")  # not a new node
    db.write("/local/domain/5/by-dom0", "")  # dom0 may; the node is 5's, as C counts it
    assert db.owned_nodes(5) == 1001
    db.op_rm(guest, None, "/local/domain/5/g0/1")
    db.op_rm(guest, None, "/local/domain/5/g0/2")
    db.op_write(guest, None, "/local/domain/5/again", b"")
    assert _recount(db)[5] == db.owned_nodes(5) == 1000


def test_node_quota_counts_each_new_ancestor_and_creates_nothing_when_over() -> None:
    db, guest = _guest_with_nodes(998)
    with pytest.raises(StoreError, match="ENOSPC"):
        db.op_write(guest, None, "/local/domain/5/a/b/c", b"")  # the third would be over
    assert not db.exists("/local/domain/5/a") and db.owned_nodes(5) == 998
    db.op_write(guest, None, "/local/domain/5/a/b", b"")
    assert db.owned_nodes(5) == 1000


def test_node_quota_in_a_transaction_is_checked_at_commit() -> None:
    db, guest = _guest_with_nodes(998)
    tx_id = db.op_transaction_start(guest, None)
    db.op_write(guest, db.transaction(guest, tx_id), "/local/domain/5/x", b"")
    db.op_transaction_end(guest, db.transaction(guest, tx_id), True)  # 999 < 1000
    # C's commit compares the new total with '>=': the 1000th node fails inside a transaction
    # though it succeeds outside one; the writes inside succeed and nothing is applied.
    tx_id = db.op_transaction_start(guest, None)
    tx = db.transaction(guest, tx_id)
    db.op_write(guest, tx, "/local/domain/5/y", b"")
    with pytest.raises(StoreError, match="ENOSPC"):
        db.op_transaction_end(guest, tx, True)
    assert not db.exists("/local/domain/5/y") and db.owned_nodes(5) == 999
    # removing as many as it adds keeps a transaction under the quota
    tx_id = db.op_transaction_start(guest, None)
    tx = db.transaction(guest, tx_id)
    db.op_rm(guest, tx, "/local/domain/5/g0/1")
    db.op_write(guest, tx, "/local/domain/5/y", b"")
    db.op_transaction_end(guest, tx, True)
    assert _recount(db)[5] == db.owned_nodes(5) == 999


def test_a_guest_transaction_touches_at_most_1024_nodes() -> None:
    db, guest = _guest_with_nodes(1)
    tx_id = db.op_transaction_start(guest, None)
    tx = db.transaction(guest, tx_id)
    db.op_write(guest, tx, "/local/domain/5/w", b"")  # touches w and its parent
    for i in range(1022):
        with pytest.raises(StoreError, match="ENOENT"):
            db.op_read(guest, tx, f"/local/domain/5/missing{i}")
    assert len(tx.accessed) == 1024
    with pytest.raises(StoreError, match="ENOSPC"):
        db.op_read(guest, tx, "/local/domain/5/one-too-many")
    with pytest.raises(StoreError, match="ENOMEM"):  # the transaction is doomed
        db.op_transaction_end(guest, tx, True)
    assert not db.exists("/local/domain/5/w")
    dom0 = db.connect()
    tx = db.transaction(dom0, db.op_transaction_start(dom0, None))
    for i in range(1100):  # dom0 has no such quota
        db.op_write(dom0, tx, f"/many/n{i}", b"")
    db.op_transaction_end(dom0, tx, True)
    assert len(db.directory("/many")) == 1100
