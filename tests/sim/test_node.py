"""The node model: every lifecycle change is visible alike through xenstore, xend and privcmd."""

from __future__ import annotations

import errno
import struct
import time
from pathlib import Path

import pytest

from aiovirt.protocol.privcmd import PAGE_KIB, PrivcmdOp
from aiovirt.protocol.sexpr import lookup, parse
from aiovirt.protocol.states import (
    DomainState,
    ShutdownReason,
    state_from_flags,
    state_from_xend,
)
from aiovirt.protocol.xs_wire import Perm, PermAccess, XsOp
from aiovirt.sim import NoSuchDomain, SimDomain, SimError, SimNode
from tests.sim.wire import RawXs, http, privcmd_call, privcmd_records

CONFIG = ("(vm (name web9) (memory 128) (maxmem 256) (vcpus 2) (on_crash preserve) "
          "(image (linux (kernel /boot/vmlinuz) (root '/dev/xvda1 ro') (args quiet))) "
          "(device (vbd (uname phy:/dev/vg/web9) (dev xvda) (mode w))) "
          "(device (vif (mac 00:16:3e:00:00:09) (bridge xenbr1))))")


class Specials:
    """Collects @introduceDomain/@releaseDomain events from an in-process store session."""

    def __init__(self, node: SimNode) -> None:
        self.events: list[str] = []
        session = node.db.connect(lambda path, token: self.events.append(path))
        node.db.op_watch(session, "@introduceDomain", "i")
        node.db.op_watch(session, "@releaseDomain", "r")


async def view(node: SimNode, domid: int) -> dict[str, object]:
    """Return one domain as seen through xend, xenstore and the hypercall endpoint."""
    reply = await http(node, "GET", f"/xend/domain/{domid}")
    assert reply.status == 200, reply.text
    sx = parse(reply.body)
    recs = [r for r in await privcmd_records(node.privcmd_path) if r.domid == domid]
    assert len(recs) == 1
    rec = recs[0]
    home = f"/local/domain/{domid}"
    vm = node.db.read(f"{home}/vm").decode()
    return {
        "xend_state": state_from_xend(lookup(sx, "domain/state")),
        "hv_state": state_from_flags(rec.flags),
        "xend_name": lookup(sx, "domain/name"),
        "xs_name": node.db.read(f"{vm}/name").decode(),
        "xend_uuid": lookup(sx, "domain/uuid"),
        "hv_uuid": str(rec.uuid),
        "xs_uuid": node.db.read(f"{vm}/uuid").decode(),
        "xend_mem_kib": int(lookup(sx, "domain/memory") or 0) * 1024,
        "xs_target_kib": int(node.db.read(f"{home}/memory/target")),
        "hv_kib": rec.tot_pages * PAGE_KIB,
        "xend_max_kib": int(lookup(sx, "domain/maxmem") or 0) * 1024,
        "hv_max_kib": rec.max_pages * PAGE_KIB,
        "xend_vcpus": int(lookup(sx, "domain/online_vcpus") or 0),
        "hv_vcpus": rec.nr_online_vcpus,
        "xend_cpu": float(lookup(sx, "domain/cpu_time") or 0),
        "hv_cpu": rec.cpu_time / 1e9,
    }


def assert_consistent(v: dict[str, object], *, max_set: bool = False) -> None:
    """Assert that the three interfaces agree on one domain.

    ``max_set``: the hypervisor's maximum was changed since xend built the domain, which xend's
    configured maxmem does not follow.
    """
    assert v["xend_state"] == v["hv_state"]
    assert v["xend_name"] == v["xs_name"]
    assert v["xend_uuid"] == v["hv_uuid"] == v["xs_uuid"]
    assert v["xend_mem_kib"] == v["xs_target_kib"] == v["hv_kib"]
    if not max_set:
        assert v["xend_max_kib"] == v["hv_max_kib"]
    assert v["xend_vcpus"] == v["hv_vcpus"]


async def test_initial_node_agrees_across_interfaces(node: SimNode) -> None:
    ids = [d.domid for d in node.domains]
    assert ids == [0, 1, 2, 3]
    assert [d.name for d in node.domains] == ["Domain-0", "vm1", "vm2", "vm3"]
    for domid in ids:
        assert_consistent(await view(node, domid))
    dom0 = await view(node, 0)
    assert dom0["xend_uuid"] == "00000000-0000-0000-0000-000000000000"
    assert dom0["hv_state"] == DomainState.RUNNING
    assert node.db.directory("/local/domain") == ["0", "1", "2", "3"]


