"""CLONE of a 1 GiB file: the ssh driver against `scp`, the shared driver against `cp`, side by side.

Starts its own sshd on loopback (like the tests), makes a random file, and times each method `--rounds` times
in alternation (after a sync, so no method pays for another's write-back), reporting the best and the median
time of each, and the ratios of both to the baseline's. Goals: ssh driver <= 1.0x scp, shared driver <= 1.1x cp. The ssh
driver is measured on both of its paths, the OpenSSH accelerator and the paramiko raw channel, and with both
checksums (CHECKSUM = cksum, the default, and sha256); the last column is the path the engine reports it took.

    .venv/bin/python bench/bench_transfer.py [--size-mib 1024] [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.events import EventBus  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.language.script import parse_script  # noqa: E402
from engine.transfers.executor import Executor  # noqa: E402
from engine.transfers.hosts import Host, Hosts  # noqa: E402
from tests.system.sshd import keygen, start_sshd  # noqa: E402


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


PATHS: dict[str, str] = {}  # method -> how the engine says it copied ("stream, local to openssh", ...)


class LastDetail:
    """Subscriber keeping the detail of the last finished action: which path carried the bytes."""

    def __init__(self) -> None:
        self.text = ""

    def __call__(self, event) -> None:
        if event.kind == "action_finished":
            self.text = event.detail


def clone(runner: tuple[Executor, LastDetail], source: Path, host: str, dest: Path, method: str) -> None:
    executor, detail = runner
    fe = executor.home.config.frontend_name
    result = executor.submit(parse_script(f"CLONE {fe}:{source} {host}:{dest}\n", "bench")).wait()
    if result is None or not result.ok:
        raise SystemExit(f"CLONE failed: {result}")
    PATHS[method] = detail.text


def executor(home: Home, accelerator: bool) -> tuple[Executor, LastDetail]:
    bus, detail = EventBus(), LastDetail()
    bus.subscribe(detail)
    return Executor(home, bus, accelerator=accelerator), detail


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mib << 20

    with tempfile.TemporaryDirectory(prefix="headnode-bench-") as scratch:
        root = Path(scratch)
        user = root / "user"
        (user / ".ssh").mkdir(parents=True, mode=0o700)
        key = user / ".ssh/id_ed25519"
        keygen(key)
        host = start_sshd(root, "bench01", key.with_suffix(".pub"))
        try:
            known = user / ".ssh/known_hosts"
            known.write_text(host.host_key_line + "\n")
            os.environ["HOME"] = str(user)
            os.environ.pop("SSH_AUTH_SOCK", None)
            home = Home(root / "home").ensure()
            shared_dir = root / "shared"
            Hosts(home).create(host.record())
            Hosts(home).create(Host("nfs01", "shared", str(shared_dir)))
            (home.root / "tm").mkdir()
            conf = (ROOT / "data/tm/shared.conf").read_text()
            (home.root / "tm/unverified.conf").write_text(
                conf.replace("VERIFY_LOCAL_COPIES = yes", "VERIFY_LOCAL_COPIES = no")
            )
            ssh_conf = (ROOT / "data/tm/ssh.conf").read_text()
            (home.root / "tm/sha.conf").write_text(ssh_conf.replace("CHECKSUM = cksum", "CHECKSUM = sha256"))
            Hosts(home).create(dataclasses.replace(host.record("sha"), name="bench02"))
            Hosts(home).create(Host("nfs02", "unverified", str(shared_dir)))
            source = root / "source.img"
            with open(source, "wb") as out:
                for _ in range(size >> 20):
                    out.write(os.urandom(1 << 20))

            accelerated = executor(home, accelerator=True)
            plain = executor(home, accelerator=False)
            target = host.vm_dir / "1/images/disk.0"
            scp_target = host.vm_dir / "scp.img"
            scp = ["scp", "-q", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-P", str(host.port)]
            scp += ["--", str(source), f"{os.environ.get('USER', 'root')}@127.0.0.1:{scp_target}"]
            shared_target = shared_dir / "1/images/disk.0"
            cp_target = shared_dir / "cp.img"
            methods = {
                "scp (OpenSSH default cipher)": lambda: run(scp),
                "ssh driver, OpenSSH accelerator": lambda: clone(accelerated, source, "bench01", target, "accel"),
                "same, CHECKSUM = sha256": lambda: clone(accelerated, source, "bench02", target, "sha"),
                "ssh driver, paramiko raw channel": lambda: clone(plain, source, "bench01", target, "plain"),
                "cp": lambda: run(["cp", str(source), str(cp_target)]),
                "shared driver (verified)": lambda: clone(accelerated, source, "nfs01", shared_target, "nfs01"),
                "shared driver, VERIFY_LOCAL_COPIES=no": lambda: clone(
                    accelerated, source, "nfs02", shared_target, "nfs02"
                ),
            }
            shared_dir.mkdir()
            times: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.rounds):
                for name, method in methods.items():
                    for stale in (scp_target, cp_target, target, shared_target):
                        stale.unlink(missing_ok=True)
                    os.sync()  # earlier copies' dirty pages must not be written back during this one,
                    time.sleep(1)  # nor their blocks be discarded (this disk is mounted with `discard`)
                    times[name].append(timed(method))
            accelerated[0].close()
            plain[0].close()
        finally:
            host.process.terminate()
            host.process.wait(5)
            shutil.rmtree(root, ignore_errors=True)

    mb = size / 1e6
    load = os.getloadavg()[0]
    print(f"CLONE of {args.size_mib} MiB, {args.rounds} rounds, loopback sshd, {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"{'method':40} {'best s':>7} {'median':>7} {'MB/s':>6} {'ratio':>6} {'median':>6}  goal")
    scp = "scp (OpenSSH default cipher)"
    rows = [
        (scp, None, "", ""),
        ("ssh driver, OpenSSH accelerator", scp, "<= 1.0x scp", "accel"),
        ("same, CHECKSUM = sha256", scp, "", "sha"),
        ("ssh driver, paramiko raw channel", scp, "(fallback)", "plain"),
        ("cp", None, "", ""),
        ("shared driver (verified)", "cp", "(checksums source and copy)", "nfs01"),
        ("shared driver, VERIFY_LOCAL_COPIES=no", "cp", "<= 1.1x cp", "nfs02"),
    ]
    for name, baseline, goal, key in rows:
        best, median = min(times[name]), statistics.median(times[name])
        ratio = f"{best / min(times[baseline]):.2f}x" if baseline else ""
        median_ratio = f"{median / statistics.median(times[baseline]):.2f}x" if baseline else ""
        path = f"  [{PATHS[key]}]" if key else ""
        print(f"{name:40} {best:7.2f} {median:7.2f} {mb / best:6.0f} {ratio:>6} {median_ratio:>6}  {goal}{path}")


if __name__ == "__main__":
    main()
