"""The host image cache: a second CLONE of an image to a host against the first, and a miss against today's
uncached CLONE, side by side in one run.

One sshd host in a network namespace behind a veth pair capped at `--link-mbit` (200) Mbit/s both ways
(tests/system/netns.py; needs root), known to the home twice: as `cached` (the ssh driver's default, CACHE = yes)
and as `plain` (--cache-max-mb 0: no cache), the same sshd, link and VM directory. An image of `--size-mib` (256)
random MiB (nothing to skip or compress). Each round, in turn: the uncached CLONE to `plain`; the first CLONE to
`cached` with its cache emptied and the front end's checksum memo removed (a miss that reads the image for its
checksum too); the second CLONE to `cached` (a hit). Goals: hit <= 0.1x the first, miss <= 1.05x uncached.

    sudo .venv/bin/python bench/bench_cache.py [--size-mib 256] [--rounds 3] [--link-mbit 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_transfer import PATHS, clone, executor, timed  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.transfers.cache.layout import CACHE_DIR_NAME  # noqa: E402
from engine.transfers.cache.memo import MEMO_NAME  # noqa: E402
from engine.transfers.hosts import Hosts  # noqa: E402
from tests.system.netns import Lab  # noqa: E402
from tests.system.sshd import keygen  # noqa: E402

MiB = 1 << 20


def measure(args: argparse.Namespace, root: Path, key: Path, lab: Lab) -> dict[str, list[float]]:
    node = lab.members[0]
    user = key.parent.parent
    (user / ".ssh/known_hosts").write_text(node.host_key_line + "\n")
    os.environ["HOME"] = str(user)
    os.environ.pop("SSH_AUTH_SOCK", None)
    home = Home(root / "home").ensure()
    hosts = Hosts(home)
    hosts.create(replace(node.record(), name="cached"))
    hosts.create(replace(node.record(), name="plain", cache_max_mb=0))
    source = root / "image.img"
    with open(source, "wb") as out:
        for _ in range(args.size_mib):
            out.write(os.urandom(MiB))
    runner = executor(home, accelerator=True)
    cache = node.vm_dir / CACHE_DIR_NAME
    targets = {name: node.vm_dir / f"{name}/disk.0" for name in ("plain", "first", "second")}
    times: dict[str, list[float]] = {"uncached": [], "first": [], "second": []}
    try:
        for _ in range(args.rounds):
            for target in targets.values():
                target.unlink(missing_ok=True)
            shutil.rmtree(cache, ignore_errors=True)
            (home.cache / MEMO_NAME).unlink(missing_ok=True)
            for name, host, target in (
                ("uncached", "plain", targets["plain"]),
                ("first", "cached", targets["first"]),
                ("second", "cached", targets["second"]),
            ):
                os.sync()
                time.sleep(1)
                times[name].append(timed(partial(clone, runner, source, host, target, name)))
    finally:
        runner[0].close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--link-mbit", type=float, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="headnode-bench-") as scratch:
        root = Path(scratch)
        (root / "user/.ssh").mkdir(parents=True, mode=0o700)
        key = root / "user/.ssh/id_ed25519"
        keygen(key)
        with Lab(root, 1, args.link_mbit, key.with_suffix(".pub")) as lab:
            times = measure(args, root, key, lab)
    load = os.getloadavg()
    print(
        f"CLONE of a {args.size_mib} MiB random image through a host's cache, {args.rounds} rounds, a link capped at "
        f"{args.link_mbit:g} Mbit/s, {os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print(f"{'CLONE':40} {'best s':>7} {'median':>7}  ratio (best, median)  goal")
    rows = (
        ("uncached (today's CLONE, no cache)", "uncached", None, ""),
        ("first, a miss (fetch into the cache)", "first", "uncached", "<= 1.05x uncached"),
        ("second, a hit (copied on the host)", "second", "first", "<= 0.1x first"),
    )
    for label, name, base, goal in rows:
        best, median = min(times[name]), statistics.median(times[name])
        ratio = ""
        if base:
            ratio = f"{best / min(times[base]):.3f}x {median / statistics.median(times[base]):.3f}x"
        print(f"{label:40} {best:7.2f} {median:7.2f}  {ratio:20} {goal}  [{PATHS[name]}]")


if __name__ == "__main__":
    main()
