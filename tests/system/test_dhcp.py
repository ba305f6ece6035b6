"""Live DHCP with real parts: the engine service runs in one network namespace and starts the network's dnsmasq
on its end of a veth pair; real DHCP clients (ISC dhclient, busybox udhcpc) run in another namespace with the
leased MAC set on their interface. Leases are made by this process, in its own namespace, as the CLI makes them:
straight in the home's lease files, and headnode keeps the running dnsmasq in step.

Only addresses of the namespaces made here are used (a 10.x.y.0/24 no route of this machine covers, and
2001:db8::/32, the documentation prefix); every client run is bounded in time; the service (and with it dnsmasq),
the namespaces and the run directory are removed after each test."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.home import Home
from engine.networks.lease_book import Lease
from engine.networks.manager import Networks
from engine.service.client import NotRunning, ServiceClient
from tests.conftest import ROOT
from tests.system.netns import Wire

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and DHCP's port 67 need root")
NO_OFFER_SECONDS = 3  # udhcpc's bounded wait for an offer that must not come: 3 discovers a second apart


@dataclass
class Served:
    wire: Wire
    home: Home
    networks: Networks
    client: ServiceClient
    tmp: Path

    def network(self, text: str, name: str = "lan") -> str:
        path = self.tmp / f"{name}.net"
        path.write_text(f"NAME = {name}\nBRIDGE = srv0\n" + text)
        return self.networks.create_from_file(path).name

    def serve(self, name: str = "lan", **request: object) -> dict:
        return self.client.call("dhcp", network=name, interface="srv0", dns=True, **request)

    def dnsmasq_pid(self, name: str = "lan") -> int | None:
        return self.networks.served_files(self.networks.get(name)).pid()

    def granted(self, name: str = "lan") -> str:
        """dnsmasq's own lease database."""
        path = self.networks.served_files(self.networks.get(name)).leases
        return path.read_text() if path.exists() else ""

    def udhcpc(self, mac: str, wait: int = 5) -> str | None:
        """The address busybox udhcpc is given for `mac`, or None when no offer came within `wait` discovers."""
        self.wire.set_client_mac(mac)
        argv = ["busybox", "udhcpc", "-i", "cl0", "-n", "-q", "-f", "-t", str(wait), "-T", "1", "-s", "/bin/true"]
        done = subprocess.run(
            ["ip", "netns", "exec", self.wire.client, *argv], capture_output=True, text=True, timeout=wait + 10
        )
        found = re.search(r"lease of (\S+) obtained", done.stdout + done.stderr)
        return found.group(1) if found else None

    def dhclient(self, mac: str) -> str | None:
        """The address ISC dhclient is bound to for `mac`, or None. Its lease, pid and configuration files are
        this test's; its script is ours and changes nothing (the machine's resolv.conf stays as it is)."""
        self.wire.set_client_mac(mac)
        run = self.tmp / f"dhclient-{mac.replace(':', '')}"
        run.mkdir(exist_ok=True)
        (run / "dhclient.conf").write_text("timeout 8;\nretry 1;\ninitial-interval 1;\n")
        script = run / "script"
        script.write_text("#!/bin/sh\nexit 0\n")
        script.chmod(0o755)
        pid = run / "pid"
        files = ["-cf", str(run / "dhclient.conf"), "-lf", str(run / "leases"), "-pf", str(pid), "-sf", str(script)]
        inside = ["ip", "netns", "exec", self.wire.client]
        done = subprocess.run(
            [*inside, "dhclient", "-1", "-v", *files, "cl0"], capture_output=True, text=True, timeout=30
        )
        subprocess.run([*inside, "dhclient", "-x", *files, "cl0"], capture_output=True, timeout=30)
        found = re.search(r"bound to (\S+)", done.stdout + done.stderr)
        return found.group(1) if found else None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A home whose service runs in the server namespace; its DHCP_RUN_DIR a fresh directory dnsmasq can reach."""
    run_dir = Path(tempfile.mkdtemp(prefix="headnode-dhcp-"))
    run_dir.chmod(0o755)
    home = Home(tmp_path / "home").ensure()
    with open(home.config_path, "a") as conf:
        conf.write(f'\nDHCP_RUN_DIR = "{run_dir}"\n')
    service = None
    try:
        with Wire(ipv6_prefix="2001:db8:7::") as wire:
            service = subprocess.Popen(
                ["ip", "netns", "exec", wire.server, sys.executable, "-m", "engine.service", "--home", str(home.root)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / "service.log", "wb"),  # noqa: SIM115 (the service's whole life)
            )
            client = ServiceClient(home, "test")
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.call("status", start=False)
                    break
                except NotRunning:
                    assert service.poll() is None and time.monotonic() < deadline, "the service did not start"
                    time.sleep(0.1)
            networks = Networks(home)
            yield Served(wire, home, networks, client, tmp_path)
            networks.close()
            service.send_signal(signal.SIGTERM)
            service.wait(30)
            assert not [p for p in _dnsmasqs() if str(home.root) in p], "dnsmasq outlived the service"
    finally:
        if service is not None and service.poll() is None:
            service.kill()
        for pid_file in (home.root / "dhcp").glob("*.pid"):  # a failed test may leave one running
            with open(pid_file) as f, contextlib.suppress(OSError, ValueError):
                os.kill(int(f.read()), signal.SIGKILL)
        shutil.rmtree(run_dir, ignore_errors=True)


def _dnsmasqs() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                argv = (proc / "cmdline").read_bytes().decode()
                if argv.startswith("dnsmasq"):
                    found.append(argv)
    return found


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.05)


def mac_of_unleased(lease: Lease) -> str:
    """A MAC headnode never leased: that of the address after `lease`, which is free."""
    head, last = lease.mac.rsplit(":", 1)
    return f"{head}:{int(last, 16) + 100:02x}"


def test_the_leased_mac_gets_exactly_its_address_and_no_other_mac_gets_one(served: Served) -> None:
    subnet = served.wire.subnet
    served.network(f"NETWORK_ADDRESS = {subnet}.0/24\nGATEWAY = {subnet}.1\n")
    first = served.networks.lease("lan", vm=3, host="web")
    second = served.networks.lease("lan", vm=4)
    status = served.serve()
    assert status["state"] == "serving" and status["pid"] == served.dnsmasq_pid()
    assert served.dhclient(first.mac) == first.ip
    assert served.udhcpc(second.mac) == second.ip
    started = time.monotonic()
    assert served.udhcpc(mac_of_unleased(second), wait=NO_OFFER_SECONDS) is None
    assert time.monotonic() - started < NO_OFFER_SECONDS + 5
    assert served.dhclient("02:00:99:99:99:99") is None
    granted = served.granted()
    assert f"{first.mac} {first.ip} web" in granted and f"{second.mac} {second.ip} one-4" in granted


DNS_QUERY = """
import socket, struct, sys
name, server, kind = sys.argv[1], sys.argv[2], int(sys.argv[3])
query = struct.pack(">HHHHHH", 0x4844, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\\0" + struct.pack(">HH", kind, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(query, (server, 53))
reply = s.recv(512)
answers = struct.unpack(">H", reply[6:8])[0]
size = 4 if kind == 1 else 16
print(socket.inet_ntop(socket.AF_INET if kind == 1 else socket.AF_INET6, reply[-size:]) if answers else "none")
"""


def resolve(served: Served, name: str, kind: int = 1) -> str:
    """What the network's dnsmasq answers for `name` (A: 1, AAAA: 28), asked from the client's side."""
    server = f"{served.wire.subnet}.1"
    done = subprocess.run(
        ["ip", "netns", "exec", served.wire.client, sys.executable, "-c", DNS_QUERY, name, server, str(kind)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_dns_answers_for_the_leases_names_and_forgets_a_released_one(served: Served) -> None:
    subnet = served.wire.subnet
    served.network(
        f"NETWORK_ADDRESS = {subnet}.0/24\nGATEWAY = {subnet}.1\nDOMAIN = lab.test\nGLOBAL_PREFIX = 2001:db8:7::\n"
    )
    web = served.networks.lease("lan", vm=3, host="web")
    served.serve()
    db = served.networks.lease("lan", vm=4, host="db")  # while it runs
    subprocess.run(["ip", "-n", served.wire.client, "addr", "add", f"{subnet}.200/24", "dev", "cl0"], check=True)
    assert resolve(served, "web.lab.test") == web.ip
    assert resolve(served, "db.lab.test") == db.ip
    assert resolve(served, "web.lab.test", 28) == web.ip6_global
    served.networks.release("lan", db.ip, force=True)
    assert resolve(served, "db.lab.test") == "none"
    assert resolve(served, "web.lab.test") == web.ip


def test_a_lease_made_while_dnsmasq_runs_is_served_without_restarting_it(served: Served) -> None:
    served.network(f"NETWORK_ADDRESS = {served.wire.subnet}.0/24\nGATEWAY = {served.wire.subnet}.1\n")
    served.serve()
    pid = served.dnsmasq_pid()
    leases = [served.networks.lease("lan", vm=10 + i) for i in range(3)]
    assert [served.udhcpc(x.mac) for x in leases] == [x.ip for x in leases]
    assert served.dnsmasq_pid() == pid


def test_a_released_address_is_forgotten_by_dnsmasq_at_once(served: Served) -> None:
    """No stale grant: the release drops dnsmasq's reservation (SIGHUP, not a restart) and its lease (dhcp_release),
    so the released MAC gets nothing and dnsmasq's database no longer holds the address."""
    served.network(f"NETWORK_ADDRESS = {served.wire.subnet}.0/24\nGATEWAY = {served.wire.subnet}.1\n")
    lease = served.networks.lease("lan", vm=3)
    kept = served.networks.lease("lan", vm=4)
    served.serve()
    pid = served.dnsmasq_pid()
    assert served.udhcpc(lease.mac) == lease.ip and served.udhcpc(kept.mac) == kept.ip
    assert lease.ip in served.granted()
    served.networks.release("lan", lease.ip, force=True)
    # dnsmasq handles the DHCPRELEASE as it comes, then rewrites its file: a moment, never a lease time
    wait_for(lambda: lease.ip not in (text := served.granted()) and kept.ip in text, 5, "dnsmasq to drop the grant")
    assert served.udhcpc(lease.mac, wait=NO_OFFER_SECONDS) is None
    assert served.udhcpc(kept.mac) == kept.ip
    assert served.dnsmasq_pid() == pid
    again = served.networks.lease("lan", vm=5, ip=lease.ip)
    assert served.dhclient(again.mac) == lease.ip


def test_an_address_given_to_a_new_mac_is_served_to_it_at_once(served: Served) -> None:
    """A network deleted and made again with other MACs for the same addresses (here a FIXED one): the address
    dnsmasq had granted to the old MAC goes to the new one at once, not when the old grant expires."""
    subnet = served.wire.subnet
    old = served.network(f"TYPE = FIXED\nLEASES = [ IP = {subnet}.20, MAC = 02:00:00:00:00:20 ]\nDHCP = yes\n")
    served.serve(old)
    lease = served.networks.lease(old, vm=1)
    assert served.udhcpc(lease.mac) == f"{subnet}.20"
    served.networks.delete(old, force=True)
    new = served.network(f"TYPE = FIXED\nLEASES = [ IP = {subnet}.20, MAC = 02:00:00:00:00:21 ]\n", name="lan2")
    served.serve(new)
    lease = served.networks.lease(new, vm=2)
    assert served.udhcpc("02:00:00:00:00:21") == f"{subnet}.20"
    assert served.udhcpc("02:00:00:00:00:20", wait=NO_OFFER_SECONDS) is None


def test_with_a_global_prefix_the_guest_takes_the_leases_ipv6_address_by_slaac(served: Served) -> None:
    served.network(
        f"NETWORK_ADDRESS = {served.wire.subnet}.0/24\nGATEWAY = {served.wire.subnet}.1\nGLOBAL_PREFIX = 2001:db8:7::\n"
    )
    lease = served.networks.lease("lan", vm=6)
    served.serve()
    served.wire.set_client_mac(lease.mac)
    deadline = time.monotonic() + 30
    addresses: list[str] = []
    while time.monotonic() < deadline and not addresses:
        shown = subprocess.run(
            ["ip", "-n", served.wire.client, "-j", "-6", "addr", "show", "dev", "cl0", "scope", "global"],
            capture_output=True,
            text=True,
        ).stdout
        addresses = [
            a["local"] for item in json.loads(shown or "[]") for a in item.get("addr_info", []) if "local" in a
        ]
        time.sleep(0.2)
    assert addresses == [lease.ip6_global]
    assert served.udhcpc(lease.mac) == lease.ip


def test_a_dnsmasq_that_dies_is_restarted_and_its_state_shown(served: Served) -> None:
    served.network(f"NETWORK_ADDRESS = {served.wire.subnet}.0/24\nGATEWAY = {served.wire.subnet}.1\n")
    lease = served.networks.lease("lan", vm=3)
    served.serve()
    first = served.dnsmasq_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: served.dnsmasq_pid() not in (None, first), 20, "dnsmasq to be restarted")
    assert served.udhcpc(lease.mac) == lease.ip
    shown = cli(served, "vnet", "show", "lan", "--json")
    assert shown["dhcp"] == {
        "interface": "srv0",
        "dns": True,
        "state": "serving",
        "pid": served.dnsmasq_pid(),
        "restarts": 1,
        "error": None,
    }
    (status,) = cli(served, "daemon", "status", "--json")["dhcp"]
    assert (status["network"], status["state"], status["restarts"]) == ("lan", "serving", 1)


def test_a_configuration_dnsmasq_would_refuse_never_reaches_it(served: Served) -> None:
    served.network(f"NETWORK_ADDRESS = {served.wire.subnet}.0/24\n")
    with pytest.raises(Exception, match="there is no interface nosuch0 here"):
        served.client.call("dhcp", network="lan", interface="nosuch0", dns=True)
    assert served.networks.get("lan").dhcp is None
    done = run_cli(served, "vnet", "dhcp", "lan", "--interface=-x")
    assert done.returncode == 2
    assert "'-x' is not an interface name (up to 15 letters, digits and ._:@-)" in done.stderr


def run_cli(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from tui.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HEADNODE_HOME": str(served.home.root)},
        cwd=ROOT,
        timeout=60,
    )


def cli(served: Served, *args: str) -> dict:
    done = run_cli(served, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