async def test_guest_store_layout_matches_xend(node: SimNode) -> None:
    dom = node.get("vm1")
    home, vm = dom.home, dom.vm_path
    db = node.db
    assert db.get_perms(home) == [Perm(1, PermAccess.NONE)]
    assert db.get_perms(f"{vm}/uuid") == [Perm(1, PermAccess.READ)]
    assert db.read(f"{home}/vm").decode() == vm
    assert db.read(f"{home}/domid") == b"1"
    assert db.read(f"{home}/store/port") == b"1"
    assert db.read(f"{home}/console/port") == b"2"
    assert db.read(f"{vm}/image/cmdline") == b" root=/dev/sda1 ro"
    front = f"{home}/device/vbd/2049"
    back = "/local/domain/0/backend/vbd/1/2049"
    assert db.read(f"{front}/backend").decode() == back
    assert db.read(f"{back}/frontend").decode() == front
    assert db.get_perms(front) == [Perm(1, PermAccess.NONE), Perm(0, PermAccess.READ)]
    assert db.get_perms(back) == [Perm(0, PermAccess.NONE), Perm(1, PermAccess.READ)]
    assert db.read(f"{back}/params") == b"/var/lib/xen/images/vm1.img"
    assert db.read(f"{home}/device/vif/0/mac") == db.read("/local/domain/0/backend/vif/1/0/mac")
    assert not db.exists(f"{home}/control")  # no request made yet


async def test_seed_makes_guests_reproducible(short_dir: Path, tmp_path: Path) -> None:
    async def identities(directory: Path, seed: int) -> list[tuple[str, int, int]]:
        async with SimNode(directory, domains=4, seed=seed) as sim:
            return [(str(d.uuid), d.memory_kib, d.vcpus) for d in sim.domains]

    other = short_dir / "b"
    first = await identities(short_dir / "a", 11)
    assert first == await identities(other, 11)
    assert first != await identities(other, 12)
    assert len({u for u, _, _ in first}) == 5


async def test_create_leaves_domain_paused_then_unpause_runs_it(node: SimNode) -> None:
    specials = Specials(node)
    dom = node.create(CONFIG)
    assert dom.domid == 4 and dom.name == "web9"
    assert "@introduceDomain" in specials.events
    v = await view(node, 4)
    assert_consistent(v)
    assert v["hv_state"] == DomainState.PAUSED
    assert v["xend_max_kib"] == 256 * 1024 and v["hv_vcpus"] == 2
    front = "/local/domain/4/device/vbd/51712"
    assert node.db.read(f"{front}/virtual-device") == b"51712"
    assert node.db.read("/local/domain/0/backend/vbd/4/51712/params") == b"/dev/vg/web9"
    assert node.db.read("/local/domain/0/backend/vif/4/0/bridge") == b"xenbr1"
    node.unpause(4)
    assert (await view(node, 4))["hv_state"] == DomainState.BLOCKED


async def test_a_disk_is_numbered_as_linux_numbers_it_in_the_store_and_the_statistics(
        node: SimNode) -> None:
    # sdq is the 17th SCSI disk: major 65, not 8 (the numbers the block backends use)
    dom = node.create("(vm (name big) (memory 64) (image (linux (kernel /k))) "
                      "(device (vbd (uname phy:/dev/vg/big) (dev sdq1) (mode w))))")
    front = f"/local/domain/{dom.domid}/device/vbd/16641"
    assert node.db.read(f"{front}/virtual-device") == b"16641"
    assert node.devstats is not None
    await node.devstats.refresh()
    assert (node.devstats.devices_dir / f"vbd-{dom.domid}-16641" / "statistics").is_dir()


