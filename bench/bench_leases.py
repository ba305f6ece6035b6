"""Lease store speed, side by side with plain TinyDB (default JSONStorage, one table).

    .venv/bin/python bench/bench_leases.py [--baseline-leases 2000]

Figures (goals from issue 3):
1. Leasing all 65,534 addresses of a class B network one call at a time through `Networks.lease`:
   overall leases/s (goal >= 5,000, aim past Kea's 11,700) and last-1,000 / first-1,000 rate (goal >= 0.8).
2. `headnode vnet lease NAME --count 65534` on an empty B network: wall time (goal < 3 s).
3. One `headnode vnet lease NAME` on a network with 60,000 leases in use: wall time (goal < 0.3 s).
4. Ratios (issue 12), each against its baseline in the same rounds, alternating, median of --rounds:
   `vnet lease NAME --count 60000` / a process writing the same 60,000 lease documents with one plain TinyDB
   `insert_multiple` (goal <= 2); one `vnet lease` with 60,000 in use / `headnode --help` (goal <= 2).

The plain-TinyDB baseline inserts one lease document per call into one table of a `TinyDB(path)`; its cost grows
with the table, so it is measured for the first --baseline-leases leases only and the full run is extrapolated
from a straight-line fit of the per-lease time (marked "extrapolated").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinydb import TinyDB  # noqa: E402

from bench.installed import HEADNODE, run_as_installed  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.networks.addresses import format_ipv4, ip_to_mac  # noqa: E402
from engine.networks.manager import Networks  # noqa: E402

B_SIZE = 65534


def new_home(template: str) -> Home:
    home = Home(tempfile.mkdtemp(prefix="bench-leases-")).ensure()
    path = home.root / "net.tmpl"
    path.write_text(template)
    Networks(home).create_from_file(path)
    return home


B_NET = "NAME = big\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = B\n"


def lease_doc(i: int) -> dict:
    ip = format_ipv4((10 << 24) + (1 << 16) + i)
    now = round(time.time(), 3)
    return {"ip": ip, "mac": ip_to_mac(ip), "vm": i, "state": "used", "note": "", "created": now, "updated": now}


def one_at_a_time(count: int, sync: bool = False) -> list[float]:
    """Times after each `Networks.lease` call (times[0] = start)."""
    home = new_home(B_NET)
    if sync:
        home.config_path.write_text("LEASE_SYNC = yes\n")
    nets = Networks(Home(home.root))
    times = [time.perf_counter()]
    for i in range(count):
        nets.lease("big", vm=i)
        times.append(time.perf_counter())
    return times


def baseline_one_at_a_time(count: int) -> list[float]:
    path = Path(tempfile.mkdtemp(prefix="bench-tinydb-")) / "leases.json"
    db = TinyDB(path)
    table = db.table("leases")
    times = [time.perf_counter()]
    for i in range(1, count + 1):
        table.insert(lease_doc(i))
        times.append(time.perf_counter())
    db.close()
    return times


def rate(times: list[float], start: int, end: int) -> float:
    return (end - start) / (times[end] - times[start])


def extrapolate_total(times: list[float], total: int) -> float:
    """Seconds for `total` inserts if the per-insert time keeps growing in a straight line as measured."""
    n = len(times) - 1
    per = [times[i + 1] - times[i] for i in range(n)]
    xs = range(n)
    mean_x, mean_y = (n - 1) / 2, sum(per) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, per, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    return intercept * total + slope * total * (total - 1) / 2


def wall(argv: list[str], home: Home, runs: int = 1) -> float:
    """Median wall seconds of running the real CLI."""
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}
    spent = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([*HEADNODE, *argv], env=env, capture_output=True, text=True, cwd=ROOT)
        spent.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{argv}: {done.stderr}")
    return statistics.median(spent)


BASELINE_ONE_LEASE = """
import sys, time
from tinydb import TinyDB, where
db = TinyDB(sys.argv[1])
table = db.table("leases")
used = {doc["ip"] for doc in table.all()}
ip = next(f"10.1.{i >> 8}.{i & 255}" for i in range(1, 65535) if f"10.1.{i >> 8}.{i & 255}" not in used)
table.insert({"ip": ip, "mac": "02:00:00:00:00:00", "vm": 1, "state": "used", "note": "", "created": 0, "updated": 0})
"""


def baseline_single_lease_wall(leases: int, runs: int) -> float:
    path = Path(tempfile.mkdtemp(prefix="bench-tinydb-")) / "leases.json"
    db = TinyDB(path)
    db.table("leases").insert_multiple(lease_doc(i) for i in range(1, leases + 1))
    db.close()
    spent = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", BASELINE_ONE_LEASE, str(path)], check=True)
        spent.append(time.perf_counter() - start)
    return statistics.median(spent)


def baseline_batch(count: int) -> float:
    path = Path(tempfile.mkdtemp(prefix="bench-tinydb-")) / "leases.json"
    start = time.perf_counter()
    db = TinyDB(path)
    db.table("leases").insert_multiple(lease_doc(i) for i in range(1, count + 1))
    db.close()
    return time.perf_counter() - start


BASELINE_BATCH = """
import sys, time
from tinydb import TinyDB
now = round(time.time(), 3)
docs = (
    {"ip": f"10.1.{i >> 8}.{i & 255}", "mac": f"02:00:0a:01:{i >> 8:02x}:{i & 255:02x}", "vm": 1, "state": "used",
     "note": "", "created": now, "updated": now}
    for i in range(1, int(sys.argv[2]) + 1)
)
db = TinyDB(sys.argv[1])
db.table("leases").insert_multiple(docs)
db.close()
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def ratios(rounds: int, count: int = 60000) -> list[tuple[str, float, float]]:
    """(figure, headnode's median wall seconds, the baseline's), each pair measured alternately in each round."""
    batch, batch_base, single, help_ = [], [], [], []
    for _ in range(rounds):
        home = new_home(B_NET)
        env = {**os.environ, "HEADNODE_HOME": str(home.root)}
        path = Path(tempfile.mkdtemp(prefix="bench-tinydb-")) / "leases.json"
        batch_base.append(timed([sys.executable, "-c", BASELINE_BATCH, str(path), str(count)]))
        batch.append(timed([*HEADNODE, "vnet", "lease", "big", "--count", str(count), "--vm", "1"], env))
        for _ in range(3):
            help_.append(timed([*HEADNODE, "--help"], env))
            single.append(timed([*HEADNODE, "vnet", "lease", "big", "--vm", "2"], env))
    return [
        (
            f"vnet lease --count {count:,} / one insert_multiple",
            statistics.median(batch),
            statistics.median(batch_base),
        ),
        (f"one vnet lease at {count:,} in use / headnode --help", statistics.median(single), statistics.median(help_)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-leases", type=int, default=2000, help="plain-TinyDB leases measured (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each single-command timing (median)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the ratio figures (median)")
    parser.add_argument("--ratios-only", action="store_true", help="measure only the ratios (4.)")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {sys.platform}, load {os.getloadavg()[0]:.1f}")
    ratio_rows = ratios(args.rounds)
    for figure, ours, base in ratio_rows:
        print(f"4. {figure}: {ours:.3f} s / {base:.3f} s = {ours / base:.2f} (goal <= 2)")
    if args.ratios_only:
        return

    ours = one_at_a_time(B_SIZE)
    overall = B_SIZE / (ours[-1] - ours[0])
    first, last = rate(ours, 0, 1000), rate(ours, B_SIZE - 1000, B_SIZE)
    synced = one_at_a_time(2000, sync=True)
    n = args.baseline_leases
    base = baseline_one_at_a_time(n)
    base_total = extrapolate_total(base, B_SIZE)

    home = new_home(B_NET)
    batch_wall = wall(["vnet", "lease", "big", "--count", str(B_SIZE), "--vm", "1"], home)
    base_batch = baseline_batch(B_SIZE)

    home = new_home(B_NET)
    wall(["vnet", "lease", "big", "--count", "60000", "--vm", "1"], home)
    single_wall = wall(["vnet", "lease", "big", "--vm", "2"], home, args.runs)
    journal_home = new_home(B_NET)  # 60,000 one-call leases: part of them still in the journal
    nets = Networks(journal_home)
    for i in range(60000):
        nets.lease("big", vm=i)
    single_wall_journal = wall(["vnet", "lease", "big", "--vm", "2"], journal_home, args.runs)
    base_single = baseline_single_lease_wall(60000, max(1, args.runs // 2))
    help_wall = wall(["--help"], home, args.runs)

    base_first, base_last = rate(base, 0, min(1000, n)), rate(base, n - min(1000, n), n)
    rows = [
        ("1. 65,534 leases, one call each: leases/s", f"{overall:,.0f}", f"{B_SIZE / base_total:,.1f} (extrapolated)"),
        ("   first 1,000 leases/s", f"{first:,.0f}", f"{base_first:,.0f}"),
        ("   last 1,000 leases/s", f"{last:,.0f}", f"{base_last:,.0f} (leases {n - min(1000, n) + 1}-{n} only)"),
        ("   last / first", f"{last / first:.2f}", f"{base_last / base_first:.2f}"),
        ("   total time", f"{ours[-1] - ours[0]:.1f} s", f"{base_total / 60:,.0f} min (extrapolated)"),
        ("   with LEASE_SYNC=yes, first 2,000 leases/s", f"{rate(synced, 0, 2000):,.0f}", "-"),
        ("2. vnet lease --count 65534, wall", f"{batch_wall:.2f} s", f"{base_batch:.2f} s (one insert_multiple)"),
        ("3. one vnet lease at 60,000 in use, wall", f"{single_wall:.3f} s", f"{base_single:.3f} s (python + TinyDB)"),
        ("   same, 60,000 leased one call at a time", f"{single_wall_journal:.3f} s", "-"),
        ("headnode --help, wall", f"{help_wall:.3f} s", "-"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    header = ("figure", "headnode", f"plain TinyDB (measured {n:,} one-call leases)")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}")


if __name__ == "__main__":
    run_as_installed()
    main()
