"""Leases written out for the DHCP and name services that serve them: dnsmasq, /etc/ethers, /etc/hosts, Kea.

A VM's lease is named `one-<vm>` (OpenNebula's VM host name); a held address has no VM and so no name: it is
still reserved for its MAC in dnsmasq, ethers and Kea, and left out of /etc/hosts. A network with GLOBAL_PREFIX
adds each lease's global IPv6 address: `[...]` in its dnsmasq line, a line of its own in /etc/hosts (the ULA
address too), and Kea `reservations6` for a subnet6 (DHCPv6 reservations by MAC). /etc/ethers has no place for one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from engine.errors import InputError, Problem
from engine.networks.lease_book import Lease

FORMATS = ("dnsmasq", "ethers", "hosts", "kea")


def host_name(lease: Lease) -> str | None:
    return f"one-{lease.vm}" if lease.vm is not None else None


def export_leases(leases: Sequence[Lease], fmt: str) -> str:
    """The leases in one of FORMATS, ready to write to a file."""
    if fmt == "dnsmasq":
        return "".join(
            f"dhcp-host={','.join(_present(x.mac, x.ip, _bracketed(x.ip6_global), host_name(x)))}\n" for x in leases
        )
    if fmt == "ethers":
        return "".join(f"{x.mac} {x.ip}\n" for x in leases)
    if fmt == "hosts":
        return "".join(
            f"{address}\t{host_name(x)}\n"
            for x in leases
            if x.vm is not None
            for address in _present(x.ip, x.ip6_global, x.ip6_ula)
        )
    if fmt == "kea":
        named = [(x, {"hostname": host_name(x)} if x.vm is not None else {}) for x in leases]
        export: dict[str, list[dict[str, object]]] = {
            "reservations": [{"hw-address": x.mac, "ip-address": x.ip, **name} for x, name in named]
        }
        v6: list[dict[str, object]] = [
            {"hw-address": x.mac, "ip-addresses": [x.ip6_global], **name} for x, name in named if x.ip6_global
        ]
        if v6:
            export["reservations6"] = v6
        return json.dumps(export, indent=2) + "\n"
    raise InputError(Problem(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}"))


def _present(*parts: str | None) -> list[str]:
    return [p for p in parts if p]


def _bracketed(ipv6: str | None) -> str | None:
    return f"[{ipv6}]" if ipv6 else None
