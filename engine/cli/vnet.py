"""`headnode vnet`: virtual networks and their leases, OpenNebula's onevnet verbs.

With --json: a network in `list` is {"name", "type", "bridge", "size", "used", "free", "damage"} (used counts held
addresses too, so used + free = size; damage lists the parts of its lease files that did not load, each with its
file and what was lost or kept, which every command showing a network also says on stderr); `create` adds the
template's "warnings" (also on stderr, one a line); `show` adds its attributes and a `leases` list; a lease is
{"network", "ip", "mac", "ip6_global", "ip6_ula", "ip6_link", "vm", "state", "note"} (ip6_global and ip6_ula null
without GLOBAL_PREFIX / ULA_PREFIX; tables show the IPv6 columns for networks with one). A full network, a taken
address or a refused release exit 1.
"""

from __future__ import annotations

import argparse
import sys
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from engine.cli.arguments import whole_number_argument
from engine.cli.context import CliContext, format_table

if TYPE_CHECKING:
    from engine.networks.definition import Network
    from engine.networks.lease_book import Lease, Usage
    from engine.networks.manager import Networks

# engine.networks.exports.FORMATS, without importing it here
EXPORT_FORMATS = ("dnsmasq", "dnsmasq-hostsfile", "ethers", "hosts", "kea")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "vnet", parents=[common], help="virtual networks and leases", description="Virtual networks and leases."
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))

    def verb(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, parents=[common], help=help, description=help[0].upper() + help[1:] + ".")
        v.set_defaults(handler=handler)
        return v

    verb("create", run_create, "create a network from a template file").add_argument("template", help="template file")
    verb("list", run_list, "list the networks and how many addresses are in use")
    verb("show", run_show, "show a network, its attributes and its leases").add_argument("name")
    v = verb("delete", run_delete, "delete a network (refused while it has leases, unless --force)")
    v.add_argument("name")
    v.add_argument("--force", action="store_true", help="delete even with leases in use")
    v = verb("lease", run_lease, "lease the next free address (or --ip) to a VM; without --vm, hold it")
    v.add_argument("name")
    v.add_argument("--vm", type=whole_number_argument, metavar="ID", help="the VM the lease is for")
    v.add_argument("--ip", help="this address instead of the next free one")
    v.add_argument(
        "--count", type=whole_number_argument, default=None, metavar="N", help="lease N addresses at once (all or none)"
    )
    v.add_argument("--note", default="", metavar="TEXT", help="a note kept with the lease")
    v = verb("hold", run_hold, "hold an address: reserved, no VM")
    v.add_argument("name")
    v.add_argument("ip")
    v.add_argument("--note", default="", metavar="TEXT", help="why it is held")
    v = verb("release", run_release, "free an address (a VM's lease needs --force)")
    v.add_argument("name")
    v.add_argument("ip")
    v.add_argument("--force", action="store_true", help="release even a lease a VM holds")
    v = verb("export", run_export, "print leases for dnsmasq (conf or hostsfile), /etc/ethers, /etc/hosts or Kea")
    v.add_argument("name", nargs="?", help="one network (default: all)")
    v.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    v = verb("dhcp", run_dhcp, "serve a network's leases with dnsmasq on an interface (--stop: no more)")
    v.add_argument("name")
    v.add_argument("--interface", metavar="IF", help="the interface to serve on (default: the network's BRIDGE)")
    v.add_argument("--no-dns", dest="dns", action="store_false", help="DHCP only: no DNS for the leases' names")
    v.add_argument("--stop", action="store_true", help="stop serving it")
    v = verb("doctor", run_doctor, "check the leases against the rules (repair with --fix)")
    v.add_argument("--fix", action="store_true", help="repair what is found")
    verb("mac2ip", run_mac2ip, "print the IPv4 address a MAC carries").add_argument("mac")
    v = verb("ip2mac", run_ip2mac, "print the MAC of an IPv4 address")
    v.add_argument("ip")
    v.add_argument("--prefix", metavar="XX:XX", help="MAC prefix (default: the configuration's MAC_PREFIX)")


def networks(ctx: CliContext) -> Networks:
    from engine.networks.manager import Networks

    return Networks(ctx.home)