@pytest.mark.parametrize(("config", "message"), [
    ("(vm (name vm1) (memory 64) (image (linux (kernel /k))))",
     "Error creating domain: VM name 'vm1' already in use by domain 1"),
    ("(vm (name 'a b') (memory 64) (image (linux (kernel /k))))",
     "Error creating domain: invalid vm name"),
    ("(vm (name x) (memory 0) (image (linux (kernel /k))))",
     "Error creating domain: Invalid memory size"),
    ("(vm (name x) (memory abc) (image (linux (kernel /k))))",
     "Error creating domain: invalid literal for int() with base 10: 'abc'"),
    ("(vm (name x) (memory 64))", "Error creating domain: Missing image in configuration"),
    ("(vm (name x) (memory 64) (image (bsd (kernel /k))))",
     "Error creating domain: unknown image type: bsd"),
    ("(vm (name x) (memory 64) (on_crash explode) (image (linux (kernel /k))))",
     "Error creating domain: invalid restart event: on_crash = explode"),
    ("(vm (name x) (memory 64) (image (linux (kernel /k))) (device (disk (dev a))))",
     "Error creating domain: invalid device (disk (dev a))"),
    ("(vm (name x) (memory 64) (image (linux (kernel /k))) "
     "(device (vbd (uname phy:/d) (dev sda) (mode q))))", "Error creating domain: Invalid mode"),
    ("(vm (name x) (memory 99999999) (image (linux (kernel /k))))",
     "Error creating domain: I need"),
    ("(vm (name x)", "Configuration error list index out of range"),
])
async def test_create_refuses_bad_configs_with_xend_messages(
        node: SimNode, config: str, message: str) -> None:
    with pytest.raises(SimError) as info:
        node.create(config)
    assert str(info.value).startswith(message)
    assert len(node) == 4


async def test_pause_stops_cpu_time_and_dom0_refuses(node: SimNode) -> None:
    node.set_busy("vm2", True)
    assert (await view(node, 2))["hv_state"] == DomainState.RUNNING
    node.pause("vm2")
    before = await view(node, 2)
    assert before["hv_state"] == before["xend_state"] == DomainState.PAUSED
    after = await view(node, 2)
    assert after["hv_cpu"] == before["hv_cpu"]
    node.pause("vm2")  # idempotent
    node.unpause("vm2")
    assert (await view(node, 2))["hv_state"] == DomainState.RUNNING
    with pytest.raises(SimError, match="Cannot pause privileged domain 0"):
        node.pause(0)
    with pytest.raises(NoSuchDomain, match="No such domain nosuch"):
        node.pause("nosuch")


async def test_shutdown_request_is_acked_then_domain_goes_away(node: SimNode) -> None:
    specials = Specials(node)
    dom = node.get("vm1")
    node.request_shutdown("vm1", "poweroff")
    assert node.db.read("/local/domain/1/control/shutdown") == b"poweroff"
    await node.wait_for(lambda: dom.shutdown_code is not None, 2)
    assert node.db.read("/local/domain/1/control/shutdown") == b""  # the guest's ack
    v = await view(node, 1)
    assert v["hv_state"] == v["xend_state"] == DomainState.SHUTOFF
    await node.wait_for(lambda: node.find(1) is None, 2)
    assert "@releaseDomain" in specials.events
    assert not node.db.exists("/local/domain/1")
    assert not node.db.exists(dom.vm_path)
    assert not node.db.exists("/local/domain/0/backend/vbd/1")
    assert [r.domid for r in await privcmd_records(node.privcmd_path)] == [0, 2, 3]
    assert (await http(node, "GET", "/xend/domain/vm1")).status == 404


async def test_reboot_restarts_with_same_uuid_and_new_id(node: SimNode) -> None:
    old = node.get("vm2")
    node.reboot("vm2")
    await node.wait_for(lambda: node.find("vm2") not in (None, old), 2)
    new = node.get("vm2")
    assert new.domid == 4 and new.uuid == old.uuid
    assert not node.db.exists("/local/domain/2")
    assert node.db.read(f"{new.vm_path}/xend/restart_count") == b"1"
    assert node.db.read("/local/domain/4/vm").decode() == new.vm_path
    assert_consistent(await view(node, 4))


async def test_guest_answers_a_request_written_by_a_store_client(node: SimNode) -> None:
    xs = await RawXs.open(node.xenstore_path)
    try:
        reply = await xs.call(XsOp.WRITE, "/local/domain/3/control/shutdown", "halt")
        assert reply.op == XsOp.WRITE
    finally:
        await xs.close()
    await node.wait_for(lambda: node.find("vm3") is None, 2)


