"""CLONE of a mostly empty disk image over the ssh driver against `scp` of the same file, side by side.

Starts its own sshd on loopback (like the tests), makes a sparse file of `--size-mib` holding `--data-percent`
random data in 1 MiB extents spread evenly (as an installed system in a fresh raw image), and times each method
`--rounds` times in alternation after a sync, reporting best and median times and their ratios to scp's. Goal:
the ssh driver takes at most 0.15x scp's time; the last column is the path the engine reports it took. With
`--link-mbit N` the host is a network namespace behind a veth pair capped at N Mbit/s both ways (tests/system/
netns.py; needs root), instead of an sshd on loopback.

    .venv/bin/python bench/bench_sparse.py [--size-mib 4096] [--data-percent 5] [--rounds 3] [--link-mbit 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_transfer import PATHS, clone, executor, run, timed  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.transfers.hosts import Hosts  # noqa: E402
from tests.system.netns import Lab  # noqa: E402
from tests.system.sshd import SshHost, keygen, start_sshd  # noqa: E402

MiB = 1 << 20


def sparse_image(path: Path, size_mib: int, data_percent: float) -> int:
    """Write the image; the bytes of data it holds."""
    extents = max(1, int(size_mib * data_percent / 100))
    stride = size_mib // extents
    with open(path, "wb") as out:
        out.truncate(size_mib * MiB)
        for index in range(extents):
            out.seek(index * stride * MiB)
            out.write(os.urandom(MiB))
    return extents * MiB


def measure(args: argparse.Namespace, root: Path, key: Path, host: SshHost) -> tuple[int, dict[str, list[float]]]:
    """The bytes of data in the image, and each method's times."""
    user = key.parent.parent
    known = user / ".ssh/known_hosts"
    known.write_text(host.host_key_line + "\n")
    os.environ["HOME"] = str(user)
    os.environ.pop("SSH_AUTH_SOCK", None)
    home = Home(root / "home").ensure()
    Hosts(home).create(host.record())
    source = root / "sparse.img"
    data = sparse_image(source, args.size_mib, args.data_percent)
    accelerated = executor(home, accelerator=True)
    plain = executor(home, accelerator=False)
    target = host.vm_dir / "1/images/disk.0"
    scp_target = host.vm_dir / "scp.img"
    scp = ["scp", "-q", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-P", str(host.port)]
    scp += [str(source), f"{os.environ.get('USER', 'root')}@{host.address}:{scp_target}"]
    methods = {
        "scp": lambda: run(scp),
        "ssh driver, OpenSSH accelerator": lambda: clone(accelerated, source, host.name, target, "accel"),
        "ssh driver, paramiko raw channel": lambda: clone(plain, source, host.name, target, "plain"),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    try:
        for _ in range(args.rounds):
            for name, method in methods.items():
                for stale in (scp_target, target):
                    stale.unlink(missing_ok=True)
                os.sync()
                time.sleep(1)
                times[name].append(timed(method))
    finally:
        accelerated[0].close()
        plain[0].close()
    return data, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=4096)
    parser.add_argument("--data-percent", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-mbit", type=float, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="headnode-bench-") as scratch:
        root = Path(scratch)
        (root / "user/.ssh").mkdir(parents=True, mode=0o700)
        key = root / "user/.ssh/id_ed25519"
        keygen(key)
        if args.link_mbit:
            with Lab(root, 1, args.link_mbit, key.with_suffix(".pub")) as lab:
                data, times = measure(args, root, key, lab.members[0])
            link = f"a link capped at {args.link_mbit:g} Mbit/s"
        else:
            host = start_sshd(root, "bench01", key.with_suffix(".pub"))
            try:
                data, times = measure(args, root, key, host)
            finally:
                host.process.terminate()
                host.process.wait(5)
            link = "loopback sshd"

    load = os.getloadavg()[0]
    print(
        f"CLONE of a {args.size_mib} MiB image holding {data / MiB:.0f} MiB of data, {args.rounds} rounds, "
        f"{link}, {os.cpu_count()} CPUs, load {load:.1f}"
    )
    print(f"{'method':36} {'best s':>7} {'median':>7} {'ratio':>6} {'median':>6}  goal")
    for name, key, goal in (
        ("scp", "", ""),
        ("ssh driver, OpenSSH accelerator", "accel", "<= 0.15x scp"),
        ("ssh driver, paramiko raw channel", "plain", "(fallback)"),
    ):
        best, median = min(times[name]), statistics.median(times[name])
        ratio = "" if name == "scp" else f"{best / min(times['scp']):.2f}x"
        median_ratio = "" if name == "scp" else f"{median / statistics.median(times['scp']):.2f}x"
        path = f"  [{PATHS[key]}]" if key else ""
        print(f"{name:36} {best:7.2f} {median:7.2f} {ratio:>6} {median_ratio:>6}  {goal}{path}")


if __name__ == "__main__":
    main()
