"""Virtual network definitions: read from a network template, checked whole, stored as plain records.

A template, OpenNebula 1.x compatible (names case-insensitive):

    NAME = "Private LAN"
    TYPE = RANGED                       # or FIXED; default RANGED
    BRIDGE = br0
    NETWORK_ADDRESS = 10.0.0.0          # must be the base address; or 10.0.0.0/24
    NETWORK_SIZE = C                    # A, B, C (any case) or a host count N: leases network+1 .. network+N
    IP_START = 10.0.0.10                # optional: narrow the range inside the network
    IP_END = 10.0.0.200
    MAC_PREFIX = 02:00                  # default: the home's configuration
    POLICY = next-fit                   # or first-free
    GATEWAY = 10.0.0.1                  # optional: never leased (a range starting or ending on it is narrowed)
    GLOBAL_PREFIX = 2001:db8::          # optional /64 prefixes for IPv6 (EUI-64 from the MAC)
    ULA_PREFIX = fd00::
    DNS = "10.0.0.1 9.9.9.9"            # optional: name servers the DHCP server hands out (and forwards to)
    DOMAIN = lab.example                # optional: the domain the DHCP server hands out
    DHCP = yes                          # optional: the engine service serves the leases with dnsmasq
    DHCP_INTERFACE = br0                # on this interface (default: BRIDGE)

    TYPE = FIXED
    LEASES = [ IP = 130.10.0.1, MAC = 50:20:20:20:20:20 ]
    LEASES = [ IP = 130.10.0.4 ]        # MAC optional: the prefix rule

Every problem is reported with the file and line it comes from, all at once, and nothing is stored.
Deliberate deviations from OpenNebula 1.x: an unknown TYPE, a non-base NETWORK_ADDRESS, an octet over 255 and
`NETWORK_SIZE = A` are errors instead of silent guesses; MAC_PREFIX in a template is honoured; a range of more
than 65,534 addresses (a /16; a class A without IP_START/IP_END) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from engine.errors import InputError, Problem
from engine.language.numbers import whole_number
from engine.language.template import Attribute, Template, Vector
from engine.networks.addresses import (
    LINK_LOCAL_PREFIX,
    LOCAL_BIT,
    MULTICAST_BIT,
    AddressError,
    Eui64,
    format_ipv4,
    mac_of,
    normal_mac,
    parse_ipv4,
    parse_ipv6_prefix,
    parse_mac_prefix,
)

RANGED = "RANGED"
FIXED = "FIXED"
NEXT_FIT = "next-fit"
FIRST_FREE = "first-free"
POLICIES = (NEXT_FIT, FIRST_FREE)
CLASS_HOST_BITS = {"A": 24, "B": 16, "C": 8}
_DECIMAL = [str(i) for i in range(256)]
_HEX = [f"{i:02x}" for i in range(256)]
DEFAULT_HOST_BITS = 8  # OpenNebula's NETWORK_SIZE default of 254 hosts: a class C
# The most addresses one network leases: a /16. A lease scans its pool, and a VM network larger than this is a
# mistake (a /8 with `--count 1000000` made every later lease cost 6 s and 950 MB); IP_START/IP_END narrow a
# larger prefix to a range this size.
MAX_ADDRESSES = 65534
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_INTERFACE = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")  # a Linux interface name (IFNAMSIZ - 1), never an option
YES, NO = ("yes", "true", "1", "on"), ("no", "false", "0", "off")


@dataclass(frozen=True)
class DhcpService:
    """How the engine service serves a network's leases: dnsmasq on `interface`, answering DNS for the leases'
    names there too unless `dns` is off."""

    interface: str
    dns: bool = True

    def to_record(self) -> dict[str, Any]:
        return {"interface": self.interface, "dns": self.dns}

    @classmethod
    def from_record(cls, doc: dict[str, Any] | None) -> DhcpService | None:
        return cls(doc["interface"], bool(doc.get("dns", True))) if doc else None


def check_interface(name: str) -> str:
    """An interface name as Linux allows one (InputError otherwise): dnsmasq gets it as an option's value."""
    if not _INTERFACE.fullmatch(name) or name.startswith("-"):
        raise InputError(Problem(f"{name!r} is not an interface name (up to 15 letters, digits and ._:@-)"))
    return name


