"""The IP-MAC rule both ways, strict parsing, EUI-64, and the guest's boot script."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.home import shipped
from engine.networks.addresses import (
    AddressError,
    Eui64,
    format_ipv4,
    format_mac,
    ip_to_mac,
    ipv6_to_mac,
    mac_to_ip,
    mac_to_ipv6,
    parse_ipv4,
    parse_mac,
    parse_mac_prefix,
)

GUEST_SCRIPT = shipped("guest/headnode-ip.sh")

# Pairs computed by OpenNebula 1.x's own Leases.cc.
VECTORS = [
    ("00:03", "10.0.0.1", "00:03:0a:00:00:01"),
    ("00:03", "192.168.0.254", "00:03:c0:a8:00:fe"),
    ("00:03", "130.10.0.5", "00:03:82:0a:00:05"),
    ("02:00", "10.0.0.1", "02:00:0a:00:00:01"),
    ("02:00", "255.255.255.255", "02:00:ff:ff:ff:ff"),
    ("0a:ff", "1.2.3.4", "0a:ff:01:02:03:04"),
    ("0A:FF", "1.2.3.4", "0a:ff:01:02:03:04"),
]

ips = st.integers(0, 0xFFFFFFFF).map(format_ipv4)
prefixes = st.integers(0, 0xFFFF).map(lambda n: f"{n >> 8:02x}:{n & 255:02x}")
macs = st.integers(0, (1 << 48) - 1).map(format_mac)


@pytest.mark.parametrize(("prefix", "ip", "mac"), VECTORS)
def test_opennebula_vectors(prefix: str, ip: str, mac: str) -> None:
    assert ip_to_mac(ip, prefix) == mac
    assert mac_to_ip(mac) == ip


@given(ips, prefixes)
def test_ip_to_mac_then_back_gives_the_ip(ip: str, prefix: str) -> None:
    mac = ip_to_mac(ip, prefix)
    assert mac_to_ip(mac) == ip
    assert mac.startswith(prefix)
    assert mac == mac.lower()


@given(macs)
def test_mac_to_ip_then_back_gives_the_mac(mac: str) -> None:
    assert ip_to_mac(mac_to_ip(mac), mac[:5]) == mac


@given(st.integers(0, 0xFFFFFFFF))
def test_ipv4_text_round_trip(number: int) -> None:
    assert parse_ipv4(format_ipv4(number)) == number


@pytest.mark.parametrize(
    "text", ["10.0.0.300", "256.1.1.1", "10.0.0", "10.0.0.1.2", "10.0.0.01", "a.b.c.d", " 10.0.0.1", "10.0.0.-1", ""]
)
def test_bad_ipv4_is_an_error(text: str) -> None:
    with pytest.raises(AddressError, match="is not an IPv4 address"):
        parse_ipv4(text)


def test_octet_over_255_says_so() -> None:
    with pytest.raises(AddressError, match="octet 300 is over 255"):
        parse_ipv4("10.0.0.300")


@pytest.mark.parametrize("text", ["02:00:0a:00:00", "02:00:0a:00:00:1", "02-00-0a-00-00-01", "02:00:0a:00:00:0g", ""])
def test_bad_mac_is_an_error(text: str) -> None:
    with pytest.raises(AddressError, match="is not a MAC address"):
        parse_mac(text)


@pytest.mark.parametrize("text", ["00:3", "00:03:04", "0003", "zz:00", ""])
def test_bad_mac_prefix_is_an_error(text: str) -> None:
    with pytest.raises(AddressError, match="is not a MAC prefix"):
        parse_mac_prefix(text)


def test_eui64_example_from_the_issue() -> None:
    assert mac_to_ipv6("02:00:0a:00:00:01", "2001:db8::") == "2001:db8::aff:fe00:1"
    assert mac_to_ipv6("02:00:b9:ae:a8:0e", "fe80::/64") == "fe80::b9ff:feae:a80e"


@given(macs)
def test_eui64_round_trip(mac: str) -> None:
    assert ipv6_to_mac(mac_to_ipv6(mac, "fd00:1:2:3::")) == mac


def test_ipv6_prefix_longer_than_64_bits_is_an_error() -> None:
    with pytest.raises(AddressError, match="last 64 bits are not zero"):
        mac_to_ipv6("02:00:0a:00:00:01", "2001:db8::1")


SHELLS = [s for s in ("dash", "sh", "bash") if shutil.which(s)]


@pytest.mark.parametrize("shell", SHELLS)
def test_guest_script_reads_the_mac_from_sysfs(shell: str, tmp_path: Path) -> None:
    iface = tmp_path / "class" / "net" / "ens3"
    iface.mkdir(parents=True)
    (iface / "address").write_text(ip_to_mac("192.168.122.77") + "\n")
    done = subprocess.run(
        [shell, str(GUEST_SCRIPT), "-i", "ens3"], env={"SYSFS": str(tmp_path)}, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, "192.168.122.77\n")


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=25, deadline=None)
@given(ips)
def test_guest_script_agrees_with_mac_to_ip(shell: str, ip: str) -> None:
    mac = ip_to_mac(ip, "02:00").upper()
    done = subprocess.run([shell, str(GUEST_SCRIPT), mac], capture_output=True, text=True)
    assert done.stdout == f"{ip}\n"


ipv6_prefixes = st.sampled_from(["fe80::", "2001:db8::", "2001:db8:0:1::", "fd00:1:2:3::", "1::", "0:0:0:1::/64"]) | (
    st.integers(0, 0xFFFFFFFFFFFFFFFF).map(lambda n: str(ipaddress.IPv6Address(n << 64)))
)
macs = st.integers(0, 0xFFFFFFFFFFFF).map(format_mac) | st.integers(0, 0xFFFFFFFF).map(
    lambda n: format_mac(0x0200 << 32 | n)
)


@settings(max_examples=2000, deadline=None)
@given(macs, ipv6_prefixes)
def test_eui64_text_is_what_ipaddress_prints(mac: str, prefix: str) -> None:
    value = parse_mac(mac)
    eui64 = ((value >> 24) << 40 | 0xFFFE << 24 | (value & 0xFFFFFF)) ^ (0x02 << 56)
    expected = ipaddress.IPv6Address(int(ipaddress.IPv6Address(prefix.removesuffix("/64"))) | eui64)
    assert Eui64(prefix)(mac) == mac_to_ipv6(mac, prefix) == str(expected)


@pytest.mark.parametrize("shell", SHELLS)
@settings(max_examples=25, deadline=None)
@given(macs, ipv6_prefixes)
def test_guest_script_prints_the_ipv6_address_headnode_shows(shell: str, mac: str, prefix: str) -> None:
    done = subprocess.run([shell, str(GUEST_SCRIPT), "-6", prefix, mac.upper()], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{mac_to_ipv6(mac, prefix)}\n", "")


@pytest.mark.parametrize(
    "prefix", ["2001:db8::1", "1:2:3:4:5:6:7", "2001:db8:::", ":1::", "2001:db8", "g::", "1:2::3::"]
)
def test_guest_script_refuses_a_bad_ipv6_prefix(prefix: str) -> None:
    done = subprocess.run(["sh", str(GUEST_SCRIPT), "-6", prefix, "02:00:0a:00:00:01"], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"headnode-ip: '{prefix}' is not an IPv6 /64 prefix (e.g. 2001:db8::)\n"


def test_guest_script_refuses_a_bad_mac() -> None:
    done = subprocess.run(["sh", str(GUEST_SCRIPT), "02:00:0a"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "is not a MAC address" in done.stderr


def test_guest_script_without_sysfs_entry_fails_clearly(tmp_path: Path) -> None:
    done = subprocess.run(["sh", str(GUEST_SCRIPT)], env={"SYSFS": str(tmp_path)}, capture_output=True, text=True)
    assert done.returncode == 1
    assert "cannot read" in done.stderr
