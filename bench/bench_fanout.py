"""Fan-out of one image to 8 (and 16) hosts against one `scp` to one host, side by side, every link capped.

Builds a lab (tests/system/netns.py; needs root): `--hosts` sshd hosts, each a network namespace on one bridge, the
head joined the same way, every veth capped at `--link-mbit` both ways with `tc tbf`. Makes a random image of
`--size-mib`, then in alternation for `--rounds` rounds: one `scp` of it to the first host, and `headnode cache
warm IMAGE HOST...` to every host (the command as an admin runs it: the home's service runs the fan-out, the CLI
follows it), the caches emptied before each. Reports best and median times, their
ratio to scp's (goal: at most 1.5x, aim 1.2x), and the fan-out's own estimate beside what it took (the first round
has none on a fresh home: it measures the rates the next estimate uses). Then, with the caches warm, a CLONE of
the image to each host through the engine's executor, with the bytes each sent over its link (a cache hit sends
none). `--also 16` repeats it all with 16 hosts.

    .venv/bin/python bench/bench_fanout.py [--hosts 8] [--also 16] [--size-mib 96] [--link-mbit 100] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_transfer import timed  # noqa: E402
from bench.installed import HEADNODE, cpu_seconds  # noqa: E402
from engine.events import EventBus  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.language.script import parse_script  # noqa: E402
from engine.transfers.cache.layout import CACHE_DIR_NAME  # noqa: E402
from engine.transfers.executor import Executor  # noqa: E402
from engine.transfers.hosts import Hosts  # noqa: E402
from engine.transfers.progress import ActionFinished  # noqa: E402
from tests.system.netns import Lab  # noqa: E402
from tests.system.sshd import keygen  # noqa: E402

MiB = 1 << 20
ESTIMATED = re.compile(r"fan-out to \d+ hosts took ([0-9.]+) s, (?:estimated ([0-9.]+) s|no estimate)")


def busy(fn, cpu: list[float]) -> float:
    """Time fn; append the CPU seconds the machine was busy meanwhile."""
    before = cpu_seconds()
    took = timed(fn)
    cpu.append(cpu_seconds() - before)
    return took


def image(path: Path, size_mib: int) -> None:
    with open(path, "wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(MiB))


def warmed(argv: list[str], env: dict[str, str]) -> str:
    """Run `cache warm --json`; what its events said, once every host fetched the image."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    outcomes = json.loads(done.stdout.splitlines()[-1]) if done.stdout.strip() else []
    if done.returncode != 0 or any(o["state"] != "fetched" for o in outcomes):
        raise SystemExit(f"cache warm failed: {done.stderr or outcomes}")
    return done.stdout


def clones(home: Home, lab: Lab, source: Path) -> list[tuple[str, float, str]]:
    """A CLONE to each host, one after another: (host, seconds, how it was done)."""
    bus = EventBus()
    details: list[str] = []
    bus.subscribe(lambda e: details.append(e.detail) if isinstance(e, ActionFinished) else None)
    executor = Executor(home, bus)
    fe = home.config.frontend_name
    done = []
    try:
        for member in lab.members:
            line = f"CLONE {fe}:{source} {member.name}:{member.vm_dir}/1/images/disk.0\n"
            started = time.perf_counter()
            result = executor.submit(parse_script(line, "bench")).wait()
            if result is None or not result.ok:
                raise SystemExit(f"CLONE to {member.name} failed: {result}")
            done.append((member.name, time.perf_counter() - started, details[-1] if details else ""))
    finally:
        executor.close()
    return done