def run_create(args: argparse.Namespace, ctx: CliContext) -> int:
    nets = networks(ctx)
    network = ctx.changes.create_network(nets, args.template)
    for warning in network.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if ctx.json:
        ctx.emit_json(network_summary(nets, network) | {"warnings": [str(w) for w in network.warnings]})
    else:
        print(f"created network {network.name!r} (id {network.id}): {network.size} addresses, {network.range_text}")
    if network.dhcp is not None:  # DHCP = yes: the service serves it from now on
        from engine.service.client import ServiceClient

        served = ServiceClient(ctx.home, "cli").call(
            "dhcp", network=network.name, interface=network.dhcp.interface, dns=network.dhcp.dns
        )
        if not ctx.json:
            print(f"dnsmasq serving it on {served['interface']}, pid {served['pid']}")
    return 0


def run_list(args: argparse.Namespace, ctx: CliContext) -> int:
    nets = networks(ctx)
    rows = [network_summary(nets, n) | {"id": n.id} for n in nets.list()]
    if ctx.json:
        keys = ("name", "type", "bridge", "size", "used", "free", "damage")
        ctx.emit_json([{k: row[k] for k in keys} for row in rows])
        return 0
    headers = ("ID", "NAME", "TYPE", "BRIDGE", "SIZE", "USED", "FREE")
    table = [[r["id"], r["name"], r["type"], r["bridge"], r["size"], r["used"], r["free"]] for r in rows]
    sys.stdout.write(format_table(headers, table, right=("ID", "SIZE", "USED", "FREE")))
    return 0


def warn_of_damage(network: Network, usage: Usage) -> None:
    """Each damaged lease file of a network shown, on stderr (the counts shown with it may be short)."""
    for warning in usage.warnings(network.name):
        print(f"warning: {warning}", file=sys.stderr)


