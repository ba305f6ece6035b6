"""The console and the CLI with the engine as a service: key press to painted screen while 20 and 100 transfers
run in the home's service, beside the same with the engine in the console's process (round 1's console);
`vnet lease` and `vm list` wall time with the service running them, beside no service at all.

    .venv/bin/python bench/bench_service.py [--presses N] [--transfers 20 100]

Goals (issue 13): key press p95 under 50 ms with 100 transfers in the service; `vnet lease` and `vm list` under
0.3 s wall with the service running. The transfers are real copies (CLONE over HTTP, written to a shared-driver
host) from a server in its own process that trickles each file at about 1 MB/s, so they all stay running while
the keys are pressed, whatever the disk's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_console import switch_screens  # noqa: E402
from bench.installed import HEADNODE, cpu_seconds, run_as_installed  # noqa: E402
from engine.core import Engine  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.language.script import Clone, Location, Script, Url  # noqa: E402

IMAGE_MB = 48  # per transfer, trickled at ~1 MB/s: ~48 s of copying

# A server in its own process (so it takes no GIL from the console): every GET trickles 64 KiB every 60 ms.
TRICKLE = """
import http.server, sys, time
BODY = bytes(range(256)) * 4096 * int(sys.argv[1])
class Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        try:
            for start in range(0, len(BODY), 1 << 16):
                self.wfile.write(BODY[start:start + (1 << 16)])
                time.sleep(0.06)
        except (BrokenPipeError, ConnectionResetError):
            pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def stand_aside() -> None:
    """The trickling server stands in for one on another machine: its own session, its autogroup at the lowest
    priority, so it does not take the cores from the console it is measured beside (in the service's case, the
    service's copies are niced the same way)."""
    with open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write("19")


def settle(limit: float = 60) -> None:
    """Before the CLI's wall times: the copies' gigabytes written back (each lease's fsync would wait behind them)
    and the services of the key-press cases gone, until the machine is idle (under a quarter of its cores busy
    over a second) or `limit` seconds have passed."""
    os.sync()

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds()
        time.sleep(1)
        if cpu_seconds() - before < 0.25 * (os.cpu_count() or 1):
            return


def make_home(root: Path, transfers: int) -> Home:
    from engine.transfers.hosts import Host

    home = Home(root).ensure()
    conf = home.config_path.read_text()  # the executor admits every one of them at once
    home.config_path.write_text(conf.replace("MAX_SCRIPTS = 15", f"MAX_SCRIPTS = {transfers}"))
    with Engine(home) as engine:
        engine.hosts.create(Host("fast", "shared", str(home.root / "fast-vms"), max_transfers=transfers))
    return home


def scripts(home: Home, url: str, transfers: int) -> list[Script]:
    target = home.root / "fast-vms"
    return [
        Script.of([Clone(Url(f"{url}/disk-{n}.img"), Location("fast", f"{target}/{n}/disk.0"))])
        for n in range(transfers)
    ]


async def key_latency(home: Home, url: str, transfers: int, service: bool, presses: int) -> list[float]:
    """Seconds from a number key to the new screen painted, while `transfers` copies run: in the service (the
    console as `headnode` opens it, the copies submitted by a CLI client), or in the console's own process."""
    from engine.service.client import ServiceClient
    from engine.transfers.executor import Executor
    from tui.app import HeadnodeApp

    app = HeadnodeApp(home, service=service)
    executor = None if service else Executor(home, app.bus)
    samples: list[float] = []

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        if service:
            client = ServiceClient(home, "bench")
            for script in scripts(home, url, transfers):
                client.call("submit", script=script.format(), source="bench")
        else:
            assert executor is not None

            def submit_all() -> list[Any]:
                return [executor.submit(script) for script in scripts(home, url, transfers)]

            app.run_engine("submit", submit_all)
        deadline = time.monotonic() + 60
        while len(app.transfers.running()) < transfers and time.monotonic() < deadline:
            await pilot.pause(0.05)
        await pilot.pause(1.0)  # every copy moving
        while len(samples) < presses and len(app.transfers.running()) >= transfers * 0.9:
            await switch_screens(app, samples)  # every press with at least 90% of the copies running
        for run in app.executor.active():
            run.cancel()
        while app.transfers.running():
            await pilot.pause(0.1)
    if executor is not None:
        executor.close()
    if not samples:
        raise SystemExit(f"the {transfers} transfers ended before a key was pressed: raise IMAGE_MB")
    return sorted(samples)


def wall(argv: list[str], home: Home, runs: int) -> float:
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def stop_service(home: Home) -> None:
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}
    subprocess.run([*HEADNODE, "daemon", "stop", "--force"], env=env, cwd=ROOT, capture_output=True, check=False)


def measured_apart(root: Path, url: str, transfers: int, service: bool, args: argparse.Namespace) -> list[float]:
    """key_latency in an interpreter of its own: the console's process before it (the baseline's copy threads
    still ending, its collector's state) must not weigh on the next measurement."""
    argv = [sys.executable, __file__, "--one", str(root), url, str(transfers), str(int(service))]
    done = subprocess.run([*argv, "--presses", str(args.presses)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def measure_one(root: Path, url: str, transfers: int, service: bool, presses: int) -> None:
    """The child of measured_apart: prints the sorted samples as JSON."""
    home = make_home(root, transfers)
    try:
        samples = asyncio.run(key_latency(home, url, transfers, service, presses))
    finally:
        stop_service(home)
    print(json.dumps(samples))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--transfers", type=int, nargs="*", default=[20, 100], help="running beside the presses")
    parser.add_argument("--one", nargs=4, metavar=("HOME", "URL", "TRANSFERS", "SERVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        root, url, transfers, service = args.one
        measure_one(Path(root), url, int(transfers), service == "1", args.presses)
        return
    server = subprocess.Popen(
        [sys.executable, "-c", TRICKLE, str(IMAGE_MB)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=stand_aside,
    )
    assert server.stdout is not None
    url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
    rows: list[tuple[str, float, str]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for transfers in args.transfers:
                for service in (False, True):
                    samples = measured_apart(Path(tmp) / f"keys-{transfers}-{service}", url, transfers, service, args)
                    where = "in the service" if service else "in the console's process (baseline)"
                    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
                    goal = "< 0.05 s" if service and transfers == 100 else ""
                    rows.append((f"key press, {transfers} transfers {where}, median", statistics.median(samples), ""))
                    rows.append((f"key press, {transfers} transfers {where}, p95 of {len(samples)}", p95, goal))
                    rows.append((f"key press, {transfers} transfers {where}, worst", samples[-1], ""))
            home = make_home(Path(tmp) / "cli", 1)
            settle()
            lease = [*HEADNODE, "vnet", "lease", "default"]
            listing = [*HEADNODE, "vm", "list"]
            rows.append(("vnet lease, no service (baseline)", wall(lease, home, args.runs), ""))
            rows.append(("vm list, no service (baseline)", wall(listing, home, args.runs), ""))
            env = {**os.environ, "HEADNODE_HOME": str(home.root)}
            subprocess.run([*HEADNODE, "transfers"], env=env, check=True, capture_output=True)  # starts the service
            rows.append(("vnet lease, service running", wall(lease, home, args.runs), "< 0.3 s"))
            rows.append(("vm list, service running", wall(listing, home, args.runs), "< 0.3 s"))
            stop_service(home)
    finally:
        server.terminate()
        server.wait()
    print(f"{'measure':<66} {'seconds':>8}  goal")
    for name, seconds, goal in rows:
        print(f"{name:<66} {seconds:>8.3f}  {goal}")


if __name__ == "__main__":
    run_as_installed()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    main()
