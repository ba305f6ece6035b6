"""`vm create` and `plan` read a template one way: every problem at once, located; no VM id used up by a failure."""

from __future__ import annotations

import json
from pathlib import Path

from engine.home import shipped

TTYLINUX = str(shipped("templates") / "ttylinux.tmpl")

BAD = """\
NAME = broken
DISK = [ SOURCE = nosuch.img ]
DISK = [ TYPE = swap ]
DISK = [ SOURCE = /images/a.img, CLONE = maybe ]
NIC = [ NETWORK = nowhere ]
CONTEXT = [ HOSTNAME = "$FOO", IP = "$NIC[IP]" ]
"""


def test_every_problem_of_a_template_at_once_and_no_id_used(headnode, home, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tmpl"
    bad.write_text(BAD)
    r = headnode("vm", "create", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"{bad}:2: DISK SOURCE 'nosuch.img': no image {home.images}/nosuch.img",
        f"{bad}:3: DISK 1: a swap disk needs SIZE (MiB)",
        f"{bad}:4: DISK 2: CLONE must be yes or no, not 'maybe'",
        f"{bad}:5: NIC 0: no network named 'nowhere' (networks: 'default')",
        f"{bad}:6: CONTEXT HOSTNAME: $FOO is not a single-valued attribute of the template",
    ]
    assert json.loads(headnode("vm", "list", "--json").stdout) == []
    assert headnode("vm", "create", TTYLINUX).stdout == "0\n"  # the failure took no id


def test_a_lease_that_fails_gives_its_id_back(headnode, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed.tmpl"
    fixed.write_text(
        "DISK = [ TYPE = swap, SIZE = 1 ]\nNIC = [ NETWORK = default ]\n"
        "NIC = [ NETWORK = default, IP = 192.168.122.200 ]\n"
    )
    assert headnode("vm", "create", str(fixed)).stdout == "0\n"
    r = headnode("vm", "create", str(fixed))
    assert r.returncode == 1
    assert r.stderr.startswith(f"headnode: {fixed}:3: NIC 1: 192.168.122.200 in 'default' is taken")
    leases = json.loads(headnode("vnet", "show", "default", "--json").stdout)["leases"]
    assert [x["vm"] for x in leases] == [0, 0]  # the second VM's first lease was given back
    assert headnode("vm", "create", TTYLINUX).stdout == "1\n"


def test_a_template_that_is_not_a_vms_is_refused(headnode, tmp_path: Path) -> None:
    net = tmp_path / "lan.net"
    net.write_text("NAME = lan\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\n")
    r = headnode("vm", "create", str(net))
    assert (r.returncode, r.stderr) == (
        2,
        f"{net}:3: BRIDGE belongs to a virtual network template, not a VM's: use 'headnode vnet create'\n",
    )
    empty = tmp_path / "name.tmpl"
    empty.write_text("NAME = nothing\n")
    r = headnode("vm", "create", str(empty))
    assert r.returncode == 2 and r.stderr.startswith(f"{empty}: not a VM template: it has none of DISK, NIC")
    assert json.loads(headnode("vm", "list", "--json").stdout) == []


def test_plan_reads_a_template_as_vm_create_does(headnode, home) -> None:
    args = ["--vm", "7", "--host", "h", "--vm-dir", "/srv/vms", "--write-context"]
    r = headnode("plan", TTYLINUX, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].endswith(f":{home.images}/ttylinux.img h:/srv/vms/7/images/disk.0")
    assert "plan leases no addresses, so context.sh keeps $NIC[IP], $NIC[MAC] as written" in r.stderr
    context = (home.vms / "7" / "context.sh").read_text()
    assert 'HOSTNAME="ttylinux-7"' in context  # it was "$NAME-$VMID", written as is
    r = headnode("plan", TTYLINUX, *args[:-1], "--json")
    assert 'HOSTNAME="ttylinux-7"' in json.loads(r.stdout)["context_sh"]
