"""What COMPRESS = zstd buys behind a slow link: CLONE with and without it, beside scp and `scp -C`, side by side.

The host is a network namespace behind a veth pair capped at `--link-mbit` both ways (tests/system/netns.py; needs
root; `--link-mbit 0`: not capped, a LAN faster than these CPUs). Three files: a sparse image of `--sparse-mib`
holding 5% random data in 1 MiB extents (bench_sparse.py's), `--size-mib` of log-like text (tests/system/
test_compression.py's), and `--size-mib` of random data, where compression should cost little. Each method runs
`--rounds` times in alternation after a sync; best and median times and their ratios to scp's, and the path the
engine reports it took.

    .venv/bin/python bench/bench_compress.py [--link-mbit 100] [--sparse-mib 1024] [--size-mib 128] [--rounds 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_sparse import sparse_image  # noqa: E402
from bench.bench_transfer import PATHS, clone, executor, run, timed  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.transfers.hosts import Hosts  # noqa: E402
from tests.system.netns import Lab  # noqa: E402
from tests.system.sshd import keygen  # noqa: E402
from tests.system.test_compression import log_like  # noqa: E402

MiB = 1 << 20
METHODS = ("scp", "scp -C", "ssh driver", "ssh driver, COMPRESS = zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link-mbit", type=float, default=100)
    parser.add_argument("--sparse-mib", type=int, default=1024)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="headnode-bench-") as scratch:
        root = Path(scratch)
        user = root / "user"
        (user / ".ssh").mkdir(parents=True, mode=0o700)
        key = user / ".ssh/id_ed25519"
        keygen(key)
        files = {
            "sparse image, 5% data": root / "sparse.img",
            "log-like text": log_like(root / "text.log", args.size_mib * MiB),
            "random": root / "random.bin",
        }
        sparse_image(files["sparse image, 5% data"], args.sparse_mib, 5)
        with open(files["random"], "wb") as out:
            for _ in range(args.size_mib):
                out.write(os.urandom(MiB))
        with Lab(root, 1, args.link_mbit or None, key.with_suffix(".pub")) as lab:
            host = lab.members[0]
            known = user / ".ssh/known_hosts"
            known.write_text(host.host_key_line + "\n")
            os.environ["HOME"] = str(user)
            os.environ.pop("SSH_AUTH_SOCK", None)
            home = Home(root / "home").ensure()
            hosts = Hosts(home)
            hosts.create(host.record())
            hosts.create(dataclasses.replace(host.record(), name="zstd01", compress="zstd"))
            engine = executor(home, accelerator=True)
            target, scp_target = host.vm_dir / "1/images/disk.0", host.vm_dir / "scp.img"
            scp = ["scp", "-q", "-i", str(key), "-o", f"UserKnownHostsFile={known}", "-P", str(host.port)]
            remote = f"{os.environ.get('USER', 'root')}@{host.address}:{scp_target}"
            times: dict[tuple[str, str], list[float]] = {}
            sizes = {what: source.stat().st_size for what, source in files.items()}
            try:
                for _ in range(args.rounds):
                    for what, source in files.items():
                        methods = {
                            "scp": lambda s=source: run([*scp, str(s), remote]),
                            "scp -C": lambda s=source: run([*scp, "-C", str(s), remote]),
                            "ssh driver": lambda s=source, w=what: clone(engine, s, host.name, target, w),
                            "ssh driver, COMPRESS = zstd": lambda s=source, w=what: clone(
                                engine, s, "zstd01", target, f"{w} zstd"
                            ),
                        }
                        for name, method in methods.items():
                            for stale in (scp_target, target):
                                stale.unlink(missing_ok=True)
                            os.sync()
                            time.sleep(1)
                            times.setdefault((what, name), []).append(timed(method))
            finally:
                engine[0].close()

    load = os.getloadavg()[0]
    link = f"a link capped at {args.link_mbit:g} Mbit/s" if args.link_mbit else "an uncapped veth link"
    print(f"behind {link}, {args.rounds} round(s), {os.cpu_count()} CPUs, load {load:.1f}")
    print(f"{'file':24} {'method':28} {'best s':>7} {'median':>7} {'ratio':>6}  path")
    for what, size in sizes.items():
        scp_best = min(times[(what, "scp")])
        for name in METHODS:
            taken = times[(what, name)]
            best, median = min(taken), statistics.median(taken)
            ratio = f"{best / scp_best:.2f}x"
            path = {"ssh driver": PATHS.get(what, ""), "ssh driver, COMPRESS = zstd": PATHS.get(f"{what} zstd", "")}
            label = f"{what} ({size / MiB:.0f} MiB)" if name == "scp" else ""
            print(f"{label:24} {name:28} {best:7.2f} {median:7.2f} {ratio:>6}  {path.get(name, '')}")


if __name__ == "__main__":
    main()
