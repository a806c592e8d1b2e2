"""Each aiovirsh command run as a subprocess against a simulated node: text, --json, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from tests.cli.conftest import ROOT, SimProcess, aiovirsh

CREATE_XML = """<domain type='xen'>
  <name>{name}</name>
  <os>
    <type>linux</type>
    <kernel>/boot/vmlinuz-2.6.16-xen</kernel>
    <root>/dev/sda1</root>
  </os>
  <memory>131072</memory>
  <vcpu>1</vcpu>
  <devices>
    <disk type='file'>
      <source file='/var/lib/xen/images/{name}.img'/>
      <target dev='sda1'/>
    </disk>
  </devices>
</domain>
"""


def test_list_shows_every_running_domain_in_a_virsh_table(sim: SimProcess) -> None:
    res = aiovirsh("list", uri=sim.uri)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["Id", "Name", "State"]
    assert set(lines[1]) == {"-"}
    rows = [line.split() for line in lines[2:]]
    assert rows[0][:2] == ["0", "Domain-0"]
    assert {r[1] for r in rows} >= {"Domain-0", "vm1", "vm2"}


def test_list_json_has_id_name_uuid_state(sim: SimProcess) -> None:
    res = aiovirsh("list", "--all", "--json", uri=sim.uri)
    assert res.code == 0, res.err
    data = res.json()
    names = {d["name"]: d for d in data}
    assert names["Domain-0"]["id"] == 0
    assert names["vm1"]["state"] in ("running", "idle")
    uuid.UUID(names["vm1"]["uuid"])


def test_dominfo_and_its_0_0_6_alias(sim: SimProcess) -> None:
    res = aiovirsh("dominfo", "vm1", uri=sim.uri)
    assert res.code == 0, res.err
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in res.out.splitlines())
    assert fields["Name"] == "vm1"
    assert fields["Id"] == "1"
    assert fields["OS Type"] == "linux"
    assert fields["Used memory"].endswith(" KiB")
    assert re.fullmatch(r"\d+\.\ds", fields["CPU time"])
    alias = aiovirsh("dinfo", "1", uri=sim.uri)
    assert alias.code == 0 and "vm1" in alias.out


def test_dominfo_json(sim: SimProcess) -> None:
    data = aiovirsh("--json", "dominfo", "vm1", uri=sim.uri).json()
    assert data["name"] == "vm1" and data["id"] == 1
    assert data["memory_kib"] > 0 and data["max_memory_kib"] >= data["memory_kib"]
    assert data["os_type"] == "linux"


def test_domain_named_by_name_id_or_uuid(sim: SimProcess) -> None:
    uuid_text = aiovirsh("domuuid", "vm1", uri=sim.uri).out.strip()
    uuid.UUID(uuid_text)
    assert aiovirsh("domid", uuid_text, uri=sim.uri).out.strip() == "1"
    assert aiovirsh("domname", "1", uri=sim.uri).out.strip() == "vm1"
    assert aiovirsh("idof", "vm1", uri=sim.uri).out.strip() == "1"
    assert aiovirsh("nameof", "1", uri=sim.uri).out.strip() == "vm1"
    assert aiovirsh("dstate", "vm1", uri=sim.uri).out.strip() in ("running", "idle")
    data = aiovirsh("domstate", "--json", "1", uri=sim.uri).json()
    assert data["name"] == "vm1" and data["uuid"] == uuid_text


def test_dumpxml_prints_the_domain_xml(sim: SimProcess) -> None:
    res = aiovirsh("dumpxml", "vm1", uri=sim.uri)
    assert res.code == 0, res.err
    assert res.out.startswith("<domain type")
    assert "<name>vm1</name>" in res.out


def test_suspend_and_resume(sim: SimProcess) -> None:
    res = aiovirsh("suspend", "vm2", uri=sim.uri)
    assert (res.code, res.out.strip()) == (0, "Domain vm2 suspended"), res.err
    assert aiovirsh("domstate", "vm2", uri=sim.uri).out.strip() == "paused"
    data = aiovirsh("resume", "--json", "vm2", uri=sim.uri).json()
    assert data["result"] == "resumed" and data["name"] == "vm2"
    assert aiovirsh("domstate", "vm2", uri=sim.uri).out.strip() in ("running", "idle")


def test_setmem_and_setmaxmem(sim: SimProcess) -> None:
    before = aiovirsh("--json", "dominfo", "vm2", uri=sim.uri).json()
    new_max = before["max_memory_kib"] + 65536
    res = aiovirsh("setmaxmem", "vm2", str(new_max), uri=sim.uri)
    assert res.code == 0, res.err
    res = aiovirsh("setmem", "vm2", "65536", uri=sim.uri)
    assert res.code == 0, res.err
    after = aiovirsh("--json", "dominfo", "vm2", uri=sim.uri).json()
    assert after["max_memory_kib"] == new_max
    assert after["memory_kib"] == 65536


def test_save_then_restore(sim: SimProcess, tmp_path: os.PathLike[str]) -> None:
    image = os.path.join(str(tmp_path), "vm3.save")
    res = aiovirsh("save", "vm3", image, uri=sim.uri)
    assert (res.code, res.out.strip()) == (0, f"Domain vm3 saved to {image}"), res.err
    assert os.path.getsize(image) > 0
    gone = aiovirsh("domstate", "vm3", uri=sim.uri)
    assert gone.code == 1
    res = aiovirsh("restore", "--json", image, uri=sim.uri)
    assert res.code == 0, res.err
    assert res.json()["result"] == "restored"
    assert aiovirsh("domstate", "vm3", uri=sim.uri).out.strip() in ("running", "idle")


def test_create_from_xml_file(sim: SimProcess, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "new.xml")
    with open(path, "w") as fh:
        fh.write(CREATE_XML.format(name="fresh1"))
    res = aiovirsh("create", path, uri=sim.uri)
    assert res.code == 0, res.err
    assert res.out.strip() == f"Domain fresh1 created from {path}"
    info = aiovirsh("--json", "dominfo", "fresh1", uri=sim.uri).json()
    assert info["memory_kib"] == 131072


def test_shutdown_reboot_destroy(sim: SimProcess, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "new.xml")
    with open(path, "w") as fh:
        fh.write(CREATE_XML.format(name="fresh2"))
    assert aiovirsh("create", path, uri=sim.uri).code == 0
    res = aiovirsh("reboot", "fresh2", uri=sim.uri)
    assert (res.code, res.out.strip()) == (0, "Domain fresh2 is being rebooted"), res.err
    res = aiovirsh("shutdown", "vm4", uri=sim.uri)
    assert (res.code, res.out.strip()) == (0, "Domain vm4 is being shutdown"), res.err
    res = aiovirsh("destroy", "--json", "fresh2", uri=sim.uri)
    # the reboot may have replaced fresh2 by a new instance: either way it is destroyed
    assert res.code == 0, res.err
    assert res.json()["result"] == "destroyed"


def test_nodeinfo(sim: SimProcess) -> None:
    res = aiovirsh("nodeinfo", uri=sim.uri)
    assert res.code == 0, res.err
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in res.out.splitlines())
    assert int(fields["CPU(s)"]) >= 1
    assert fields["Memory size"].endswith(" KiB")
    data = aiovirsh("nodeinfo", "--json", uri=sim.uri).json()
    assert data["cpus"] == int(fields["CPU(s)"])


def test_version(sim: SimProcess) -> None:
    res = aiovirsh("version", uri=sim.uri)
    assert res.code == 0, res.err
    assert "Using library: aiovirt" in res.out
    assert re.search(r"Running hypervisor: Xen 3\.0\.\d", res.out)
    assert aiovirsh("version", "--json", uri=sim.uri).json()["hypervisor"] >= 3_000_000


def test_top_once_prints_every_domain(sim: SimProcess) -> None:
    res = aiovirsh("top", "--once", "--interval", "0.1", "--sort", "id", uri=sim.uri)
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split()[:3] == ["Id", "Name", "State"]
    assert lines[2].split()[:2] == ["0", "Domain-0"]
    assert re.search(r"\d+ domains \(", res.out)
    data = aiovirsh("top", "--once", "--json", "--interval", "0.1", uri=sim.uri).json()
    cpu = [d["cpu_percent"] for d in data["domains"]]
    assert all(isinstance(c, float) for c in cpu)
    assert cpu == sorted(cpu, reverse=True)  # default sort: busiest first
    assert data["interval"] == 0.1


def test_top_once_measures_its_rates_over_half_a_second_by_default(sim: SimProcess) -> None:
    data = aiovirsh("top", "--once", "--json", uri=sim.uri).json()
    assert data["interval"] == 0.5
    running = [d for d in data["domains"] if d["state"] == "running"]
    assert running and all(d["cpu_percent"] > 0 for d in running)
    assert all(d["cpu_percent"] is not None for d in data["domains"])


# --- errors -------------------------------------------------------------------------------------

def test_unknown_domain_is_one_line_on_stderr_and_exit_1(sim: SimProcess) -> None:
    res = aiovirsh("dominfo", "nosuch", uri=sim.uri)
    assert res.code == 1
    assert res.out == ""
    assert res.err.count("\n") == 1
    assert res.err.startswith("error: failed to get domain 'nosuch'")
    assert "nosuch" in res.err


def test_json_errors_carry_the_libvirt_code(sim: SimProcess) -> None:
    res = aiovirsh("--json", "domstate", "nosuch", uri=sim.uri)
    assert res.code == 1
    err = json.loads(res.err)
    assert err["code_name"] == "NO_DOMAIN" and err["code"] == 42


@pytest.mark.parametrize(("command", "verb"), [
    ("suspend", "suspend"), ("resume", "resume"), ("destroy", "destroy"),
    ("shutdown", "shut down"), ("reboot", "reboot"),
])
def test_readonly_connection_refuses_changes(sim: SimProcess, command: str, verb: str) -> None:
    res = aiovirsh("--readonly", command, "vm1", uri=sim.uri)
    assert res.code == 1
    assert res.err.startswith(f"error: failed to {verb} domain 'vm1': ")
    assert "read only" in res.err
    assert aiovirsh("--readonly", "domstate", "vm1", uri=sim.uri).code == 0


def test_usage_error_exits_2(sim: SimProcess) -> None:
    assert aiovirsh("dominfo", uri=sim.uri).code == 2
    assert aiovirsh("frobnicate", uri=sim.uri).code == 2


def test_missing_file_is_reported(sim: SimProcess, tmp_path: os.PathLike[str]) -> None:
    res = aiovirsh("create", os.path.join(str(tmp_path), "absent.xml"), uri=sim.uri)
    assert res.code == 1
    assert res.err.startswith("error: cannot read")


def test_no_xen_here_hints_at_the_simulator(tmp_path: os.PathLike[str]) -> None:
    base = str(tmp_path)
    uri = (f"xen:///?xend=unix:{base}/xend-socket&xenstore={base}/socket"
           f"&hypervisor=sim:{base}/privcmd")
    res = aiovirsh("list", uri=uri)
    assert res.code == 1
    assert res.err.count("\n") == 1
    assert "sim:///" in res.err


@pytest.mark.parametrize("args", [("list",), ("top", "--once", "--interval", "0.05")])
def test_sim_uri_runs_an_embedded_node(args: tuple[str, ...]) -> None:
    res = aiovirsh(*args, uri="sim:///")
    assert res.code == 0, res.err
    assert "Domain-0" in res.out


@pytest.mark.parametrize("as_json", [False, True])
def test_events_prints_what_happens(sim: SimProcess, as_json: bool) -> None:
    victim = "fresh-events-json" if as_json else "fresh-events-text"
    path = os.path.join(sim.directory, f"{victim}.xml")
    with open(path, "w") as fh:
        fh.write(CREATE_XML.format(name=victim))
    cmd = [sys.executable, "-m", "aiovirt", "-c", sim.uri, "events", "--count", "2",
           "--timeout", "20", "--interval", "0.1"] + (["--json"] if as_json else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("watching ")  # subscribed: act now
        assert aiovirsh("create", path, uri=sim.uri).code == 0
        assert aiovirsh("destroy", victim, uri=sim.uri).code == 0
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    if as_json:
        events = [json.loads(line) for line in lines]
        assert [(e["name"], e["kind"], e["detail"]) for e in events] == [
            (victim, "started", "booted"), (victim, "stopped", "destroyed")]
    else:
        assert lines[0].split()[2:] == [victim, "started", "booted"]
        assert lines[1].split()[2:] == [victim, "stopped", "destroyed"]
