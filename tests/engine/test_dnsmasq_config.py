"""A served network's settings (DHCP, DHCP_INTERFACE, DNS, DOMAIN) and the dnsmasq configuration made from them,
checked by the real `dnsmasq --test`. The live server: tests/system/test_dhcp.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.errors import InputError, OperationError
from engine.home import Home
from engine.language.template import parse_template
from engine.networks.definition import DhcpService, network_from_template
from engine.networks.dnsmasq import ServedFiles, check_configuration, configuration
from engine.networks.manager import Networks


def network(text: str):
    return network_from_template(parse_template(text, "lan.net"), "02:00")


def test_the_template_settings_are_read_and_kept(home: Home, tmp_path: Path) -> None:
    path = tmp_path / "lan.net"
    path.write_text(
        'NAME = lan\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\nDNS = "10.0.0.1, 9.9.9.9"\nDOMAIN = Lab.Example.\n'
        "DHCP = yes\nDHCP_INTERFACE = br0.10\n"
    )
    nets = Networks(home)
    nets.create_from_file(path)
    stored = Networks(home).get("lan")
    assert (stored.dns_servers, stored.domain, stored.dhcp) == (
        ("10.0.0.1", "9.9.9.9"),
        "lab.example",
        DhcpService("br0.10"),
    )
    assert network("NAME = x\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\nDHCP = yes\n").dhcp == DhcpService("br0")
    assert network("NAME = x\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\n").dhcp is None
    assert nets.set_dhcp("lan", None).dhcp is None and Networks(home).get("lan").dhcp is None


def test_bad_settings_are_each_located() -> None:
    with pytest.raises(InputError) as caught:
        network(
            "NAME = x\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\nDNS = 10.0.0.300\nDOMAIN = bad_domain\n"
            "DHCP = maybe\nDHCP_INTERFACE = -oops\n"
        )
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (4, "DNS: '10.0.0.300' is not an IPv4 address: octet 300 is over 255"),
        (5, "DOMAIN 'bad_domain' is not a domain name (labels of letters, digits and -)"),
        (6, "DHCP 'maybe' is not yes or no"),
        (7, "DHCP_INTERFACE: '-oops' is not an interface name (up to 15 letters, digits and ._:@-)"),
    ]


def served(home: Home, text: str, dns: bool = True):
    net = replace(network("NAME = lan\nBRIDGE = br0\n" + text), dhcp=DhcpService("br0", dns), store_key="1-abc")
    return net, ServedFiles(home, net.store_key)


def test_static_leases_only_with_the_gateway_dns_and_domain(home: Home) -> None:
    net, files = served(home, "NETWORK_ADDRESS = 10.0.0.0/24\nGATEWAY = 10.0.0.254\nDNS = 9.9.9.9\nDOMAIN = lab\n")
    text = configuration(files, net)
    lines = text.splitlines()
    assert "dhcp-range=10.0.0.0,static,255.255.255.0,1h" in lines
    assert "dhcp-option=option:router,10.0.0.254" in lines
    assert {"domain=lab", "local=/lab/", "no-resolv", "server=9.9.9.9", f"hostsdir={files.names}"} <= set(lines)
    assert "port=0" not in lines
    check_configuration(files, "lan", text, [])  # dnsmasq --test accepts it


def test_without_dns_or_gateway(home: Home) -> None:
    net, files = served(home, "NETWORK_ADDRESS = 10.0.0.0/24\nDNS = 9.9.9.9\n", dns=False)
    lines = configuration(files, net).splitlines()
    assert "dhcp-option=option:router" in lines  # no router: dnsmasq would name itself
    assert {"port=0", "dhcp-option=option:dns-server,9.9.9.9"} <= set(lines)
    assert not any(line.startswith("hostsdir=") for line in lines)


def test_fixed_networks_and_ipv6_router_advertisements(home: Home) -> None:
    net, files = served(
        home, "TYPE = FIXED\nLEASES = [ IP = 10.0.1.5 ]\nLEASES = [ IP = 10.0.2.5 ]\nGLOBAL_PREFIX = 2001:db8::\n"
    )
    lines = configuration(files, net).splitlines()
    assert [x for x in lines if x.startswith("dhcp-range=")] == [
        "dhcp-range=10.0.1.0,static,255.255.255.0,1h",
        "dhcp-range=10.0.2.0,static,255.255.255.0,1h",
        "dhcp-range=2001:db8::,ra-only,64,1h",
    ]
    assert "enable-ra" in lines
    check_configuration(files, "lan", "\n".join(lines) + "\n", [])


def test_what_dnsmasq_refuses_is_reported_with_its_words(home: Home) -> None:
    net, files = served(home, "NETWORK_ADDRESS = 10.0.0.0/24\n")
    with pytest.raises(OperationError) as caught:
        check_configuration(files, "lan", configuration(files, net) + "bad-option=1\n", [])
    assert str(caught.value) == (
        "dnsmasq refuses the configuration for network 'lan': bad option in `bad-option=1` (nothing was started)"
    )
    assert not list(files.conf.parent.glob(".*.test"))  # the trial file does not stay