@dataclass(frozen=True)
class Network:
    """A virtual network. Addresses are 32-bit numbers; `first`..`last` is the lease range of a RANGED network."""

    id: int
    name: str
    type: str
    bridge: str
    mac_prefix: str
    policy: str = NEXT_FIT
    address: int | None = None  # base address and prefix length (RANGED)
    prefix_length: int | None = None
    first: int = 0
    last: int = -1
    fixed: tuple[tuple[int, str], ...] = ()  # (ip, mac) sorted by ip (FIXED)
    global_prefix: str | None = None
    ula_prefix: str | None = None
    gateway: int | None = None  # never leased; a RANGED network's range may hold it, as a hole
    dns_servers: tuple[str, ...] = ()  # DNS: handed out by the DHCP server
    domain: str | None = None  # DOMAIN
    dhcp: DhcpService | None = None  # served by the engine service's dnsmasq (DHCP = yes, or `vnet dhcp`)
    attributes: tuple[tuple[str, Any], ...] = field(default=(), compare=False)  # the template, for display
    store_key: str = ""  # names the network's lease files; unique forever, so no network inherits stale leases
    warnings: tuple[Problem, ...] = field(default=(), compare=False)  # from reading its template; not stored

    @cached_property
    def pool(self) -> Sequence[int]:
        """The addresses to lease from, in allocation order; of these, only those `contains` says (not the gateway)."""
        if self.type == FIXED:
            return tuple(ip for ip, _ in self.fixed)
        return range(self.first, self.last + 1)

    @cached_property
    def size(self) -> int:
        """How many addresses can be leased."""
        return len(self.pool) - (
            self.type == RANGED and self.gateway is not None and self.first <= self.gateway <= self.last
        )

    @cached_property
    def _fixed_macs(self) -> dict[int, str]:
        return dict(self.fixed)

    def contains(self, ip: int) -> bool:
        if self.type == FIXED:
            return ip in self._fixed_macs
        return self.first <= ip <= self.last and ip != self.gateway

    def mac_for(self, ip: int) -> str:
        """The MAC a lease of `ip` carries: the listed one in a FIXED network, else the prefix rule."""
        listed = self._fixed_macs.get(ip) if self.type == FIXED else None
        return listed or mac_of(ip, self._mac_prefix_number)

    @cached_property
    def _mac_prefix_number(self) -> int:
        return parse_mac_prefix(self.mac_prefix)

    def lease_texts(self, ip: int) -> tuple[str, str]:
        """The IPv4 text and the MAC of a lease of `ip` (format_ipv4 and mac_for), each /24's common part made
        once: this runs once per lease, 65,534 times when a /16 is leased at once."""
        block = ip >> 8
        heads = self._block_heads.get(block)
        if heads is None:  # "10.1.234." and "02:00:0a:01:ea:"
            base = block << 8
            heads = self._block_heads[block] = (format_ipv4(base)[:-1], mac_of(base, self._mac_prefix_number)[:-2])
        low = ip & 255
        listed = self._fixed_macs.get(ip) if self.type == FIXED else None
        return heads[0] + _DECIMAL[low], listed or heads[1] + _HEX[low]

    @cached_property
    def _block_heads(self) -> dict[int, tuple[str, str]]:
        return {}

    @cached_property
    def _slaac(self) -> dict[str, Eui64]:
        prefixes = (("GLOBAL", self.global_prefix), ("ULA", self.ula_prefix), ("LINK", LINK_LOCAL_PREFIX))
        return {name: Eui64(prefix) for name, prefix in prefixes if prefix}

    @property
    def has_ipv6_prefix(self) -> bool:
        """Whether the network gives routable IPv6 addresses (GLOBAL_PREFIX or ULA_PREFIX), not only link-local."""
        return bool(self.global_prefix or self.ula_prefix)

    def ipv6_address(self, kind: str, mac: str) -> str | None:
        """The SLAAC address of a NIC with `mac`: kind GLOBAL or ULA (None without that prefix), or LINK."""
        slaac = self._slaac.get(kind)
        return slaac(mac) if slaac is not None else None

    def ipv6_addresses(self, mac: str) -> dict[str, str]:
        """The SLAAC addresses of a NIC with `mac` under GLOBAL_PREFIX and ULA_PREFIX, and its link-local one."""
        return {name: slaac(mac) for name, slaac in self._slaac.items()}

    def check_leasable(self, ip: int) -> None:
        """Raise InputError saying why `ip` can never be leased in this network (bad input, exit 2), if so."""
        text = format_ipv4(ip)
        if self.type == RANGED and self.address is not None and self.prefix_length is not None:
            broadcast = self.address | (0xFFFFFFFF >> self.prefix_length)
            if ip == self.address:
                raise InputError(Problem(f"{text} is the network address of {self.name!r}"))
            if ip == broadcast:
                raise InputError(Problem(f"{text} is the broadcast address of {self.name!r}"))
        if ip == self.gateway:
            raise InputError(Problem(f"{text} is the gateway of {self.name!r}: a gateway is never leased"))
        if not self.contains(ip):
            raise InputError(Problem(f"{text} is outside the range of {self.name!r} ({self.range_text})"))

    @property
    def range_text(self) -> str:
        if self.type == FIXED:
            return f"{len(self.fixed)} fixed addresses"
        return f"{format_ipv4(self.first)}-{format_ipv4(self.last)}"

    @property
    def cidr(self) -> str | None:
        if self.address is None:
            return None
        return f"{format_ipv4(self.address)}/{self.prefix_length}"

    def to_record(self) -> dict[str, Any]:
        """The JSON document stored in the `networks` table."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "bridge": self.bridge,
            "mac_prefix": self.mac_prefix,
            "policy": self.policy,
            "address": self.address,
            "prefix_length": self.prefix_length,
            "first": self.first,
            "last": self.last,
            "fixed": [list(pair) for pair in self.fixed],
            "global_prefix": self.global_prefix,
            "ula_prefix": self.ula_prefix,
            "gateway": self.gateway,
            "dns_servers": list(self.dns_servers),
            "domain": self.domain,
            "dhcp": self.dhcp.to_record() if self.dhcp else None,
            "attributes": [list(pair) for pair in self.attributes],
            "store_key": self.store_key,
        }

    @classmethod
    def from_record(cls, doc: dict[str, Any]) -> Network:
        return cls(
            id=doc["id"],
            name=doc["name"],
            type=doc["type"],
            bridge=doc["bridge"],
            mac_prefix=doc["mac_prefix"],
            policy=doc["policy"],
            address=doc["address"],
            prefix_length=doc["prefix_length"],
            first=doc["first"],
            last=doc["last"],
            fixed=tuple((ip, mac) for ip, mac in doc["fixed"]),
            global_prefix=doc["global_prefix"],
            ula_prefix=doc["ula_prefix"],
            gateway=doc.get("gateway"),  # absent in networks stored before GATEWAY was read
            dns_servers=tuple(doc.get("dns_servers") or ()),  # these three: absent before DHCP was served
            domain=doc.get("domain"),
            dhcp=DhcpService.from_record(doc.get("dhcp")),
            attributes=tuple((name, value) for name, value in doc["attributes"]),
            store_key=doc["store_key"],
        )


class _Reader:
    """Collects every problem of one template, each located at its attribute's line."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def problem(self, message: str, attr: Attribute | None = None) -> None:
        self.problems.append(Problem(message, self.template.source, attr.line if attr else None))

    def warning(self, message: str, attr: Attribute | None = None) -> None:
        self.warnings.append(Problem(message, self.template.source, attr.line if attr else None))

    def single(self, name: str) -> Attribute | None:
        """The attribute NAME, which must be a single value and appear once."""
        found = self.template.all(name)
        if not found:
            return None
        for extra in found[1:]:
            self.problem(f"{name} is given more than once (first on line {found[0].line})", extra)
        attr = found[0]
        if isinstance(attr.value, Vector):
            self.problem(f"{name} must be a single value, not a vector", attr)
            return None
        return attr

    def address(self, attr: Attribute, text: str, what: str) -> int | None:
        try:
            return parse_ipv4(text)
        except AddressError as exc:
            self.problem(f"{what}: {exc.problems[0].message}", attr)
            return None


