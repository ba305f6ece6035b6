"""The VM pool through the real command: hosts with VMs on them, done VMs, the list's filters and columns."""

from __future__ import annotations

import json
from pathlib import Path

from engine.home import shipped

TTYLINUX = str(shipped("templates") / "ttylinux.tmpl")


def test_a_host_with_vms_is_deleted_only_with_force_and_its_vms_can_still_end(headnode, tmp_path: Path) -> None:
    assert headnode("host", "create", "h2", "--driver", "shared", "--vm-dir", str(tmp_path / "vms")).returncode == 0
    assert headnode("vm", "create", TTYLINUX).stdout == "0\n"
    assert headnode("vm", "deploy", "0", "h2").returncode == 0
    r = headnode("host", "delete", "h2")
    assert (r.returncode, r.stderr) == (
        2,
        "headnode: host 'h2' has VMs on it (0): move or delete them first, or use --force\n",
    )
    assert "h2" in [h["name"] for h in json.loads(headnode("host", "list", "--json").stdout)]
    assert headnode("host", "delete", "h2", "--force").returncode == 0

    r = headnode("vm", "delete", "0")
    assert r.returncode == 2
    assert r.stderr == (
        "headnode: VM 0's host 'h2' no longer exists: 'vm delete --force' ends the VM and leaves its files there\n"
    )
    r = headnode("vm", "delete", "0", "--force")
    assert (r.returncode, r.stdout) == (0, "VM 0: done\n")
    assert json.loads(headnode("vnet", "show", "default", "--json").stdout)["leases"] == []


def test_done_vms_are_hidden_filtered_and_removed(headnode) -> None:
    for _ in range(3):
        headnode("vm", "create", TTYLINUX)
    assert headnode("vm", "deploy", "1", "local").returncode == 0
    assert headnode("vm", "delete", "0").stdout == "VM 0: done\n"

    def ids(*args: str) -> list[int]:
        return [vm["id"] for vm in json.loads(headnode("vm", "list", *args, "--json").stdout)]

    assert ids() == [1, 2]
    assert [line.split()[0] for line in headnode("vm", "list").stdout.splitlines()[1:]] == ["1", "2"]
    assert ids("--all") == [0, 1, 2]
    assert ids("--state", "done") == [0]
    assert ids("--state", "running", "--state", "pending") == [1, 2]
    r = headnode("vm", "list", "--state", "sleeping")
    assert r.returncode == 2 and "invalid choice: 'sleeping'" in r.stderr

    r = headnode("vm", "delete", "0")  # it said "VM 0 is done"
    assert (r.returncode, r.stdout) == (0, "VM 0: removed\n")
    assert ids("--all") == [1, 2]
    assert headnode("vm", "show", "0").stderr == "headnode: no VM 0\n"


def test_a_nic_without_an_address_adds_nothing_to_the_ips_column(headnode, tmp_path: Path) -> None:
    template = tmp_path / "two.tmpl"
    template.write_text(
        "NAME = two\nDISK = [ TYPE = swap, SIZE = 1 ]\nNIC = [ MODEL = virtio ]\nNIC = [ NETWORK = default ]\n"
    )
    assert headnode("vm", "create", str(template)).returncode == 0
    ip = json.loads(headnode("vm", "show", "0", "--json").stdout)["nics"][1]["IP"]
    (row,) = headnode("vm", "list").stdout.splitlines()[1:]
    assert row.endswith(f"pending        {ip}") and ", " not in row