def measure(args: argparse.Namespace, root: Path, hosts: int) -> None:
    user = root / "user"
    (user / ".ssh").mkdir(parents=True, mode=0o700, exist_ok=True)
    key = user / ".ssh/id_ed25519"
    if not key.exists():
        keygen(key)
    os.environ["HOME"] = str(user)
    os.environ.pop("SSH_AUTH_SOCK", None)
    lab_root = root / f"lab{hosts}"
    lab_root.mkdir()
    with Lab(lab_root, hosts, args.link_mbit, key.with_suffix(".pub")) as lab:
        known = user / ".ssh/known_hosts"
        known.write_text("".join(h.host_key_line + "\n" for h in lab.members))
        home = Home(root / f"home{hosts}").ensure()
        for member in lab.members:
            Hosts(home).create(member.record())
        source = root / "image.img"
        if not source.exists():
            image(source, args.size_mib)
        first = lab.members[0]
        scp = ["scp", "-q", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes"]
        scp += [str(source), f"root@{first.address}:{first.vm_dir}/scp.img"]
        env = {**os.environ, "HEADNODE_HOME": str(home.root)}
        warm = [*HEADNODE, "cache", "warm", str(source), *(m.name for m in lab.members), "--json"]
        plan = json.loads(subprocess.run([*warm, "--dry-run"], env=env, capture_output=True, check=True).stdout)
        chains = " | ".join(" -> ".join(chain["hosts"]) for chain in plan["fanout"]["chains"])
        subprocess.run([*HEADNODE, "transfers"], env=env, capture_output=True, check=True)  # starts the service
        scp_times: list[float] = []
        warm_times: list[float] = []
        scp_cpu: list[float] = []
        warm_cpu: list[float] = []
        estimates: list[tuple[float, float | None]] = []  # (took, estimated) as the fan-out's log says
        try:
            for _ in range(args.rounds):
                (first.vm_dir / "scp.img").unlink(missing_ok=True)
                os.sync()
                time.sleep(1)
                scp_times.append(busy(lambda: subprocess.run(scp, check=True), scp_cpu))
                for member in lab.members:
                    shutil.rmtree(member.vm_dir / CACHE_DIR_NAME, ignore_errors=True)
                os.sync()
                time.sleep(1)
                out: list[str] = []
                warm_times.append(busy(lambda: out.append(warmed(warm, env)), warm_cpu))  # noqa: B023
                said = ESTIMATED.search(out[0])
                if said is not None:
                    estimates.append((float(said[1]), float(said[2]) if said[2] else None))
        finally:
            subprocess.run([*HEADNODE, "daemon", "stop", "--force"], env=env, capture_output=True, check=False)
        hits = clones(home, lab, source)
    load = os.getloadavg()[0]
    best_scp, best_warm = min(scp_times), min(warm_times)
    median_scp, median_warm = statistics.median(scp_times), statistics.median(warm_times)
    print(
        f"\n{hosts} hosts, a {args.size_mib} MiB image, every link {args.link_mbit:g} Mbit/s, {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs, load {load:.1f}; chains: {chains}"
    )
    print(f"{'method':28} {'best s':>7} {'median':>7} {'ratio':>6} {'median':>6}  goal")
    print(
        f"{'scp to one host':28} {best_scp:7.2f} {median_scp:7.2f}                "
        f"machine busy {statistics.median(scp_cpu):.1f} CPU s"
    )
    print(
        f"{f'cache warm to all {hosts}':28} {best_warm:7.2f} {median_warm:7.2f} {best_warm / best_scp:5.2f}x "
        f"{median_warm / median_scp:5.2f}x  <= 1.5x scp (aim 1.2x); "
        f"machine busy {statistics.median(warm_cpu):.1f} CPU s"
    )
    for number, (took, (fanout_took, estimate)) in enumerate(zip(warm_times, estimates, strict=True), 1):
        said = f"estimated {estimate:.2f} s" if estimate is not None else "no estimate (no rates measured yet)"
        print(f"  round {number}: the command took {took:.2f} s, its fan-out {fanout_took:.2f} s, {said}")
    slowest = max(hits, key=lambda hit: hit[1])
    hit = sum("cache hit" in h[2] and "0 B over the link" in h[2] for h in hits)
    print(
        f"CLONE to each host after the fan-out: {sum(h[1] for h in hits):.2f} s for {len(hits)} "
        f"(slowest {slowest[0]}: {slowest[1]:.2f} s); cache hits sending 0 B over the link: {hit} of {len(hits)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--also", type=int, nargs="*", default=[])
    parser.add_argument("--size-mib", type=int, default=96)
    parser.add_argument("--link-mbit", type=float, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="headnode-bench-") as scratch:
        for hosts in [args.hosts, *args.also]:
            measure(args, Path(scratch), hosts)


if __name__ == "__main__":
    main()
