"""Exports for dnsmasq, /etc/ethers, /etc/hosts and Kea, from one network or all, checked by the real servers:
`dnsmasq --test` (which reads a hostsfile line exactly as a `dhcp-host=` value) and `kea-dhcp4 -t` / `kea-dhcp6 -t`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.home import Home
from engine.networks.exports import nic_host_name
from engine.networks.manager import Networks
from engine.transfers.executor import Executor
from engine.transfers.hosts import Hosts
from engine.vms.lifecycle import Vms


@pytest.fixture
def nets(home: Home, tmp_path: Path) -> Networks:
    nets = Networks(home)
    for i, text in enumerate(
        [
            "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nGATEWAY=10.0.0.254\n",
            "NAME=b\nBRIDGE=br1\nNETWORK_ADDRESS=10.1.0.0/24\nGLOBAL_PREFIX=2001:db8:1::\n",
            "NAME=f\nTYPE=FIXED\nBRIDGE=br2\nLEASES=[IP=10.2.0.5]\n",
        ]
    ):
        (tmp_path / f"{i}.net").write_text(text)
        nets.create_from_file(tmp_path / f"{i}.net")
    nets.lease("a", vm=7)
    nets.hold("a", "10.0.0.9", note="router")
    nets.lease("b", vm=8, host="web")
    nets.lease("f", vm=9)
    return nets


def dnsmasq_accepts(hostsfile: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """dnsmasq reads each --dhcp-hostsfile line as the value of a dhcp-host option: test them as such."""
    conf = tmp_path / "hosts.conf"
    conf.write_text("".join(f"dhcp-host={line}\n" for line in hostsfile.splitlines()))
    return subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True)


def kea_accepts(server: str, config: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{server}.json"
    path.write_text(json.dumps(config))
    program = shutil.which(server) or f"/usr/sbin/{server}"
    return subprocess.run([program, "-t", str(path)], capture_output=True, text=True)


def test_dnsmasq_conf_lines(nets: Networks) -> None:
    assert nets.export("dnsmasq", "a") == (
        "dhcp-host=02:00:0a:00:00:01,10.0.0.1,one-7\ndhcp-host=02:00:0a:00:00:09,10.0.0.9\n"
    )


def test_dnsmasq_hostsfile_is_what_dhcp_hostsfile_reads(nets: Networks, tmp_path: Path) -> None:
    text = nets.export("dnsmasq-hostsfile")
    assert text == (
        "02:00:0a:00:00:01,10.0.0.1,one-7\n"
        "02:00:0a:00:00:09,10.0.0.9\n"
        "02:00:0a:01:00:01,10.1.0.1,[2001:db8:1::aff:fe01:1],web\n"
        "02:00:0a:02:00:05,10.2.0.5,one-9\n"
    )
    checked = dnsmasq_accepts(text, tmp_path)
    assert checked.returncode == 0, checked.stderr
    # the `dnsmasq` export as a hostsfile is what failed in the field: dnsmasq says so
    wrong = dnsmasq_accepts(nets.export("dnsmasq"), tmp_path)
    assert wrong.returncode == 1 and "bad hex constant" in wrong.stderr


def test_ethers_of_all_networks(nets: Networks) -> None:
    assert nets.export("ethers") == (
        "02:00:0a:00:00:01 10.0.0.1\n02:00:0a:00:00:09 10.0.0.9\n"
        "02:00:0a:01:00:01 10.1.0.1\n02:00:0a:02:00:05 10.2.0.5\n"
    )


def test_hosts_leaves_out_held_addresses_and_carries_ipv6(nets: Networks) -> None:
    assert nets.export("hosts") == ("10.0.0.1\tone-7\n10.1.0.1\tweb\n2001:db8:1::aff:fe01:1\tweb\n10.2.0.5\tone-9\n")


def test_kea_subnets_each_with_their_reservations(nets: Networks, tmp_path: Path) -> None:
    export = json.loads(nets.export("kea"))
    assert export["subnet4"] == [
        {
            "id": 1,
            "subnet": "10.0.0.0/24",
            "option-data": [{"name": "routers", "data": "10.0.0.254"}],
            "reservations": [
                {"hw-address": "02:00:0a:00:00:01", "ip-address": "10.0.0.1", "hostname": "one-7"},
                {"hw-address": "02:00:0a:00:00:09", "ip-address": "10.0.0.9"},
            ],
        },
        {
            "id": 2,
            "subnet": "10.1.0.0/24",
            "reservations": [{"hw-address": "02:00:0a:01:00:01", "ip-address": "10.1.0.1", "hostname": "web"}],
        },
    ]
    assert export["reservations"] == [
        {"hw-address": "02:00:0a:02:00:05", "ip-address": "10.2.0.5", "hostname": "one-9"}
    ]
    assert export["subnet6"] == [
        {
            "id": 2,
            "subnet": "2001:db8:1::/64",
            "reservations": [
                {"hw-address": "02:00:0a:01:00:01", "ip-addresses": ["2001:db8:1::aff:fe01:1"], "hostname": "web"}
            ],
        }
    ]
    v4 = {"interfaces-config": {"interfaces": []}, "subnet4": export["subnet4"], "reservations": export["reservations"]}
    checked = kea_accepts("kea-dhcp4", {"Dhcp4": v4}, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    v6 = {"interfaces-config": {"interfaces": []}, "subnet6": export["subnet6"]}
    checked = kea_accepts("kea-dhcp6", {"Dhcp6": v6}, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_kea_refuses_the_old_flat_list_inside_a_subnet(nets: Networks, tmp_path: Path) -> None:
    """What the export used to be: every network's reservations in one list, which Kea rejects in a subnet."""
    export = json.loads(nets.export("kea"))
    flat = [r for subnet in export["subnet4"] for r in subnet["reservations"]]
    subnet = {"id": 1, "subnet": "10.0.0.0/24", "reservations": flat}
    checked = kea_accepts("kea-dhcp4", {"Dhcp4": {"subnet4": [subnet]}}, tmp_path)
    assert checked.returncode != 0


