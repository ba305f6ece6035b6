"""`headnode vnet` through the real command: verbs, JSON shapes, tables, exit statuses and error lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LAN = 'NAME = "Private LAN"\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = C\n'
TINY = "NAME = tiny\nBRIDGE = br1\nNETWORK_ADDRESS = 10.5.0.0\nNETWORK_SIZE = 2\n"


@pytest.fixture(autouse=True)
def without_the_default_network(headnode) -> None:
    """The first command made the embedded default; these tests want networks of their own only (and check,
    on the way, that a deleted default stays deleted)."""
    assert headnode("vnet", "delete", "default").returncode == 0
    assert json.loads(headnode("vnet", "list", "--json").stdout) == []


@pytest.fixture
def created(headnode, tmp_path: Path):
    for name, text in (("lan.net", LAN), ("tiny.net", TINY)):
        (tmp_path / name).write_text(text)
        r = headnode("vnet", "create", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
    return headnode


def test_create_prints_what_it_made(headnode, tmp_path: Path) -> None:
    (tmp_path / "lan.net").write_text(LAN)
    r = headnode("vnet", "create", str(tmp_path / "lan.net"))
    assert (r.returncode, r.stdout) == (0, "created network 'Private LAN' (id 1): 254 addresses, 10.0.0.1-10.0.0.254\n")


def test_bad_template_exits_2_with_file_and_line(headnode, tmp_path: Path) -> None:
    path = tmp_path / "bad.net"
    path.write_text("NAME = x\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.7\n")
    r = headnode("vnet", "create", str(path))
    assert r.returncode == 2
    assert r.stderr == f"{path}:3: NETWORK_ADDRESS 10.0.0.7 is not the base address of its /24 network: use 10.0.0.0\n"
    assert json.loads(headnode("vnet", "list", "--json").stdout) == []


def test_create_warns_on_stderr_of_a_universal_mac_prefix(headnode, tmp_path: Path) -> None:
    path = tmp_path / "vendor.net"
    path.write_text("NAME = v\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\nMAC_PREFIX = 00:16\n")
    r = headnode("vnet", "create", str(path), "--json")
    warning = f"{path}:4: MAC_PREFIX 00:16 is not locally administered (bit 0x02 of its first byte is clear)"
    assert r.returncode == 0
    assert r.stderr.startswith(f"warning: {warning}") and r.stderr.count("\n") == 1
    assert json.loads(r.stdout)["warnings"][0].startswith(warning)
    path.write_text("NAME = m\nBRIDGE = br1\nNETWORK_ADDRESS = 10.0.0.0/24\nMAC_PREFIX = 01:00\n")
    r = headnode("vnet", "create", str(path))
    assert (r.returncode, r.stdout) == (2, "")
    assert "MAC_PREFIX 01:00 is a multicast prefix" in r.stderr


def test_list_json_and_table(created) -> None:
    created("vnet", "lease", "tiny", "--vm", "3")
    r = created("vnet", "list", "--json")
    assert json.loads(r.stdout) == [
        {"name": "Private LAN", "type": "RANGED", "bridge": "br0", "size": 254, "used": 0, "free": 254, "damage": []},
        {"name": "tiny", "type": "RANGED", "bridge": "br1", "size": 2, "used": 1, "free": 1, "damage": []},
    ]
    assert created("vnet", "list").stdout == (
        "ID  NAME         TYPE    BRIDGE  SIZE  USED  FREE\n"
        " 1  Private LAN  RANGED  br0      254     0   254\n"
        " 2  tiny         RANGED  br1        2     1     1\n"
    )


def test_lease_json_shapes_and_full_network(created) -> None:
    r = created("vnet", "lease", "Private LAN", "--vm", "4", "--note", "web", "--json")
    assert json.loads(r.stdout) == {
        "network": "Private LAN",
        "ip": "10.0.0.1",
        "mac": "02:00:0a:00:00:01",
        "ip6_global": None,
        "ip6_ula": None,
        "ip6_link": "fe80::aff:fe00:1",
        "vm": 4,
        "state": "used",
        "note": "web",
        "host": "one-4",
    }
    r = created("vnet", "lease", "tiny", "--count", "2", "--json")
    assert [(x["ip"], x["vm"], x["state"]) for x in json.loads(r.stdout)] == [
        ("10.5.0.1", None, "hold"),
        ("10.5.0.2", None, "hold"),
    ]
    r = created("vnet", "lease", "tiny", "--vm", "1")
    assert (r.returncode, r.stdout, r.stderr) == (
        1,
        "",
        "headnode: network 'tiny' is full: all 2 addresses are leased\n",
    )


def test_lease_given_ip_table_and_refusals(created) -> None:
    r = created("vnet", "lease", "Private LAN", "--vm", "2", "--ip", "10.0.0.20")
    assert r.stdout == "IP         MAC                VM  STATE  NOTE\n10.0.0.20  02:00:0a:00:00:14   2  used\n"
    r = created("vnet", "lease", "Private LAN", "--ip", "10.0.0.255")
    assert (r.returncode, r.stderr) == (2, "headnode: 10.0.0.255 is the broadcast address of 'Private LAN'\n")
    r = created("vnet", "lease", "Private LAN", "--ip", "10.0.0.256")
    assert r.returncode == 2
    assert "octet 256 is over 255" in r.stderr
    r = created("vnet", "lease", "nope")
    assert (r.returncode, r.stderr) == (2, "headnode: no network named 'nope' (networks: 'Private LAN', 'tiny')\n")


def test_hold_release_and_force(created) -> None:
    r = created("vnet", "hold", "Private LAN", "10.0.0.5", "--json")
    assert json.loads(r.stdout)["state"] == "hold"
    created("vnet", "lease", "Private LAN", "--vm", "9", "--ip", "10.0.0.6")
    r = created("vnet", "release", "Private LAN", "10.0.0.6")
    assert (r.returncode, r.stderr) == (1, "headnode: 10.0.0.6 in 'Private LAN' is leased to VM 9: use --force\n")
    assert created("vnet", "release", "Private LAN", "10.0.0.6", "--force").stdout == (
        "released 10.0.0.6 (02:00:0a:00:00:06) in 'Private LAN'\n"
    )
    assert created("vnet", "release", "Private LAN", "10.0.0.5").returncode == 0
    assert json.loads(created("vnet", "show", "Private LAN", "--json").stdout)["leases"] == []


def test_show(created) -> None:
    created("vnet", "lease", "Private LAN", "--vm", "4")
    shown = json.loads(created("vnet", "show", "Private LAN", "--json").stdout)
    assert shown["name"] == "Private LAN"
    assert (shown["size"], shown["used"], shown["free"], shown["network_address"]) == (254, 1, 253, "10.0.0.0/24")
    assert shown["attributes"] == {
        "NAME": "Private LAN",
        "TYPE": "RANGED",
        "BRIDGE": "br0",
        "NETWORK_ADDRESS": "10.0.0.0",
        "NETWORK_SIZE": "C",
    }
    assert shown["leases"] == [
        {
            "network": "Private LAN",
            "ip": "10.0.0.1",
            "mac": "02:00:0a:00:00:01",
            "ip6_global": None,
            "ip6_ula": None,
            "ip6_link": "fe80::aff:fe00:1",
            "vm": 4,
            "state": "used",
            "note": "",
            "host": "one-4",
        }
    ]
    text = created("vnet", "show", "Private LAN").stdout
    assert text.startswith("VIRTUAL NETWORK 1 INFORMATION\nID              : 1\nNAME            : Private LAN\n")
    assert "\nNETWORK_SIZE = C\n" in text
    assert text.endswith(
        "LEASES\nIP        MAC                VM  STATE  NOTE\n10.0.0.1  02:00:0a:00:00:01   4  used\n"
    )


def test_ipv6_is_shown_wherever_the_lease_is(headnode, tmp_path: Path) -> None:
    path = tmp_path / "v6.net"
    path.write_text("NAME = v6\nBRIDGE = br6\nNETWORK_ADDRESS = 10.6.0.0/24\nGLOBAL_PREFIX = 2001:db8:6::\n")
    assert headnode("vnet", "create", str(path)).returncode == 0
    lease = json.loads(headnode("vnet", "lease", "v6", "--vm", "3", "--json").stdout)
    assert (lease["ip"], lease["ip6_global"], lease["ip6_ula"], lease["ip6_link"]) == (
        "10.6.0.1",
        "2001:db8:6::aff:fe06:1",
        None,
        "fe80::aff:fe06:1",
    )
    assert headnode("vnet", "hold", "v6", "10.6.0.9").stdout == (
        "IP        MAC                IP6_GLOBAL              IP6_LINK          VM  STATE  NOTE\n"
        "10.6.0.9  02:00:0a:06:00:09  2001:db8:6::aff:fe06:9  fe80::aff:fe06:9   -  hold\n"
    )
    shown = headnode("vnet", "show", "v6").stdout
    assert "10.6.0.1  02:00:0a:06:00:01  2001:db8:6::aff:fe06:1  fe80::aff:fe06:1   3  used\n" in shown
    assert json.loads(headnode("vnet", "show", "v6", "--json").stdout)["leases"][0]["ip6_global"] == (
        "2001:db8:6::aff:fe06:1"
    )
    exported = {fmt: headnode("vnet", "export", "v6", "--format", fmt).stdout for fmt in ("dnsmasq", "hosts", "kea")}
    assert exported["dnsmasq"] == (
        "dhcp-host=02:00:0a:06:00:01,10.6.0.1,[2001:db8:6::aff:fe06:1],one-3\n"
        "dhcp-host=02:00:0a:06:00:09,10.6.0.9,[2001:db8:6::aff:fe06:9]\n"
    )
    assert exported["hosts"] == "10.6.0.1\tone-3\n2001:db8:6::aff:fe06:1\tone-3\n"
    assert json.loads(exported["kea"])["subnet6"][0]["reservations"] == [
        {"hw-address": "02:00:0a:06:00:01", "ip-addresses": ["2001:db8:6::aff:fe06:1"], "hostname": "one-3"},
        {"hw-address": "02:00:0a:06:00:09", "ip-addresses": ["2001:db8:6::aff:fe06:9"]},
    ]


def test_delete(created) -> None:
    created("vnet", "lease", "tiny", "--vm", "1")
    r = created("vnet", "delete", "tiny")
    assert r.returncode == 1
    assert "release them first, or delete with --force" in r.stderr
    r = created("vnet", "delete", "tiny", "--force", "--json")
    assert json.loads(r.stdout) == {"name": "tiny", "deleted": True}
    assert [n["name"] for n in json.loads(created("vnet", "list", "--json").stdout)] == ["Private LAN"]


def test_export(created) -> None:
    created("vnet", "lease", "Private LAN", "--vm", "4")
    created("vnet", "lease", "tiny", "--vm", "5")
    assert (
        created("vnet", "export", "tiny", "--format", "dnsmasq").stdout
        == "dhcp-host=02:00:0a:05:00:01,10.5.0.1,one-5\n"
    )
    assert created("vnet", "export", "--format", "hosts").stdout == "10.0.0.1\tone-4\n10.5.0.1\tone-5\n"
    r = created("vnet", "export", "--format", "csv")
    assert r.returncode == 2


def test_doctor_exit_status(created) -> None:
    r = created("vnet", "doctor")
    assert (r.returncode, r.stdout) == (0, "no problems found\n")
    created("vnet", "lease", "tiny", "--vm", "5")  # no VM 5 exists
    r = created("vnet", "doctor")
    assert (r.returncode, r.stdout) == (1, "tiny: orphan: 10.5.0.1 is leased to VM 5, which no longer exists\n")
    r = created("vnet", "doctor", "--fix", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)[0]["fixed"] is True
    assert created("vnet", "doctor").returncode == 0


def test_mac2ip_and_ip2mac_print_the_address_alone(headnode, home) -> None:
    assert headnode("vnet", "mac2ip", "02:00:0A:00:00:01").stdout == "10.0.0.1\n"
    assert headnode("vnet", "ip2mac", "10.0.0.1").stdout == "02:00:0a:00:00:01\n"
    assert headnode("vnet", "ip2mac", "192.168.0.254", "--prefix", "00:03").stdout == "00:03:c0:a8:00:fe\n"
    r = headnode("vnet", "mac2ip", "02:00:0a:00:00")
    assert (r.returncode, r.stdout) == (2, "")
    assert "is not a MAC address" in r.stderr
    r = headnode("vnet", "ip2mac", "10.0.0.1", "--prefix", "2:00")
    assert r.returncode == 2
    home.config_path.write_text('MAC_PREFIX = "0a:ff"\n')
    assert headnode("vnet", "ip2mac", "1.2.3.4").stdout == "0a:ff:01:02:03:04\n"


@pytest.mark.parametrize("count", ["٢", "²", "-1"])
def test_a_count_that_is_not_ascii_digits_is_a_usage_error(created, count: str) -> None:
    r = created("vnet", "lease", "tiny", "--count", count)
    assert r.returncode == 2 and f"argument --count: {count!r} is not a whole number" in r.stderr
    assert json.loads(created("vnet", "show", "tiny", "--json").stdout)["leases"] == []


def test_an_emptied_database_is_never_reinitialised_over(created, home) -> None:
    # A 0-byte headnode.db came back as a fresh home with only the default network: networks, hosts and VMs gone,
    # and a network created again handed out addresses the old lease files still held.
    home.db_path.write_bytes(b"")
    for command in (("vnet", "list"), ("vnet", "create", "/nonexistent.net"), ("vm", "list")):
        r = created(*command)
        assert r.returncode == 2 and "internal error" not in r.stderr
        assert r.stderr.startswith(f"{home.db_path}: database is damaged: it is empty (0 bytes)")
        assert f"cp -p {home.db_path}.bak {home.db_path}" in r.stderr
    assert home.db_path.read_bytes() == b""
    (home.root / "headnode.db.bak").replace(home.db_path)
    listed = json.loads(created("vnet", "list", "--json").stdout)
    assert [n["name"] for n in listed] == ["Private LAN"]  # the backup is one change behind: before tiny's create


def damage_a_journal_line(home, name: str) -> tuple[Path, int]:
    """Garbage in the second line of network `name`'s lease journal (its first lease after the create's); the
    journal's path and the damaged line's length."""
    from engine.networks.manager import Networks

    nets = Networks(home)
    journal = nets.book(name).file.journal_path
    nets.close()
    lines = journal.read_bytes().split(b"\n")
    lines[1] = b"\x00garbage" + b"x" * (len(lines[1]) - 8)
    journal.write_bytes(b"\n".join(lines))
    return journal, len(lines[1])


def test_list_and_show_say_which_lease_file_is_damaged_and_what_was_lost(created, home) -> None:
    """The doctor reported a damaged journal line; `vnet list` and `vnet show` showed the short counts without a
    word."""
    for _ in range(3):
        assert created("vnet", "lease", "Private LAN").returncode == 0
    journal, length = damage_a_journal_line(home, "Private LAN")
    said = (
        f"warning: network Private LAN: {journal}:2: journal line does not parse ({length} bytes): the lease "
        "changes it held are lost, the other lines kept; it takes no new leases until repaired (`headnode vnet "
        "doctor --fix` keeps what loaded and moves the damaged files aside)"
    )
    for args in (("vnet", "list"), ("vnet", "show", "Private LAN")):
        r = created(*args)
        assert r.returncode == 0 and r.stderr.splitlines() == [said], r.stderr
        assert "tiny" not in r.stderr  # one damaged network says nothing of the others
    listed = {n["name"]: n for n in json.loads(created("vnet", "list", "--json").stdout)}
    assert listed["Private LAN"]["used"] == 2 and listed["Private LAN"]["damage"] == [
        said.split("network Private LAN: ")[1].split(";")[0]
    ]
    assert listed["tiny"]["damage"] == []
    shown = json.loads(created("vnet", "show", "Private LAN", "--json").stdout)
    assert shown["damage"] == listed["Private LAN"]["damage"]
    assert created("vnet", "doctor", "--fix").returncode == 0
    r = created("vnet", "list")
    assert r.returncode == 0 and r.stderr == ""