async def test_suspend_request_leaves_domain_shut_down(node: SimNode) -> None:
    dom = node.get("vm3")
    node.request_shutdown("vm3", "suspend")
    await node.wait_for(lambda: dom.shutdown_code == ShutdownReason.SUSPEND, 2)
    reply = await http(node, "GET", "/xend/domain/vm3")
    assert lookup(parse(reply.body), "domain/shutdown_reason") == "suspend"
    assert lookup(parse(reply.body), "domain/state") == "---s--"


async def test_paused_guest_cannot_answer_and_is_destroyed_after_timeout(
        short_dir: Path) -> None:
    async with SimNode(short_dir, domains=1, shutdown_delay=0.01, shutdown_timeout=0.1) as sim:
        sim.pause("vm1")
        sim.request_shutdown("vm1", "poweroff")
        assert sim.db.read("/local/domain/1/control/shutdown") == b"poweroff"
        await sim.wait_for(lambda: sim.find("vm1") is None, 3)


async def test_crash_preserved_or_restarted(node: SimNode) -> None:
    dom = node.create(CONFIG)  # on_crash preserve
    node.unpause(dom.domid)
    node.crash(dom.domid)
    v = await view(node, dom.domid)
    assert v["hv_state"] == v["xend_state"] == DomainState.CRASHED
    await node.wait_for(lambda: node.db.exists(f"{dom.home}/xend/shutdown_completed"), 2)
    assert node.find("web9") is dom
    old = node.get("vm1")  # default on_crash restart
    node.crash("vm1")
    await node.wait_for(lambda: node.find("vm1") not in (None, old), 2)
    assert node.get("vm1").uuid == old.uuid


async def test_destroy_removes_every_trace(node: SimNode) -> None:
    specials = Specials(node)
    dom = node.get("vm2")
    node.destroy("vm2")
    assert node.find("vm2") is None and node.find(2) is None
    assert "@releaseDomain" in specials.events
    assert not node.db.exists("/local/domain/2")
    assert not node.db.exists(dom.vm_path)
    assert not node.db.exists("/local/domain/0/backend/vif/2")
    with pytest.raises(SimError, match="Cannot destroy privileged domain 0"):
        node.destroy(0)


async def test_destroyed_domain_lingers_as_zombie_with_dying_delay(short_dir: Path) -> None:
    async with SimNode(short_dir, domains=2, dying_delay=0.1) as sim:
        dom = sim.get("vm1")
        sim.destroy("vm1")
        assert dom.name == "Zombie-vm1"
        recs = {r.domid: r for r in await privcmd_records(sim.privcmd_path)}
        assert state_from_flags(recs[1].flags) == DomainState.SHUTDOWN
        await sim.wait_for(lambda: sim.find(1) is None, 2)


async def test_save_writes_xend_layout_and_restore_brings_it_back(
        node: SimNode, short_dir: Path) -> None:
    dom = node.get("vm1")
    path = short_dir / "vm1.save"
    await node.save("vm1", path)
    assert node.find("vm1") is None
    assert not node.db.exists("/local/domain/1")
    blob = path.read_bytes()
    assert blob[:16] == b"LinuxGuestRecord"
    (length,) = struct.unpack(">I", blob[16:20])
    saved = parse(blob[20:20 + length])
    assert lookup(saved, "domain/name") == "vm1"
    assert lookup(saved, "domain/uuid") == str(dom.uuid)
    restored = await node.restore(path)
    assert restored.domid == 4 and restored.name == "vm1" and restored.uuid == dom.uuid
    v = await view(node, 4)
    assert_consistent(v)
    assert v["hv_state"] == DomainState.BLOCKED
    assert restored.start_time is None
    with pytest.raises(SimError, match="VM name 'vm1' already in use by domain 4"):
        await node.restore(path)


async def test_restore_refuses_files_that_are_not_save_files(
        node: SimNode, short_dir: Path) -> None:
    bogus = short_dir / "bogus"
    bogus.write_bytes(b"NotAGuestRecord!rest")
    with pytest.raises(SimError, match="not a valid guest state file: found 'NotAGuestRecord!'"):
        await node.restore(bogus)
    with pytest.raises(SimError, match="can't read guest state file"):
        await node.restore(short_dir / "missing")


