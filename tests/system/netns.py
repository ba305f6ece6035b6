"""Hosts behind real, shaped links: each host a network namespace with its own sshd, joined by veth pairs to a
bridge in a namespace of its own, the head (this process) joined the same way; `tc tbf` caps both ends of every
link. Addresses come from a 10.x.y.0/24 no route here uses, and every namespace and link is removed on exit."""

from __future__ import annotations

import contextlib
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.system.sshd import SshHost, start_sshd


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def shape(netns: str | None, device: str, mbit: float) -> None:
    """Cap what `device` sends at `mbit` (a token bucket; a burst of a few milliseconds at that rate)."""
    inside = ["ip", "netns", "exec", netns] if netns else []
    burst = max(32 << 10, int(mbit * 1e6 / 8 * 0.004))
    tbf = ["tbf", "rate", f"{mbit}mbit", "burst", str(burst), "latency", "50ms"]
    subprocess.run([*inside, "tc", "qdisc", "add", "dev", device, "root", *tbf], check=True, capture_output=True)


def free_subnet() -> str:
    """`10.X.Y` for a /24 that no route of this machine covers yet."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    for _ in range(100):
        prefix = f"10.{random.randrange(160, 250)}.{random.randrange(256)}"
        if f"{prefix}." not in routes:
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 here")


@dataclass
class Lab:
    """`hosts` sshd hosts on a bridge, every link capped at `mbit` both ways (None: not capped)."""

    root: Path
    hosts: int
    mbit: float | None
    authorized: Path
    tag: str = field(default_factory=lambda: f"{random.randrange(16**6):06x}")
    subnet: str = ""
    members: list[SshHost] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @property
    def head_address(self) -> str:
        return f"{self.subnet}.1"

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _build(self) -> None:
        self.subnet = free_subnet()
        switch = f"hn{self.tag}sw"
        self.namespaces.append(switch)
        ip("netns", "add", switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        head = f"hn{self.tag}h"  # the head's end stays here, in this process's namespace
        ip("link", "add", head, "type", "veth", "peer", "name", "head", "netns", switch)
        ip("addr", "add", f"{self.head_address}/24", "dev", head)
        ip("link", "set", head, "up")
        ip("-n", switch, "link", "set", "head", "master", "br0", "up")
        if self.mbit:
            shape(None, head, self.mbit)
            shape(switch, "head", self.mbit)
        for index in range(self.hosts):
            netns = f"hn{self.tag}h{index}"
            self.namespaces.append(netns)
            ip("netns", "add", netns)
            port = f"p{index}"
            ip("-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", switch)
            address = f"{self.subnet}.{10 + index}"
            ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", switch, "link", "set", port, "master", "br0", "up")
            if self.mbit:
                shape(netns, "eth0", self.mbit)
                shape(switch, port, self.mbit)
            self.members.append(start_sshd(self.root, f"node{index:02d}", self.authorized, address, netns))

    def __exit__(self, *exc: object) -> None:
        for host in self.members:
            host.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                host.process.wait(5)
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", f"hn{self.tag}h")
        for netns in reversed(self.namespaces):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", netns)


@dataclass
class Wire:
    """Two namespaces joined by one veth pair: `server`, whose end `srv0` has `<subnet>.1/24` (and
    `<prefix>1/64` when given), and `client`, whose end `cl0` has no address until a DHCP client or SLAAC gives it
    one. Removed on exit."""

    ipv6_prefix: str | None = None
    tag: str = field(default_factory=lambda: f"{random.randrange(16**6):06x}")
    subnet: str = ""

    @property
    def server(self) -> str:
        return f"hn{self.tag}dhs"

    @property
    def client(self) -> str:
        return f"hn{self.tag}dhc"

    def __enter__(self) -> Wire:
        self.subnet = free_subnet()
        try:
            ip("netns", "add", self.server)
            ip("netns", "add", self.client)
            ip("-n", self.server, "link", "add", "srv0", "type", "veth", "peer", "name", "cl0", "netns", self.client)
            ip("-n", self.server, "addr", "add", f"{self.subnet}.1/24", "dev", "srv0")
            if self.ipv6_prefix:
                ip("-n", self.server, "addr", "add", f"{self.ipv6_prefix}1/64", "dev", "srv0", "nodad")
            for netns, device in ((self.server, "srv0"), (self.client, "cl0")):
                ip("-n", netns, "link", "set", "lo", "up")
                ip("-n", netns, "link", "set", device, "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def set_client_mac(self, mac: str) -> None:
        """The client's NIC takes `mac` (down and up again, so SLAAC starts over with it)."""
        ip("-n", self.client, "link", "set", "cl0", "down")
        ip("-n", self.client, "link", "set", "cl0", "address", mac)
        ip("-n", self.client, "link", "set", "cl0", "up")

    def __exit__(self, *exc: object) -> None:
        for netns in (self.client, self.server):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", netns)
