"""Network templates: sizes, ranges, fixed leases, and every error naming file and line, with nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InputError, OperationError
from engine.home import Home
from engine.networks.manager import Networks


@pytest.fixture
def nets(home: Home) -> Networks:
    return Networks(home)


def create(nets: Networks, tmp_path: Path, text: str, name: str = "net.tmpl"):
    path = tmp_path / name
    path.write_text(text)
    return nets.create_from_file(path)


def error_lines(nets: Networks, tmp_path: Path, text: str) -> list[str]:
    """The problems a bad template gives, checking that nothing was stored."""
    before = nets.home.db_path.read_bytes() if nets.home.db_path.exists() else None
    with pytest.raises(InputError) as caught:
        create(nets, tmp_path, text, "bad.tmpl")
    after = nets.home.db_path.read_bytes() if nets.home.db_path.exists() else None
    assert before == after
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("size", "first", "last", "count"),
    [
        ("C", "10.0.0.1", "10.0.0.254", 254),
        ("c", "10.0.0.1", "10.0.0.254", 254),
        ("B", "10.0.0.1", "10.0.255.254", 65534),
        ("b", "10.0.0.1", "10.0.255.254", 65534),
        ("250", "10.0.0.1", "10.0.0.250", 250),
        ("10", "10.0.0.1", "10.0.0.10", 10),
    ],
)
def test_network_size(nets: Networks, tmp_path: Path, size: str, first: str, last: str, count: int) -> None:
    network = create(nets, tmp_path, f"NAME = n\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = {size}\n")
    assert network.size == count
    assert network.range_text == f"{first}-{last}"
    assert network.mac_prefix == "02:00"  # the home's configuration


def test_size_two_is_a_slash_30(nets: Networks, tmp_path: Path) -> None:
    network = create(nets, tmp_path, "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=192.168.1.76\nNETWORK_SIZE=2\n")
    assert (network.cidr, network.range_text) == ("192.168.1.76/30", "192.168.1.77-192.168.1.78")


def test_cidr_and_ip_start_end(nets: Networks, tmp_path: Path) -> None:
    text = "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/28\nIP_START=10.0.0.3\nIP_END=10.0.0.9\nMAC_PREFIX=0A:FF\n"
    network = create(nets, tmp_path, text)
    assert (network.cidr, network.range_text, network.size) == ("10.0.0.0/28", "10.0.0.3-10.0.0.9", 7)
    assert network.mac_prefix == "0a:ff"


def test_mac_prefix_default_comes_from_the_configuration(home: Home, tmp_path: Path) -> None:
    home.config_path.write_text('MAC_PREFIX = "00:03"\n')
    nets = Networks(Home(home.root))
    network = create(nets, tmp_path, "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0\n")
    assert network.mac_for(network.first) == "00:03:0a:00:00:01"


def test_fixed_network_with_and_without_mac(nets: Networks, tmp_path: Path) -> None:
    text = (
        'NAME = "Public LAN"\nTYPE = FIXED\nBRIDGE = eth1\n'
        "LEASES = [ IP = 130.10.0.4 ]\nLEASES = [IP=130.10.0.1, MAC=50:20:20:20:20:20]\n"
    )
    network = create(nets, tmp_path, text)
    assert network.fixed == ((0x820A0001, "50:20:20:20:20:20"), (0x820A0004, "02:00:82:0a:00:04"))
    assert network.size == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.1.2.3\nNETWORK_SIZE=C\n",
            "bad.tmpl:3: NETWORK_ADDRESS 10.1.2.3 is not the base address of its /24 network: use 10.1.2.0",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.8/28\n",
            "bad.tmpl:3: NETWORK_ADDRESS 10.0.0.8 is not the base address of its /28 network: use 10.0.0.0",
        ),
        ("NAME=n\nBRIDGE=br0\n\nTYPE=ROUTED\n", "bad.tmpl:4: unknown TYPE 'ROUTED': use RANGED or FIXED"),
        (
            "NAME=n\nBRIDGE=br0\nTYPE=RANGED\n",
            "bad.tmpl: NETWORK_ADDRESS is missing: a RANGED network needs one (e.g. 10.0.0.0/24)",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.300\n",
            "bad.tmpl:3: NETWORK_ADDRESS: '10.0.0.300' is not an IPv4 address: octet 300 is over 255",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0\nMAC_PREFIX=02:0\n",
            "bad.tmpl:4: MAC_PREFIX: '02:0' is not a MAC prefix (two hex bytes, e.g. 02:00)",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0\nNETWORK_SIZE=D\n",
            "bad.tmpl:4: NETWORK_SIZE 'D' is not A, B, C or a host count from 1 to 16777214",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nIP_START=10.0.1.5\n",
            "bad.tmpl:4: IP_START 10.0.1.5 is outside the network's range 10.0.0.1-10.0.0.254",
        ),
        (
            "NAME=n\nTYPE=FIXED\nBRIDGE=br0\nLEASES=[IP=1.2.3.4]\nLEASES=[IP=1.2.3.4, MAC=02:00:00:00:00:09]\n",
            "bad.tmpl:5: duplicate IP 1.2.3.4 (also on line 4)",
        ),
        (
            "NAME=n\nTYPE=FIXED\nBRIDGE=br0\nLEASES=[IP=1.2.3.4,MAC=02:00:00:00:00:09]\n"
            "LEASES=[IP=1.2.3.5, MAC=02:00:00:00:00:09]\n",
            "bad.tmpl:5: duplicate MAC 02:00:00:00:00:09 (also on line 4)",
        ),
        (
            "NAME=n\nTYPE=FIXED\nBRIDGE=br0\nLEASES=[IP=1.2.3.4, MAC=02:00:00:00:09]\n",
            "bad.tmpl:4: LEASES MAC: '02:00:00:00:09' is not a MAC address (six pairs of hex digits "
            "separated by colons)",
        ),
        (
            "NAME=n\nTYPE=fixed\nBRIDGE=br0\n",
            "bad.tmpl: a FIXED network needs at least one LEASES = [ IP = ..., MAC = ... ]",
        ),
        ("BRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0\n", "bad.tmpl: NAME is missing: every network needs a name"),
        (
            "NAME=n\nNETWORK_ADDRESS=10.0.0.0\nPOLICY=random\n",
            "bad.tmpl:3: unknown POLICY 'random': use next-fit or first-free",
        ),
    ],
)
def test_bad_template(nets: Networks, tmp_path: Path, text: str, expected: str) -> None:
    lines = error_lines(nets, tmp_path, text)
    assert any(line.endswith(expected) and line.startswith(str(tmp_path)) for line in lines), lines
    assert nets.list() == []


def test_every_problem_is_reported_at_once(nets: Networks, tmp_path: Path) -> None:
    lines = error_lines(nets, tmp_path, "NAME=n\nTYPE=WEIRD\nMAC_PREFIX=xx\n")
    assert len(lines) == 3  # no bridge, TYPE, MAC_PREFIX
    assert [line.split(":")[1] for line in lines] == [" BRIDGE is missing", "2", "3"]


@pytest.mark.parametrize("prefix", ["01:00", "03:00", "FF:FF", "33:33"])
def test_a_multicast_mac_prefix_is_refused(nets: Networks, tmp_path: Path, prefix: str) -> None:
    lines = error_lines(nets, tmp_path, f"NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nMAC_PREFIX={prefix}\n")
    assert lines == [
        f"{tmp_path}/bad.tmpl:4: MAC_PREFIX {prefix} is a multicast prefix (bit 0x01 of its first byte is set): "
        "every lease's MAC would be a multicast address; use a prefix such as 02:00"
    ]
    fixed = "NAME=f\nTYPE=FIXED\nBRIDGE=br0\nLEASES=[IP=10.0.0.1, MAC=01:00:5e:00:00:01]\n"
    assert error_lines(nets, tmp_path, fixed) == [
        f"{tmp_path}/bad.tmpl:4: LEASES MAC 01:00:5e:00:00:01 is a multicast address (bit 0x01 of its first byte "
        "is set)"
    ]


def test_a_configured_multicast_mac_prefix_is_refused(home: Home, tmp_path: Path) -> None:
    home.config_path.write_text('MAC_PREFIX = "01:00"\n')
    lines = error_lines(Networks(Home(home.root)), tmp_path, "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path}/bad.tmpl: the configuration's MAC_PREFIX 01:00 is a multicast prefix (")


def test_a_universal_mac_prefix_is_created_with_a_warning(nets: Networks, tmp_path: Path) -> None:
    network = create(nets, tmp_path, "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nMAC_PREFIX=00:50\n")
    assert [str(w) for w in network.warnings] == [
        f"{tmp_path}/net.tmpl:4: MAC_PREFIX 00:50 is not locally administered (bit 0x02 of its first byte is "
        "clear): its MACs may clash with a vendor's hardware; a prefix such as 02:00 cannot"
    ]
    assert nets.lease("n", vm=1).mac == "00:50:0a:00:00:01"
    local = create(nets, tmp_path, "NAME=m\nBRIDGE=br1\nNETWORK_ADDRESS=10.0.0.0/24\nMAC_PREFIX=0a:00\n")
    assert local.warnings == ()


def test_a_gateway_at_the_start_of_the_range_narrows_it(nets: Networks, tmp_path: Path) -> None:
    network = create(nets, tmp_path, "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nGATEWAY=10.0.0.1\n")
    assert (network.range_text, network.size) == ("10.0.0.2-10.0.0.254", 253)
    assert nets.lease("n", vm=1).ip == "10.0.0.2"
    top = create(nets, tmp_path, "NAME=t\nBRIDGE=br1\nNETWORK_ADDRESS=10.0.0.0/24\nGATEWAY=10.0.0.254\n")
    assert (top.range_text, top.size) == ("10.0.0.1-10.0.0.253", 253)


def test_a_gateway_inside_the_range_is_never_leased(nets: Networks, tmp_path: Path) -> None:
    network = create(nets, tmp_path, "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/29\nGATEWAY=10.0.0.3\n")
    assert (network.range_text, network.size, nets.usage("n").free) == ("10.0.0.1-10.0.0.6", 5, 5)
    with pytest.raises(InputError, match=r"10\.0\.0\.3 is the gateway of 'n': a gateway is never leased"):
        nets.lease("n", vm=1, ip="10.0.0.3")
    with pytest.raises(InputError, match="is the gateway"):
        nets.hold("n", "10.0.0.3")
    assert [x.ip for x in nets.lease_many("n", 5, vm=1)] == [f"10.0.0.{i}" for i in (1, 2, 4, 5, 6)]
    with pytest.raises(OperationError, match="full: all 5 addresses are leased"):
        nets.lease("n", vm=2)
    for policy in ("first-free", "next-fit"):
        create(
            nets,
            tmp_path,
            f"NAME={policy}\nBRIDGE={policy}\nNETWORK_ADDRESS=10.0.0.0/29\nGATEWAY=10.0.0.2\nPOLICY={policy}\n",
        )
        assert [nets.lease(policy, vm=1).ip for _ in range(5)] == [f"10.0.0.{i}" for i in (1, 3, 4, 5, 6)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nGATEWAY=10.0.1.1\n",
            "bad.tmpl:4: GATEWAY 10.0.1.1 is not a host of the network 10.0.0.0/24 (10.0.0.1-10.0.0.254)",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nGATEWAY=10.0.0.255\n",
            "bad.tmpl:4: GATEWAY 10.0.0.255 is not a host of the network 10.0.0.0/24 (10.0.0.1-10.0.0.254)",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nGATEWAY=10.0.0.1.1\n",
            "bad.tmpl:4: GATEWAY: '10.0.0.1.1' is not an IPv4 address (four numbers 0-255 separated by dots)",
        ),
        (
            "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0\nNETWORK_SIZE=1\nGATEWAY=10.0.0.1\n",
            "bad.tmpl:5: the range holds only the GATEWAY 10.0.0.1: nothing to lease",
        ),
        (
            "NAME=n\nTYPE=FIXED\nBRIDGE=br0\nGATEWAY=10.0.0.1\nLEASES=[IP=10.0.0.1]\n",
            "bad.tmpl:5: LEASES IP 10.0.0.1 is the GATEWAY: a gateway is never leased",
        ),
    ],
)
def test_bad_gateway(nets: Networks, tmp_path: Path, text: str, expected: str) -> None:
    assert error_lines(nets, tmp_path, text) == [f"{tmp_path}/{expected}"]


def test_an_unknown_type_still_reports_the_other_problems(nets: Networks, tmp_path: Path) -> None:
    # The attributes of either type are checked when TYPE is unknown: an octet of 300 went unreported.
    text = "NAME=n\nTYPE=ROUTED\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.300\nLEASES=[IP=1.2.3.4, MAC=zz]\n"
    lines = error_lines(nets, tmp_path, text)
    assert [line.split(":", 2)[1:] for line in lines] == [
        ["2", " unknown TYPE 'ROUTED': use RANGED or FIXED"],
        ["4", " NETWORK_ADDRESS: '10.0.0.300' is not an IPv4 address: octet 300 is over 255"],
        ["5", " LEASES MAC: 'zz' is not a MAC address (six pairs of hex digits separated by colons)"],
    ]


def test_overlap_on_the_same_bridge_is_refused(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    lines = error_lines(nets, tmp_path, "NAME=b\nBRIDGE=br0\n\nNETWORK_ADDRESS=10.0.0.0/25\n")
    assert lines == [
        f"{tmp_path}/bad.tmpl:4: 10.0.0.1-10.0.0.126 overlaps network 'a' (10.0.0.1-10.0.0.254) on bridge br0 "
        "at 10.0.0.1"
    ]
    fixed = "NAME=f\nTYPE=FIXED\nBRIDGE=br0\nLEASES=[IP=192.168.0.1]\nLEASES=[IP=10.0.0.200]\n"
    assert "overlaps network 'a'" in error_lines(nets, tmp_path, fixed)[0]
    assert [n.name for n in nets.list()] == ["a"]


def test_same_addresses_on_another_bridge_or_disjoint_ranges_are_fine(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nIP_END=10.0.0.99\n")
    create(nets, tmp_path, "NAME=b\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nIP_START=10.0.0.100\n")
    create(nets, tmp_path, "NAME=c\nBRIDGE=br1\nNETWORK_ADDRESS=10.0.0.0/24\n")
    assert [(n.id, n.name) for n in nets.list()] == [(0, "a"), (1, "b"), (2, "c")]


def test_duplicate_name_is_refused(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    lines = error_lines(nets, tmp_path, "\nNAME=a\nBRIDGE=br9\nNETWORK_ADDRESS=10.9.0.0/24\n")
    assert lines == [f"{tmp_path}/bad.tmpl:2: a network named 'a' already exists"]


def test_delete_refused_with_leases_unless_forced(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    nets.lease("a", vm=1)
    nets.hold("a", "10.0.0.9", note="router")
    with pytest.raises(OperationError, match="has 1 leases in use and 1 held"):
        nets.delete("a")
    assert len(nets.leases("a")) == 2
    nets.delete("a", force=True)
    assert nets.list() == []
    # The name is free again and the new network starts with no leases and a new id.
    network = create(nets, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    assert network.id == 1
    assert nets.leases("a") == []


def test_delete_without_leases_needs_no_force(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    nets.lease("a", vm=1)
    nets.release("a", "10.0.0.1", force=True)
    nets.delete("a")
    assert nets.list() == []


def test_a_network_deleted_by_another_process_refuses_leases(home: Home, tmp_path: Path) -> None:
    first, second = Networks(home), Networks(home)
    create(first, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    book = second.book("a")  # resolved before the other process deletes the network
    first.delete("a")
    with pytest.raises(OperationError, match="was deleted"):
        book.lease(vm=1)
    assert not book.file.journal_path.exists()


def test_ipv6_prefixes_give_eui64_addresses(nets: Networks, tmp_path: Path) -> None:
    text = "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nGLOBAL_PREFIX=2001:db8::\nULA_PREFIX=fd00:1::/64\n"
    network = create(nets, tmp_path, text)
    lease = nets.lease("n", vm=1)
    assert network.ipv6_addresses(lease.mac) == {
        "GLOBAL": "2001:db8::aff:fe00:1",
        "ULA": "fd00:1::aff:fe00:1",
        "LINK": "fe80::aff:fe00:1",
    }
    assert (lease.ip6_global, lease.ip6_ula, lease.ip6_link) == (
        "2001:db8::aff:fe00:1",
        "fd00:1::aff:fe00:1",
        "fe80::aff:fe00:1",
    )
    assert [x.ip6_global for x in nets.leases("n")] == ["2001:db8::aff:fe00:1"]
    assert (
        "bad.tmpl:4: GLOBAL_PREFIX: '2001:db8::1' is not an IPv6 /64 prefix"
        in error_lines(nets, tmp_path, "NAME=m\nBRIDGE=br1\nNETWORK_ADDRESS=10.0.0.0/24\nGLOBAL_PREFIX=2001:db8::1\n")[
            0
        ]
    )


def test_a_new_network_never_inherits_old_lease_files(home: Home, tmp_path: Path) -> None:
    nets = Networks(home)
    create(nets, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    nets.lease("a", vm=1)
    home.db_path.unlink()  # the definitions are lost, the lease files stay
    fresh = Networks(home)
    create(fresh, tmp_path, "NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    assert fresh.get("a").id == 0
    assert fresh.leases("a") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("NETWORK_ADDRESS = 10.0.0.0/²", "/² is not a prefix length"),
        ("NETWORK_ADDRESS = 10.0.0.0/٢٤", "/٢٤ is not a prefix length"),
        ("NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = ²", "NETWORK_SIZE '²' is not A, B, C or a host count"),
        ("NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = ٢٥٠", "NETWORK_SIZE '٢٥٠' is not A, B, C or a host count"),
    ],
)
def test_numbers_are_ascii_digits_only(nets: Networks, tmp_path: Path, line: str, message: str) -> None:
    lines = error_lines(nets, tmp_path, f"NAME = n\nBRIDGE = br0\n{line}\n")
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.parametrize(
    ("lines", "line", "count"),
    [
        ("NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = A", 4, 16777214),
        ("NETWORK_ADDRESS = 10.0.0.0/8", 3, 16777214),
        ("NETWORK_ADDRESS = 10.0.0.0/15", 3, 131070),
        ("NETWORK_ADDRESS = 10.0.0.0\nNETWORK_SIZE = 65535", 4, 65535),
    ],
)
def test_no_network_leases_more_than_a_slash_16(
    nets: Networks, tmp_path: Path, lines: str, line: int, count: int
) -> None:
    # A class A was accepted (OpenNebula's 16,777,214 addresses); after `--count 1000000` every lease cost 6 s.
    lines_out = error_lines(nets, tmp_path, f"NAME = n\nBRIDGE = br0\n{lines}\n")
    assert len(lines_out) == 1
    assert lines_out[0].startswith(f"{tmp_path / 'bad.tmpl'}:{line}: the range ")
    assert f"holds {count} addresses: a network leases at most 65534 (a /16)" in lines_out[0]


def test_a_large_prefix_narrowed_to_a_slash_16_is_fine(nets: Networks, tmp_path: Path) -> None:
    text = "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/8\nIP_START=10.1.0.1\nIP_END=10.1.255.254\n"
    assert create(nets, tmp_path, text).size == 65534
    text = "NAME=m\nBRIDGE=br1\nNETWORK_ADDRESS=10.0.0.0\nNETWORK_SIZE=B\n"
    assert create(nets, tmp_path, text, "m.tmpl").size == 65534


def test_count_is_at_most_the_networks_size(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=n\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    with pytest.raises(InputError, match="1000000 leases asked: network 'n' has 254 addresses"):
        nets.lease_many("n", 1000000)
    assert nets.leases("n") == []