def network_from_template(template: Template, default_mac_prefix: str) -> Network:
    """Read and check a network template; raise InputError listing every problem (file:line) if it is bad."""
    r = _Reader(template)
    name_attr = r.single("NAME")
    name = str(name_attr.value).strip() if name_attr else ""
    if not name:
        r.problem("NAME is missing: every network needs a name", name_attr)
    bridge_attr = r.single("BRIDGE")
    bridge = str(bridge_attr.value) if bridge_attr else ""
    if not bridge:
        r.problem("BRIDGE is missing: the host bridge the network's NICs attach to", bridge_attr)

    type_attr = r.single("TYPE")
    kind = str(type_attr.value).upper() if type_attr else RANGED
    if type_attr is not None and kind not in (RANGED, FIXED):
        r.problem(f"unknown TYPE {type_attr.value!r}: use RANGED or FIXED", type_attr)

    mac_prefix = _mac_prefix(r, default_mac_prefix)
    policy = _policy(r)
    prefixes: dict[str, str | None] = {}
    for key in ("GLOBAL_PREFIX", "ULA_PREFIX"):
        attr = r.single(key)
        prefixes[key] = None
        if attr is not None:
            try:
                prefixes[key] = str(parse_ipv6_prefix(str(attr.value)))
            except AddressError as exc:
                r.problem(f"{key}: {exc.problems[0].message}", attr)

    gateway_attr = r.single("GATEWAY")
    gateway = r.address(gateway_attr, str(gateway_attr.value), "GATEWAY") if gateway_attr else None
    ranged: dict[str, Any] = {}
    fixed: tuple[tuple[int, str], ...] = ()
    if kind == FIXED:
        fixed = _fixed_leases(r, mac_prefix, gateway)
    elif kind == RANGED:
        ranged = _range(r, gateway)
    else:  # an unknown TYPE: still check what is given, so every problem is reported at once
        if r.template.all("NETWORK_ADDRESS"):
            _range(r, gateway)
        if r.template.all("LEASES"):
            _fixed_leases(r, mac_prefix, gateway)
    dns_servers, domain, dhcp = _dhcp(r, bridge)
    if len(fixed) > MAX_ADDRESSES:
        r.problem(f"{len(fixed)} LEASES: a network leases at most {MAX_ADDRESSES} addresses")
    if r.problems:
        raise InputError(sorted(r.problems, key=lambda p: p.line or 0))
    return Network(
        id=0,  # given when stored
        name=name,
        type=kind,
        bridge=bridge,
        mac_prefix=mac_prefix,
        policy=policy,
        fixed=fixed,
        global_prefix=prefixes["GLOBAL_PREFIX"],
        ula_prefix=prefixes["ULA_PREFIX"],
        gateway=gateway,
        dns_servers=dns_servers,
        domain=domain,
        dhcp=dhcp,
        attributes=tuple(
            (a.name, a.value.as_dict() if isinstance(a.value, Vector) else a.value) for a in template.attributes
        ),
        warnings=tuple(r.warnings),
        **ranged,
    )