async def test_memory_target_and_max_agree_everywhere(node: SimNode) -> None:
    dom = node.get("vm3")
    configured = dom.maxmem_kib
    node.set_max_memory("vm3", 1024 * 1024)
    node.set_memory_target("vm3", 512 * 1024)
    v = await view(node, dom.domid)
    assert_consistent(v, max_set=True)
    assert v["hv_kib"] == 512 * 1024 and v["hv_max_kib"] == 1024 * 1024
    # the hypervisor's limit is not xend's configuration: sxpr and /vm keep the configured one
    assert v["xend_max_kib"] == configured
    assert node.db.read(f"{dom.vm_path}/maxmem") == str(configured // 1024).encode()
    with pytest.raises(OSError) as caught:
        node.set_max_memory("vm3", 0)
    assert caught.value.errno == errno.EINVAL
    assert node.db.read(f"{dom.vm_path}/memory") == b"512"
    with pytest.raises(SimError, match="Invalid memory size"):
        node.set_memory_target("vm3", 0)


async def test_hypercalls_change_the_same_domains(node: SimNode) -> None:
    path = node.privcmd_path
    assert await privcmd_call(path, PrivcmdOp.PAUSEDOMAIN, 1) == 0
    assert (await view(node, 1))["xend_state"] == DomainState.PAUSED
    assert await privcmd_call(path, PrivcmdOp.UNPAUSEDOMAIN, 1) == 0
    assert await privcmd_call(path, PrivcmdOp.PAUSEDOMAIN, 0) == -errno.EINVAL
    assert await privcmd_call(path, PrivcmdOp.PAUSEDOMAIN, 42) == -errno.ESRCH
    before = (await view(node, 2))["xend_max_kib"]
    assert await privcmd_call(path, PrivcmdOp.SETDOMAINMAXMEM, 2, 2 * 1024 * 1024) == 0
    v = await view(node, 2)
    assert (v["hv_max_kib"], v["xend_max_kib"]) == (2 * 1024 * 1024, before)
    assert await privcmd_call(path, PrivcmdOp.SETDOMAINMAXMEM, 2, 0) == -errno.EINVAL
    assert await privcmd_call(path, PrivcmdOp.DESTROYDOMAIN, 3) == 0
    assert node.find(3) is None and not node.db.exists("/local/domain/3")
    assert (await http(node, "GET", "/xend/domain/3")).status == 404
    recs = await privcmd_records(path, first=2)
    assert [r.domid for r in recs] == [2]


async def test_node_info_agrees_with_physinfo(node: SimNode) -> None:
    info = parse((await http(node, "GET", "/xend/node")).body)
    phys = node.physinfo()
    assert lookup(info, "node/nr_cpus") == str(phys.nr_cpus)
    assert int(lookup(info, "node/total_memory") or 0) == phys.total_pages * PAGE_KIB // 1024
    free_before = phys.free_pages
    node.create(CONFIG)
    assert node.physinfo().free_pages == free_before - 128 * 1024 // PAGE_KIB
    assert node.xen_version() == (3, 0, ".3-0")


async def test_stats_count_xend_ops_and_hypercalls(node: SimNode) -> None:
    await http(node, "POST", "/xend/domain/vm1", "op=pause")
    await privcmd_records(node.privcmd_path)
    stats = node.stats
    assert stats["xend.pause"] == 1
    assert stats["privcmd.GETDOMAININFOLIST"] == 1


async def test_cpu_time_never_outgrows_the_hosts_cpus(short_dir: Path) -> None:
    # 300 guests want far more CPU than the 64-core host has: they share it, as under Xen.
    # The records (what GETDOMAININFOLIST answers) are read one second apart on the model's
    # clock, so the rate is exact and does not depend on how the test is scheduled.
    async with SimNode(short_dir, domains=300, seed=5) as big:
        assert big.physinfo().nr_cpus == 64

        def cpu_seconds_in_one_second(doms: list[SimDomain]) -> float:
            now = time.monotonic()
            return sum(d.record(now + 1.0).cpu_time - d.record(now).cpu_time
                       for d in doms) / 1e9

        assert cpu_seconds_in_one_second(big.domains) == pytest.approx(64, rel=1e-6)
        # pausing every guest frees the host: Domain-0 alone gets all it asks for
        for dom in list(big.domains)[1:]:
            big.pause(dom.domid)
        dom0 = big.get(0)
        assert cpu_seconds_in_one_second(big.domains) == pytest.approx(
            0.05 * dom0.online_vcpus, rel=1e-6)
