"""Leases written out for the DHCP and name services that serve them: dnsmasq, /etc/ethers, /etc/hosts, Kea.

Each VM's NIC is served under its own host name: the VM's context HOSTNAME or NAME for its first NIC, with `-ethN`
for NIC N (`web`, `web-eth1`), made unique in its network when leased (`web-12` if VM 12 finds `web` taken); a
lease without one (`vnet lease --vm`) is `one-<vm>`, OpenNebula's name. A held address has no VM and so no name: it is
still reserved for its MAC in dnsmasq, ethers and Kea, and left out of /etc/hosts.

- `dnsmasq`: `dhcp-host=` lines for a `conf-file`; `dnsmasq-hostsfile`: the same without `dhcp-host=`, the form
  `--dhcp-hostsfile` and `--dhcp-hostsdir` read (and re-read on SIGHUP). A network with GLOBAL_PREFIX adds each
  lease's global IPv6 address in `[...]`.
- `hosts`: a line per address (IPv4, then the global and ULA IPv6 ones).
- `kea`: `{"subnet4": [...], "subnet6": [...]}`, a subnet per network with its own `reservations` (Kea accepts a
  reservation only inside the subnet that holds its address), the gateway as `routers`; a FIXED network has no
  subnet, so its reservations are global (`"reservations"` beside `subnet4`, read with `reservations-global`).
Every lease has a MAC and an IPv4 address of its own (the MAC is made from the IP), so no two reservations of one
network clash; `check_unique` still refuses a set that would (two networks on one interface, say) before anything
is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from engine.errors import InputError, Problem
from engine.networks.addresses import format_ipv4
from engine.networks.definition import RANGED, Network
from engine.networks.lease_book import Lease

FORMATS = ("dnsmasq", "dnsmasq-hostsfile", "ethers", "hosts", "kea")
_NOT_IN_LABEL = re.compile(r"[^a-z0-9-]+")
MAX_LABEL = 63  # RFC 1035


def nic_host_name(base: str | None, nic: int) -> str | None:
    """The host name of a VM's NIC number `nic` from its HOSTNAME or NAME, as one DNS label: lower-case letters,
    digits and `-` (other characters become `-`), `-ethN` after the first NIC; None when nothing usable is left."""
    label = _NOT_IN_LABEL.sub("-", (base or "").lower()).strip("-")
    if not label:
        return None
    suffix = f"-eth{nic}" if nic else ""
    room = MAX_LABEL - len(suffix) - 8  # room for `-<vm>` when the name is taken
    return label[:room].rstrip("-") + suffix


def hostsfile_line(lease: Lease) -> str:
    """One `--dhcp-hostsfile` line: MAC, IPv4, [IPv6], name."""
    return ",".join(_present(lease.mac, lease.ip, _bracketed(lease.ip6_global), lease.host_name)) + "\n"


def hosts_lines(lease: Lease, domain: str | None = None) -> str:
    """The /etc/hosts lines of a lease (none for a held address); with `domain`, the full name first."""
    name = lease.host_name
    if name is None:
        return ""
    names = f"{name}.{domain}\t{name}" if domain else name
    return "".join(f"{address}\t{names}\n" for address in _present(lease.ip, lease.ip6_global, lease.ip6_ula))


def export_leases(leases: Sequence[Lease], fmt: str) -> str:
    """The leases in one of FORMATS, ready to write to a file."""
    check_unique(leases)
    if fmt == "dnsmasq":
        return "".join(f"dhcp-host={hostsfile_line(x)}" for x in leases)
    if fmt == "dnsmasq-hostsfile":
        return "".join(hostsfile_line(x) for x in leases)
    if fmt == "ethers":
        return "".join(f"{x.mac} {x.ip}\n" for x in leases)
    if fmt == "hosts":
        return "".join(hosts_lines(x) for x in leases)
    if fmt == "kea":
        return json.dumps(_kea(leases), indent=2) + "\n"
    raise InputError(Problem(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}"))


def check_unique(leases: Sequence[Lease]) -> None:
    """Refuse (InputError, every clash at once) leases one DHCP server could not serve side by side: one MAC with
    two addresses, or one address for two MACs, on one bridge (networks on different bridges may repeat a range)."""
    problems = []
    seen: dict[tuple[str, str, str], Lease] = {}
    for lease in leases:
        bridge = lease.of.bridge if lease.of is not None else ""
        for kind, key in (("MAC", lease.mac), ("address", lease.ip)):
            other = seen.setdefault((bridge, kind, key), lease)
            if other is not lease:
                problems.append(
                    Problem(
                        f"network {lease.network!r} {lease.ip}: {kind} {key} is also reserved by network "
                        f"{other.network!r} {other.ip} on bridge {bridge}: a DHCP server cannot serve both "
                        "(nothing was written)"
                    )
                )
    if problems:
        raise InputError(problems)


def _kea(leases: Sequence[Lease]) -> dict[str, Any]:
    by_network: dict[str, list[Lease]] = {}
    networks: dict[str, Network] = {}
    for lease in leases:
        by_network.setdefault(lease.network, []).append(lease)
        if lease.of is not None:
            networks[lease.network] = lease.of
    export: dict[str, list[dict[str, Any]]] = {"subnet4": []}
    global_reservations: list[dict[str, Any]] = []
    subnet6: list[dict[str, Any]] = []
    for name, mine in by_network.items():
        network = networks.get(name)
        reservations = [_kea_reservation(x, {"ip-address": x.ip}) for x in mine]
        if network is None or network.type != RANGED or network.cidr is None:
            global_reservations.extend(reservations)
        else:
            subnet: dict[str, Any] = {"id": network.id + 1, "subnet": network.cidr}
            if network.gateway is not None:
                subnet["option-data"] = [{"name": "routers", "data": format_ipv4(network.gateway)}]
            subnet["reservations"] = reservations
            export["subnet4"].append(subnet)
        if network is not None and network.global_prefix:
            subnet6.append(
                {
                    "id": network.id + 1,
                    "subnet": f"{network.global_prefix}/64",
                    "reservations": [_kea_reservation(x, {"ip-addresses": [x.ip6_global]}) for x in mine],
                }
            )
    if global_reservations:
        export["reservations"] = global_reservations
    if subnet6:
        export["subnet6"] = subnet6
    return export


def _kea_reservation(lease: Lease, address: dict[str, Any]) -> dict[str, Any]:
    name = lease.host_name
    return {"hw-address": lease.mac, **address, **({"hostname": name} if name else {})}


def _present(*parts: str | None) -> list[str]:
    return [p for p in parts if p]


def _bracketed(ipv6: str | None) -> str | None:
    return f"[{ipv6}]" if ipv6 else None