def _dhcp(r: _Reader, bridge: str) -> tuple[tuple[str, ...], str | None, DhcpService | None]:
    """DNS, DOMAIN, DHCP and DHCP_INTERFACE: what the DHCP server hands out, and whether it serves the network."""
    servers: list[str] = []
    dns_attr = r.single("DNS")
    if dns_attr is not None:
        for text in str(dns_attr.value).replace(",", " ").split():
            number = r.address(dns_attr, text, "DNS")
            if number is not None:
                servers.append(format_ipv4(number))
    domain_attr = r.single("DOMAIN")
    domain = str(domain_attr.value).lower().rstrip(".") if domain_attr else None
    if domain_attr is not None and not _DOMAIN.fullmatch(domain or ""):
        r.problem(f"DOMAIN {domain_attr.value!r} is not a domain name (labels of letters, digits and -)", domain_attr)
    dhcp_attr = r.single("DHCP")
    served = False
    if dhcp_attr is not None:
        text = str(dhcp_attr.value).lower()
        if text not in YES + NO:
            r.problem(f"DHCP {dhcp_attr.value!r} is not yes or no", dhcp_attr)
        served = text in YES
    interface_attr = r.single("DHCP_INTERFACE")
    interface = str(interface_attr.value) if interface_attr else bridge
    if interface_attr is not None:
        try:
            check_interface(interface)
        except InputError as exc:
            r.problem(f"DHCP_INTERFACE: {exc.problems[0].message}", interface_attr)
    elif served and interface and not _INTERFACE.fullmatch(interface):
        r.problem(
            f"DHCP = yes serves on BRIDGE {interface!r}, which is no interface name: set DHCP_INTERFACE", dhcp_attr
        )
    return tuple(servers), domain, DhcpService(interface) if served and interface else None