def run_show(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.networks.addresses import format_ipv4

    nets = networks(ctx)
    network = nets.get(args.name)
    leases = nets.leases(network.name)
    summary = network_summary(nets, network)
    details = {
        "id": network.id,
        **summary,
        "held": sum(1 for x in leases if x.vm is None),
        "network_address": network.cidr,
        "ip_start": format_ipv4(network.first) if network.type == "RANGED" else None,
        "ip_end": format_ipv4(network.last) if network.type == "RANGED" else None,
        "gateway": format_ipv4(network.gateway) if network.gateway is not None else None,
        "mac_prefix": network.mac_prefix,
        "policy": network.policy,
        "global_prefix": network.global_prefix,
        "ula_prefix": network.ula_prefix,
        "dns": " ".join(network.dns_servers) or None,
        "domain": network.domain,
    }
    dhcp = nets.dhcp_status(network)
    if ctx.json:
        served = dhcp.to_json() if dhcp is not None else None
        ctx.emit_json(
            {**details, "dhcp": served, "attributes": attributes(network), "leases": [x.to_json() for x in leases]}
        )
        return 0
    details["dhcp"] = dhcp.text if dhcp is not None else "off"
    print(f"VIRTUAL NETWORK {network.id} INFORMATION")
    for key, value in details.items():
        if value is not None and key != "damage":
            print(f"{key.upper().replace('_', ' '):<16}: {value}")
    print("\nTEMPLATE")
    for name, value in network.attributes:
        shown = "[ " + ", ".join(f"{k} = {v}" for k, v in value.items()) + " ]" if isinstance(value, dict) else value
        print(f"{name} = {shown}")
    print("\nLEASES")
    sys.stdout.write(lease_table(leases, network))
    return 0


def run_delete(args: argparse.Namespace, ctx: CliContext) -> int:
    network = ctx.changes.delete_network(networks(ctx), args.name, force=args.force)
    if ctx.json:
        ctx.emit_json({"name": network.name, "deleted": True})
    else:
        print(f"deleted network {network.name!r}")
    return 0


def run_lease(args: argparse.Namespace, ctx: CliContext) -> int:
    nets = networks(ctx)
    if args.count is not None:
        if args.ip is not None:
            from engine.errors import InputError

            raise InputError("give either --ip or --count, not both")
        leases = ctx.changes.lease_many(nets, args.name, args.count, vm=args.vm, note=args.note)
        if ctx.json:
            ctx.emit_json([x.to_json() for x in leases])
        else:
            sys.stdout.write(lease_table(leases, nets.get(args.name)))
        return 0
    lease = ctx.changes.lease(nets, args.name, vm=args.vm, ip=args.ip, note=args.note)
    print_lease(ctx, nets, lease)
    return 0


def run_hold(args: argparse.Namespace, ctx: CliContext) -> int:
    nets = networks(ctx)
    lease = ctx.changes.hold(nets, args.name, args.ip, note=args.note)
    print_lease(ctx, nets, lease)
    return 0


def run_release(args: argparse.Namespace, ctx: CliContext) -> int:
    lease = ctx.changes.release(networks(ctx), args.name, args.ip, force=args.force)
    if ctx.json:
        ctx.emit_json(lease.to_json())
    else:
        print(f"released {lease.ip} ({lease.mac}) in {lease.network!r}")
    return 0


def run_export(args: argparse.Namespace, ctx: CliContext) -> int:
    text = networks(ctx).export(args.format, args.name)
    if ctx.json:
        ctx.emit_json({"format": args.format, "network": args.name, "text": text})
    else:
        sys.stdout.write(text)
    return 0


def run_dhcp(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.service.client import ServiceClient

    network = networks(ctx).get(args.name)
    if args.stop:
        if args.interface is not None or not args.dns:
            from engine.errors import InputError

            raise InputError("--stop takes no --interface or --no-dns")
        request: dict[str, Any] = {"network": network.name, "stop": True}
    else:
        request = {"network": network.name, "interface": args.interface or network.bridge, "dns": args.dns}
    result = ServiceClient(ctx.home, "cli").call("dhcp", **request)
    if ctx.json:
        ctx.emit_json(result)
    elif args.stop:
        print(f"network {network.name!r}: DHCP stopped")
    else:
        dns = "" if result["dns"] else " (no DNS)"
        print(f"network {network.name!r}: dnsmasq serving on {result['interface']}{dns}, pid {result['pid']}")
    return 0


def run_doctor(args: argparse.Namespace, ctx: CliContext) -> int:
    nets = networks(ctx)
    findings = ctx.changes.repair(nets) if args.fix else nets.doctor()
    if ctx.json:
        ctx.emit_json([f.to_json() for f in findings])
    else:
        for f in findings:
            print(f"{f.network}: {f.kind}: {f.message}" + (" (fixed)" if f.fixed else ""))
        if not findings:
            print("no problems found")
    return 1 if findings and not args.fix else 0


def run_mac2ip(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.networks.addresses import mac_to_ip

    ip = mac_to_ip(args.mac)
    if ctx.json:
        ctx.emit_json({"mac": args.mac, "ip": ip})
    else:
        print(ip)
    return 0


def run_ip2mac(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.networks.addresses import ip_to_mac

    prefix = args.prefix or ctx.home.config.mac_prefix
    mac = ip_to_mac(args.ip, prefix)
    if ctx.json:
        ctx.emit_json({"ip": args.ip, "prefix": prefix, "mac": mac})
    else:
        print(mac)
    return 0


def network_summary(nets: Networks, network: Network) -> dict[str, Any]:
    """A network's counts (and, on stderr, any damage of its lease files that makes them short)."""
    usage = nets.usage(network.name)
    warn_of_damage(network, usage)
    taken = usage.used + usage.held
    return {
        "name": network.name,
        "type": network.type,
        "bridge": network.bridge,
        "size": usage.size,
        "used": taken,
        "free": usage.free,
        "damage": [str(damage) for damage in usage.damage],
    }


def attributes(network: Network) -> dict[str, Any]:
    """The template's attributes; a repeated name (LEASES) becomes a list."""
    result: dict[str, Any] = {}
    for name, value in network.attributes:
        if name in result:
            previous = result[name]
            result[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[name] = value
    return result


def print_lease(ctx: CliContext, nets: Networks, lease: Lease) -> None:
    if ctx.json:
        ctx.emit_json(lease.to_json())
    else:
        sys.stdout.write(lease_table([lease], nets.get(lease.network)))


def lease_table(leases: list[Lease], network: Network) -> str:
    """The leases of `network`; its IPv6 addresses in columns after the MAC when it has a routable prefix."""
    ipv6 = [key for key, prefix in (("IP6_GLOBAL", network.global_prefix), ("IP6_ULA", network.ula_prefix)) if prefix]
    if ipv6:
        ipv6.append("IP6_LINK")
    addresses = attrgetter("ip", "mac", *(key.lower() for key in ipv6))
    rows = [(*addresses(x), "-" if x.vm is None else x.vm, x.state, x.note) for x in leases]
    return format_table(("IP", "MAC", *ipv6, "VM", "STATE", "NOTE"), rows, right=("VM",))
