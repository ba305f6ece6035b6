"""`headnode vm` through the real command, on the embedded default."""

from __future__ import annotations

import json
import os
import subprocess

from engine.defaults import sample_templates
from engine.home import Home
from tests.conftest import HEADNODE, ROOT

TTYLINUX = str(sample_templates()["ttylinux.tmpl"])


def test_create_deploy_show_and_shutdown_on_a_fresh_home(headnode, home) -> None:
    r = headnode("vm", "create", TTYLINUX)
    assert (r.returncode, r.stdout, r.stderr) == (0, "0\n", "")
    r = headnode("vm", "deploy", "0", "local")
    # The deploy runs in the home's service and is followed: its lines, then the VM as it ended.
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "VM 0: running on local"
    assert "vm 0 line 2: MKSWAP" in r.stdout and "vm 0 script done" in r.stdout
    assert sorted(p.name for p in (home.vms / "0" / "images").iterdir()) == ["disk.0", "disk.1", "disk.2"]

    shown = json.loads(headnode("vm", "show", "0", "--json").stdout)
    assert {k: shown[k] for k in ("id", "name", "state", "host")} == {
        "id": 0,
        "name": "ttylinux",
        "state": "running",
        "host": "local",
    }
    (nic,) = shown["template"]["NIC"]
    assert nic["IP"] == "192.168.122.2" and nic["MAC"] == "02:00:c0:a8:7a:02" and nic["NETWORK"] == "default"
    assert shown["template"]["CONTEXT"]["HOSTNAME"] == "ttylinux-0"

    listed = json.loads(headnode("vm", "list", "--json").stdout)
    assert [(v["id"], v["state"], v["host"]) for v in listed] == [(0, "running", "local")]
    table = headnode("vm", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "USER", "NAME", "STATE", "HOST", "IPS"]
    assert table[1].split()[2:] == ["ttylinux", "running", "local", "192.168.122.2"]

    log = headnode("vm", "log", "0").stdout
    assert "[TM][I]" in log and "MKSWAP" in log

    r = headnode("vm", "shutdown", "0", "--json")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["event"] == "script_started" and events[-1]["event"] == "vm_operation_finished"
    assert events[-1]["vm"]["state"] == "done"
    assert json.loads(headnode("vnet", "show", "default", "--json").stdout)["leases"] == []


def test_create_json_and_errors(headnode, tmp_path) -> None:
    created = json.loads(headnode("vm", "create", TTYLINUX, "--json").stdout)
    assert created["state"] == "pending" and created["host"] is None
    assert created["template"]["NIC"][0]["IP"] == "192.168.122.2"

    bad = tmp_path / "bad.tmpl"
    bad.write_text('NAME = "x\n')
    r = headnode("vm", "create", str(bad))
    assert (r.returncode, r.stderr) == (2, f"{bad}:1:8: unterminated quoted value\n")

    r = headnode("vm", "stop", str(created["id"]))
    assert r.returncode == 2
    assert r.stderr == "headnode: VM 0 is pending: stop needs a VM that is running\n"
    r = headnode("vm", "show", "99")
    assert (r.returncode, r.stderr) == (2, "headnode: no VM 99\n")
    r = headnode("vm", "recover", "0")
    assert r.returncode == 2 and "one of the arguments --retry --delete is required" in r.stderr


def test_create_refuses_a_source_no_image_script_can_carry(headnode, tmp_path) -> None:
    template = tmp_path / "esc.tmpl"
    template.write_text('NAME = esc\nDISK = [ SOURCE = "/images/a\x1b[31mred.img" ]\n')
    r = headnode("vm", "create", str(template))
    assert r.returncode == 2 and "\x1b" not in r.stderr
    assert r.stderr == (
        f"{template}:2: DISK 0: SOURCE '/images/a\\x1b[31mred.img' cannot go in an image script: "
        "control character in path '/images/a\\x1b[31mred.img' of source 'frontend:/images/a\\x1b[31mred.img'\n"
    )
    assert json.loads(headnode("vm", "list", "--json").stdout) == []


def test_a_home_whose_path_holds_a_space_works_from_create_to_delete(tmp_path) -> None:
    """A home such as "/home/ann/my cluster": its VM directory used to be refused on first use ("--vm-dir must be an
    absolute path without white space"); its script lines quote the paths."""
    home = Home(tmp_path / "my cluster").ensure()
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}

    def headnode(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HEADNODE, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)

    r = headnode("host", "list")
    assert r.returncode == 0 and f"{home.vms}" in r.stdout, r.stderr
    assert headnode("vm", "create", TTYLINUX).stdout == "0\n"
    r = headnode("vm", "deploy", "0", "local")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "VM 0: running on local", r.stdout + r.stderr
    assert f'MKSWAP 16 "local:{home.vms}/0/images/disk.1"' in r.stdout
    assert sorted(p.name for p in (home.vms / "0" / "images").iterdir()) == ["disk.0", "disk.1", "disk.2"]
    for op in (("stop", "0"), ("resume", "0", "local"), ("shutdown", "0")):
        r = headnode("vm", *op)
        assert r.returncode == 0, r.stdout + r.stderr
    assert not (home.vms / "0" / "images").exists()


def test_deploy_of_several_vms_at_once_and_its_bad_input(headnode, home) -> None:
    """`vm deploy ID HOST ID HOST`: the service starts both together and the command follows both to their end;
    a bad batch (a VM id missing its host, an unknown VM or host, a VM twice) is refused whole, nothing started."""
    for _ in range(3):
        assert headnode("vm", "create", TTYLINUX).returncode == 0
    r = headnode("vm", "deploy", "0", "local", "1")
    assert (r.returncode, r.stderr) == (2, "headnode: vm deploy: '1' has no HOST: give a HOST after each ID\n")
    r = headnode("vm", "deploy", "0", "local", "7", "nowhere", "0", "local")
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "headnode: vm deploy: a VM is named twice: one deploy per VM"
    ]
    r = headnode("vm", "deploy", "0", "local", "7", "nowhere")
    assert r.returncode == 2 and "no VM 7" in r.stderr and "nowhere" in r.stderr, r.stderr
    assert [v["state"] for v in json.loads(headnode("vm", "list", "--json").stdout)] == ["pending"] * 3

    r = headnode("vm", "deploy", "0", "local", "1", "local", "--dry-run", "--json")
    assert r.returncode == 0 and [p["vm"] for p in json.loads(r.stdout)] == [0, 1]

    r = headnode("vm", "deploy", "0", "local", "1", "local")
    assert r.returncode == 0, r.stderr
    assert sorted(line for line in r.stdout.splitlines() if line.startswith("VM ")) == [
        "VM 0: running on local",
        "VM 1: running on local",
    ]
    assert "vm 0 script done" in r.stdout and "vm 1 script done" in r.stdout
    r = headnode("vm", "deploy", "1", "local", "2", "local", "--json")
    assert r.returncode == 1 and "headnode: VM 1:" in r.stderr  # VM 1 runs already: refused; VM 2 deployed
    ends = [json.loads(line) for line in r.stdout.splitlines() if '"vm_operation_finished"' in line]
    assert [(e["vm"]["id"], e["vm"]["state"]) for e in ends] == [(2, "running")]