def _mac_prefix(r: _Reader, default: str) -> str:
    attr = r.single("MAC_PREFIX")
    text = str(attr.value) if attr else default
    what = "MAC_PREFIX" if attr else "the configuration's MAC_PREFIX"
    try:
        first_byte = parse_mac_prefix(text) >> 8
    except AddressError as exc:
        r.problem(f"MAC_PREFIX: {exc.problems[0].message}" if attr else f"configured {exc.problems[0].message}", attr)
        return text.lower()
    if first_byte & MULTICAST_BIT:
        r.problem(
            f"{what} {text} is a multicast prefix (bit 0x01 of its first byte is set): every lease's MAC would be "
            "a multicast address; use a prefix such as 02:00",
            attr,
        )
    elif not first_byte & LOCAL_BIT:
        r.warning(
            f"{what} {text} is not locally administered (bit 0x02 of its first byte is clear): its MACs may "
            "clash with a vendor's hardware; a prefix such as 02:00 cannot",
            attr,
        )
    return text.lower()


def _policy(r: _Reader) -> str:
    attr = r.single("POLICY")
    if attr is None:
        return NEXT_FIT
    policy = str(attr.value).lower().replace("_", "-")
    if policy not in POLICIES:
        r.problem(f"unknown POLICY {attr.value!r}: use next-fit or first-free", attr)
    return policy


def _range(r: _Reader, gateway: int | None) -> dict[str, Any]:
    """NETWORK_ADDRESS[/prefix], NETWORK_SIZE, IP_START and IP_END of a RANGED network, and its GATEWAY's place."""
    attr = r.single("NETWORK_ADDRESS")
    if attr is None:
        r.problem("NETWORK_ADDRESS is missing: a RANGED network needs one (e.g. 10.0.0.0/24)")
        return {}
    text, slash, length_text = str(attr.value).partition("/")
    address = r.address(attr, text, "NETWORK_ADDRESS")
    size_attr = r.single("NETWORK_SIZE")
    if slash:
        if size_attr is not None:
            r.problem("NETWORK_SIZE and a /prefix in NETWORK_ADDRESS are both given: use one", size_attr)
            return {}
        length = whole_number(length_text)
        if length is None or not 8 <= length <= 30:
            r.problem(f"NETWORK_ADDRESS: /{length_text} is not a prefix length from /8 to /30", attr)
            return {}
        host_bits: int | None = 32 - length
        hosts: int | None = (1 << (32 - length)) - 2
    else:
        host_bits, hosts = _size(r, size_attr)
    if address is None or host_bits is None or hosts is None:
        return {}
    length = 32 - host_bits
    base = address & (0xFFFFFFFF << host_bits) & 0xFFFFFFFF
    if base != address:
        r.problem(
            f"NETWORK_ADDRESS {format_ipv4(address)} is not the base address of its /{length} network: "
            f"use {format_ipv4(base)}",
            attr,
        )
        return {}
    first, last = base + 1, base + hosts
    bounds = []
    for key, default in (("IP_START", first), ("IP_END", last)):
        bound_attr = r.single(key)
        value = default
        if bound_attr is not None:
            parsed = r.address(bound_attr, str(bound_attr.value), key)
            if parsed is not None and not first <= parsed <= last:
                r.problem(
                    f"{key} {format_ipv4(parsed)} is outside the network's range "
                    f"{format_ipv4(first)}-{format_ipv4(last)}",
                    bound_attr,
                )
            elif parsed is not None:
                value = parsed
        bounds.append(value)
    if bounds[0] > bounds[1]:
        r.problem(f"IP_START {format_ipv4(bounds[0])} is after IP_END {format_ipv4(bounds[1])}", r.single("IP_START"))
    elif gateway is not None:
        gateway_attr = r.single("GATEWAY")
        if not first <= gateway <= last:
            r.problem(
                f"GATEWAY {format_ipv4(gateway)} is not a host of the network {format_ipv4(base)}/{length} "
                f"({format_ipv4(first)}-{format_ipv4(last)})",
                gateway_attr,
            )
        elif bounds[0] == bounds[1] == gateway:
            r.problem(f"the range holds only the GATEWAY {format_ipv4(gateway)}: nothing to lease", gateway_attr)
        elif gateway == bounds[0]:  # the usual .1: the range starts after it
            bounds[0] += 1
        elif gateway == bounds[1]:
            bounds[1] -= 1
    if bounds[1] - bounds[0] + 1 > MAX_ADDRESSES:
        r.problem(
            f"the range {format_ipv4(bounds[0])}-{format_ipv4(bounds[1])} holds {bounds[1] - bounds[0] + 1} "
            f"addresses: a network leases at most {MAX_ADDRESSES} (a /16); narrow it with IP_START and IP_END",
            size_attr if size_attr is not None and not slash else attr,
        )
    return {"address": base, "prefix_length": length, "first": bounds[0], "last": bounds[1]}


