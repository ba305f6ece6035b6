"""The lease store with DHCP on, side by side with DHCP off, and against rewriting one whole hostsfile.

    sudo .venv/bin/python bench/bench_dhcp.py [--leases 65533]

Runs itself inside a network namespace of its own (one end of a veth pair carries the network), with a real dnsmasq
serving a /16 network through the engine's supervisor, as the service runs it. Figures:
1. Leasing --leases addresses one `Networks.lease` call at a time with DHCP off, then (the same network made
   again) with dnsmasq serving it: leases/s and the ratio.
2. What a lease would cost if it rewrote one hostsfile of every reservation (render, write, rename: the single
   `--dhcp-hostsfile` design), at the same size, against a lease with DHCP on.
3. One release at that size with DHCP on (the /24 rewritten, SIGHUP, dhcp_release), and dnsmasq's memory (RSS)
   with a full /16 and with a /24.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.events import EventBus  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.networks.exports import hostsfile_line  # noqa: E402
from engine.networks.manager import Networks  # noqa: E402
from engine.service.dhcp import DhcpSupervisor  # noqa: E402

NET = "NAME = {name}\nBRIDGE = bench0\nNETWORK_ADDRESS = 10.77.0.0/16\nGATEWAY = 10.77.0.1\n"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def lease_all(networks: Networks, name: str, count: int) -> tuple[float, float]:
    """Wall time, and this process's CPU time (dnsmasq's own work, on the same cores, is in the wall time only)."""
    started, cpu = time.perf_counter(), time.process_time()
    for vm in range(count):
        networks.lease(name, vm=vm)
    return time.perf_counter() - started, time.process_time() - cpu


def inside(count: int) -> None:
    subprocess.run(["ip", "link", "add", "bench0", "type", "veth", "peer", "name", "bench1"], check=True)
    subprocess.run(["ip", "addr", "add", "10.77.0.1/16", "dev", "bench0"], check=True)
    for device in ("bench0", "bench1"):
        subprocess.run(["ip", "link", "set", device, "up"], check=True)
    # tmpfs, as /run is on a head node (file creation on this machine's ext4 /tmp costs 5x more)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-dhcp-run-", dir="/dev/shm"))
    run_dir.chmod(0o755)
    home = Home(tempfile.mkdtemp(prefix="bench-dhcp-")).ensure()
    with open(home.config_path, "a") as conf:
        conf.write(f'\nDHCP_RUN_DIR = "{run_dir}"\n')
    networks = Networks(home)
    supervisor = DhcpSupervisor(networks, EventBus())
    try:
        for name in ("off", "on"):
            (home.root / f"{name}.net").write_text(NET.format(name=name))
        networks.create_from_file(home.root / "off.net")
        off, off_cpu = lease_all(networks, "off", count)
        networks.delete("off", force=True)
        networks.create_from_file(home.root / "on.net")
        served = supervisor.serve("on", "bench0", dns=True)
        on, on_cpu = lease_all(networks, "on", count)
        print(f"load {os.getloadavg()[0]:.1f}, {count} leases one call each")
        print(f"1. DHCP off: {count / off:,.0f} leases/s ({off / count * 1e6:.0f} µs each)")
        print(f"   DHCP on:  {count / on:,.0f} leases/s ({on / count * 1e6:.0f} µs each): {on / off:.2f}x")
        print(f"   this process's CPU per lease: {off_cpu / count * 1e6:.0f} µs off, {on_cpu / count * 1e6:.0f} µs on")
        leases = networks.leases("on")
        target = run_dir / "whole-hostsfile"
        rounds = 5
        started = time.perf_counter()
        for _ in range(rounds):
            tmp = target.with_name(".whole.tmp")
            tmp.write_text("".join(hostsfile_line(x) for x in leases))
            os.replace(tmp, target)
        rewrite = (time.perf_counter() - started) / rounds
        print(
            f"2. rewriting one hostsfile of {len(leases)} lines: {rewrite * 1e3:.1f} ms, "
            f"{rewrite / (on / count):.0f}x a lease with DHCP on"
        )
        started = time.perf_counter()
        networks.release("on", leases[len(leases) // 2].ip, force=True)
        print(f"3. one release at {len(leases)} with DHCP on: {(time.perf_counter() - started) * 1e3:.1f} ms")
        time.sleep(1)
        print(f"   dnsmasq RSS with {len(leases)} reservations: {rss_kib(served['pid']) / 1024:.1f} MiB")
        supervisor.stop_all()
        networks.delete("on", force=True)
        (home.root / "small.net").write_text(NET.format(name="small").replace("/16", "/24"))
        networks.create_from_file(home.root / "small.net")
        networks.lease_many("small", 253, vm=1)
        small = supervisor.serve("small", "bench0", dns=True)
        time.sleep(0.5)
        print(f"   dnsmasq RSS with 253 reservations: {rss_kib(small['pid']) / 1024:.1f} MiB")
    finally:
        supervisor.stop_all()
        networks.close()
        shutil.rmtree(home.root, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=65533, help="leases made (default: all of a /16 but its gateway)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.leases)
        return
    if os.geteuid() != 0:
        sys.exit("bench_dhcp.py needs root (a network namespace, and dnsmasq's port 67)")
    netns = f"hnbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        command = [sys.executable, __file__, "--inside", "--leases", str(args.leases)]
        subprocess.run(["ip", "netns", "exec", netns, *command], check=True)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    main()