def test_vm_nics_get_names_of_their_own(home: Home, nets: Networks, tmp_path: Path) -> None:
    executor = Executor(home)
    vms = Vms(home, nets, Hosts(home), executor)
    template = tmp_path / "vm.tmpl"
    template.write_text(
        'NAME = "Web Server"\nNIC = [ NETWORK = a ]\nNIC = [ NETWORK = a ]\nNIC = [ NETWORK = b ]\n'
        'CONTEXT = [ HOSTNAME = "$NAME" ]\n'
    )
    first = vms.create(template)
    second = vms.create(template)
    names = {(x.vm, x.network, x.ip): x.host for x in nets.leases() if x.vm in (first.id, second.id)}
    executor.close()
    assert names == {
        (first.id, "a", "10.0.0.2"): "web-server",
        (first.id, "a", "10.0.0.3"): "web-server-eth1",
        (first.id, "b", "10.1.0.2"): "web-server-eth2",
        (second.id, "a", "10.0.0.4"): f"web-server-{second.id}",
        (second.id, "a", "10.0.0.5"): f"web-server-eth1-{second.id}",
        (second.id, "b", "10.1.0.3"): f"web-server-eth2-{second.id}",
    }
    checked = dnsmasq_accepts(nets.export("dnsmasq-hostsfile"), tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_host_names_are_dns_labels() -> None:
    assert nic_host_name("Web_Server 01", 0) == "web-server-01"
    assert nic_host_name("db", 3) == "db-eth3"
    assert nic_host_name("!!!", 0) is None
    assert len(nic_host_name("x" * 100, 1) or "") <= 63 - 8


def test_clashing_reservations_are_refused_before_anything_is_written(nets: Networks, tmp_path: Path) -> None:
    """A FIXED network may list a MAC another network on its bridge makes from an address: one server cannot
    give that MAC both addresses."""
    (tmp_path / "c.net").write_text(
        "NAME=c\nTYPE=FIXED\nBRIDGE=br0\nLEASES=[IP=10.9.0.1, MAC=02:00:0a:00:00:01]\nLEASES=[IP=10.9.0.2]\n"
    )
    nets.create_from_file(tmp_path / "c.net")
    nets.lease("c", vm=7, ip="10.9.0.1")
    nets.lease("c", vm=7, ip="10.9.0.2")
    with pytest.raises(InputError) as caught:
        nets.export("dnsmasq-hostsfile")
    assert [p.message for p in caught.value.problems] == [
        "network 'c' 10.9.0.1: MAC 02:00:0a:00:00:01 is also reserved by network 'a' 10.0.0.1 on bridge br0: "
        "a DHCP server cannot serve both (nothing was written)",
    ]
    assert nets.export("ethers", "c")  # each network alone is fine


def test_unknown_format(nets: Networks) -> None:
    with pytest.raises(InputError, match="unknown export format 'csv'"):
        nets.export("csv")


def test_the_cli_offers_every_format() -> None:
    """The CLI keeps its own copy of the names so that building its parser does not import the exports."""
    from engine.cli.vnet import EXPORT_FORMATS
    from engine.networks.exports import FORMATS

    assert EXPORT_FORMATS == FORMATS