def _size(r: _Reader, attr: Attribute | None) -> tuple[int | None, int | None]:
    """(host bits, number of hosts) from NETWORK_SIZE: a class letter or a host count."""
    if attr is None:
        return DEFAULT_HOST_BITS, (1 << DEFAULT_HOST_BITS) - 2
    text = str(attr.value).strip()
    if text.upper() in CLASS_HOST_BITS:
        bits = CLASS_HOST_BITS[text.upper()]
        return bits, (1 << bits) - 2
    hosts = whole_number(text)
    if hosts is None or not 1 <= hosts <= (1 << 24) - 2:
        r.problem(f"NETWORK_SIZE {text!r} is not A, B, C or a host count from 1 to 16777214", attr)
        return None, None
    return (hosts + 1).bit_length(), hosts  # hosts + network + broadcast addresses fit in 2**bits


def _fixed_leases(r: _Reader, mac_prefix: str, gateway: int | None) -> tuple[tuple[int, str], ...]:
    attrs = [a for a in r.template.all("LEASES")]
    if not attrs:
        r.problem("a FIXED network needs at least one LEASES = [ IP = ..., MAC = ... ]")
    by_ip: dict[int, int] = {}
    by_mac: dict[str, int] = {}
    leases = []
    try:
        prefix = parse_mac_prefix(mac_prefix)
    except AddressError:
        prefix = None  # already reported
    for attr in attrs:
        if not isinstance(attr.value, Vector):
            r.problem("LEASES must be a vector: LEASES = [ IP = ..., MAC = ... ]", attr)
            continue
        unknown = [k for k, _ in attr.value.items if k not in ("IP", "MAC")]
        if unknown:
            r.problem(f"LEASES: unknown key {unknown[0]} (use IP and MAC)", attr)
        ip_text = attr.value.get("IP")
        if ip_text is None:
            r.problem("LEASES without IP", attr)
            continue
        ip = r.address(attr, ip_text, "LEASES IP")
        mac_text = attr.value.get("MAC")
        mac = None
        if mac_text is not None:
            try:
                mac = normal_mac(mac_text)
            except AddressError as exc:
                r.problem(f"LEASES MAC: {exc.problems[0].message}", attr)
            if mac is not None and int(mac[:2], 16) & MULTICAST_BIT:
                r.problem(f"LEASES MAC {mac} is a multicast address (bit 0x01 of its first byte is set)", attr)
                mac = None
        elif ip is not None and prefix is not None:
            mac = mac_of(ip, prefix)
        if ip is None or mac is None:
            continue
        if ip == gateway:
            r.problem(f"LEASES IP {format_ipv4(ip)} is the GATEWAY: a gateway is never leased", attr)
        elif ip in by_ip:
            r.problem(f"duplicate IP {format_ipv4(ip)} (also on line {by_ip[ip]})", attr)
        elif mac in by_mac:
            r.problem(f"duplicate MAC {mac} (also on line {by_mac[mac]})", attr)
        else:
            by_ip[ip], by_mac[mac] = attr.line, attr.line
            leases.append((ip, mac))
    return tuple(sorted(leases))


def conflicts(new: Network, existing: Sequence[Network], template: Template) -> list[Problem]:
    """A duplicate name, or addresses shared with another network on the same bridge, each at its line."""
    problems = []

    def line_of(name: str) -> int | None:
        found = template.all(name)
        return found[0].line if found else None

    for other in existing:
        if other.name == new.name:
            problems.append(Problem(f"a network named {new.name!r} already exists", template.source, line_of("NAME")))
        elif other.bridge == new.bridge:
            shared = _shared_address(new, other)
            if shared is not None:
                where = line_of("NETWORK_ADDRESS" if new.type == RANGED else "LEASES")
                problems.append(
                    Problem(
                        f"{new.range_text} overlaps network {other.name!r} ({other.range_text}) on bridge "
                        f"{new.bridge} at {format_ipv4(shared)}",
                        template.source,
                        where,
                    )
                )
    return problems


def _shared_address(a: Network, b: Network) -> int | None:
    """One address both networks can lease, or None."""
    if a.type == RANGED and b.type == RANGED:
        low, high = max(a.first, b.first), min(a.last, b.last)
        return low if low <= high else None
    small, large = (a, b) if a.type == FIXED else (b, a)
    return next((ip for ip in small.pool if large.contains(ip)), None)
