"""IPv4, MAC and IPv6 addresses, and the rule that ties a lease's MAC to its IP.

The rule (OpenNebula's): a MAC is a 2-byte prefix followed by the 4 bytes of the IPv4 address, printed as six
lower-case hex bytes. With prefix 02:00 (locally administered), 10.0.0.1 gets 02:00:0a:00:00:01, so a guest reads
its own IP from its MAC: the last four bytes, in decimal, joined by dots (data/guest/headnode-ip.sh does this at
boot). Its IPv6 address under a /64 prefix is the EUI-64 interface id of the MAC: flip bit 0x02 of the first byte
and put ff:fe in the middle (02:00:0a:00:00:01 under 2001:db8:: is 2001:db8::aff:fe00:1).

Parsing is strict where OpenNebula 1.x was lax: an octet over 255, a missing octet, leading zeros, or a MAC that is
not six pairs of hex digits is an error, never a silently different address.
"""

from __future__ import annotations

import ipaddress
import re

from engine.errors import InputError, Problem

_OCTET = r"(?:0|[1-9][0-9]{0,2})"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_MAC_PREFIX = re.compile(r"[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}")
DEFAULT_MAC_PREFIX = "02:00"
MULTICAST_BIT = 0x01  # of a MAC's first byte: a group address, never one NIC's
LOCAL_BIT = 0x02  # of a MAC's first byte: locally administered, outside every vendor's OUI


class AddressError(InputError):
    """A malformed address; `problems[0].message` says what is wrong with which text."""

    def __init__(self, message: str) -> None:
        super().__init__(Problem(message))


def parse_ipv4(text: str) -> int:
    """The 32-bit number of a dotted-quad IPv4 address; raises AddressError for anything else."""
    if not _IPV4.fullmatch(text):
        raise AddressError(f"{text!r} is not an IPv4 address (four numbers 0-255 separated by dots)")
    octets = [int(part) for part in text.split(".")]
    for octet in octets:
        if octet > 255:
            raise AddressError(f"{text!r} is not an IPv4 address: octet {octet} is over 255")
    return (octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]


def format_ipv4(number: int) -> str:
    return f"{number >> 24 & 255}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def parse_mac(text: str) -> int:
    """The 48-bit number of a MAC written as six hex pairs separated by colons."""
    if not _MAC.fullmatch(text):
        raise AddressError(f"{text!r} is not a MAC address (six pairs of hex digits separated by colons)")
    return int(text.replace(":", ""), 16)


def format_mac(number: int) -> str:
    raw = f"{number:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def parse_mac_prefix(text: str) -> int:
    """The 16-bit number of a MAC prefix written as two hex bytes, e.g. 02:00."""
    if not _MAC_PREFIX.fullmatch(text):
        raise AddressError(f"{text!r} is not a MAC prefix (two hex bytes, e.g. 02:00)")
    return int(text.replace(":", ""), 16)


def normal_mac(text: str) -> str:
    """A MAC in the one spelling headnode stores: lower-case."""
    return format_mac(parse_mac(text))


def mac_of(ip: int, prefix: int) -> str:
    """The rule on numbers: prefix (16 bits) then the IPv4 address (32 bits); format_mac's text, byte by byte
    (this runs once per lease: 65,534 times for a /16 leased at once)."""
    return (
        f"{prefix >> 8:02x}:{prefix & 255:02x}:{ip >> 24:02x}:{ip >> 16 & 255:02x}:{ip >> 8 & 255:02x}:{ip & 255:02x}"
    )


def ip_to_mac(ip: str, prefix: str = DEFAULT_MAC_PREFIX) -> str:
    """The MAC of `ip` under `prefix`: ip_to_mac("10.0.0.1", "02:00") == "02:00:0a:00:00:01"."""
    return mac_of(parse_ipv4(ip), parse_mac_prefix(prefix))


def mac_to_ip(mac: str) -> str:
    """The IPv4 address a MAC carries in its last four bytes: mac_to_ip("02:00:0a:00:00:01") == "10.0.0.1"."""
    return format_ipv4(parse_mac(mac) & 0xFFFFFFFF)


def parse_ipv6_prefix(text: str) -> ipaddress.IPv6Address:
    """A /64 prefix given as its address (2001:db8::) or with /64; anything after the first 64 bits is an error."""
    address = text.removesuffix("/64")
    try:
        value = ipaddress.IPv6Address(address)
    except ValueError:
        raise AddressError(f"{text!r} is not an IPv6 /64 prefix (e.g. 2001:db8::)") from None
    if int(value) & 0xFFFFFFFFFFFFFFFF:
        raise AddressError(f"{text!r} is not an IPv6 /64 prefix: its last 64 bits are not zero")
    return value


LINK_LOCAL_PREFIX = "fe80::"


class Eui64:
    """The SLAAC (EUI-64) addresses of MACs under one /64 prefix, in the text `ipaddress` prints (RFC 5952).

    Fast enough for every lease of a /16: the interface id's 2nd and 3rd groups (xxff, fexx) are never zero and
    its last group alone is never shortened to `::`, so the compressed text of the first five groups depends only
    on the prefix and the MAC's first two bytes (one prefix per network), and is worked out once for each.
    """

    def __init__(self, prefix64: str) -> None:
        self.prefix = int(parse_ipv6_prefix(prefix64))
        self._heads: dict[int, str] = {}

    def __call__(self, mac: str) -> str:
        """The address of a MAC written as six hex pairs (parse_mac's form, lower or upper case)."""
        if not _MAC.fullmatch(mac):
            raise AddressError(f"{mac!r} is not a MAC address (six pairs of hex digits separated by colons)")
        b = bytes.fromhex(mac.replace(":", ""))
        group4 = (b[0] ^ 0x02) << 8 | b[1]
        head = self._heads.get(group4)
        if head is None:
            sample = str(ipaddress.IPv6Address(self.prefix | group4 << 48 | 0x0001_0001_0001))
            head = self._heads[group4] = sample.removesuffix("1:1:1")
        return f"{head}{b[2] << 8 | 0xFF:x}:fe{b[3]:02x}:{b[4] << 8 | b[5]:x}"


def mac_to_ipv6(mac: str, prefix64: str) -> str:
    """The SLAAC (EUI-64) address of `mac` under a /64 prefix."""
    return Eui64(prefix64)(mac)


def ipv6_to_mac(address: str) -> str:
    """The MAC an EUI-64 address was made from (the inverse of mac_to_ipv6, prefix dropped)."""
    try:
        value = int(ipaddress.IPv6Address(address)) & 0xFFFFFFFFFFFFFFFF
    except ValueError:
        raise AddressError(f"{address!r} is not an IPv6 address") from None
    if (value >> 24) & 0xFFFF != 0xFFFE:
        raise AddressError(f"{address!r} is not an EUI-64 address (no ff:fe in its interface id)")
    value ^= 0x02 << 56
    return format_mac((value >> 40) << 24 | (value & 0xFFFFFF))
