"""Exports for dnsmasq, /etc/ethers, /etc/hosts and Kea, from one network or all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import InputError
from engine.home import Home
from engine.networks.manager import Networks


@pytest.fixture
def nets(home: Home, tmp_path: Path) -> Networks:
    nets = Networks(home)
    for i, text in enumerate(
        ["NAME=a\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n", "NAME=b\nBRIDGE=br1\nNETWORK_ADDRESS=10.1.0.0/24\n"]
    ):
        (tmp_path / f"{i}.net").write_text(text)
        nets.create_from_file(tmp_path / f"{i}.net")
    nets.lease("a", vm=7)
    nets.hold("a", "10.0.0.9", note="router")
    nets.lease("b", vm=8)
    return nets


def test_dnsmasq(nets: Networks) -> None:
    assert nets.export("dnsmasq", "a") == (
        "dhcp-host=02:00:0a:00:00:01,10.0.0.1,one-7\ndhcp-host=02:00:0a:00:00:09,10.0.0.9\n"
    )


def test_ethers_of_all_networks(nets: Networks) -> None:
    assert nets.export("ethers") == (
        "02:00:0a:00:00:01 10.0.0.1\n02:00:0a:00:00:09 10.0.0.9\n02:00:0a:01:00:01 10.1.0.1\n"
    )


def test_hosts_leaves_out_held_addresses(nets: Networks) -> None:
    assert nets.export("hosts") == "10.0.0.1\tone-7\n10.1.0.1\tone-8\n"


def test_kea_reservations(nets: Networks) -> None:
    assert json.loads(nets.export("kea", "a")) == {
        "reservations": [
            {"hw-address": "02:00:0a:00:00:01", "ip-address": "10.0.0.1", "hostname": "one-7"},
            {"hw-address": "02:00:0a:00:00:09", "ip-address": "10.0.0.9"},
        ]
    }


def test_unknown_format(nets: Networks) -> None:
    with pytest.raises(InputError, match="unknown export format 'csv'"):
        nets.export("csv")
