"""What the journal costs a long script: dummy lines through the executor, beside the bare minimum of a durable
journal (one append and one fsync per line, in a plain file), at two lengths.

    .venv/bin/python bench/bench_journal.py [--lines 1000] [--rounds 3]

Goal (issue 11): the cost per line does not grow with the script (a run rewrote and synced the whole headnode.db
at every line's start and end: 4,000 dummy lines took 871 s). Printed: seconds for N and 4N lines, the ratio
4N / N (4 is linear), and each against the baseline of the same length.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from engine.events import EventBus
from engine.home import Home
from engine.language.script import parse_script
from engine.transfers.executor import Executor
from engine.transfers.hosts import Host, Hosts


def headnode_run(lines: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        home = Home(Path(folder) / "home").ensure()
        Hosts(home).create(Host("d1", "dummy", "/vms"))
        executor = Executor(home, EventBus())
        script = parse_script("".join(f"MKSWAP 1 d1:/vms/1/images/disk.{i}\n" for i in range(lines)), "bench.script")
        start = time.perf_counter()
        result = executor.submit(script, 1).wait(3600)
        took = time.perf_counter() - start
        executor.close()
        assert result is not None and result.ok, result
        return took


def baseline(lines: int) -> float:
    """One JSON line appended and synced per line: what any journal that survives a crash pays."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        with open(Path(folder) / "journal", "ab") as out:
            for position in range(lines):
                out.write(b'{"position":%d,"outcome":"done"}\n' % position)
                out.flush()
                os.fsync(out.fileno())
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):  # alternating, so a change in the machine's load hits both alike
        for lines in (args.lines, 4 * args.lines):
            times.setdefault(("headnode", lines), []).append(headnode_run(lines))
            times.setdefault(("baseline", lines), []).append(baseline(lines))
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"load average {os.getloadavg()[0]:.1f}")
    for lines in (args.lines, 4 * args.lines):
        run, base = median[("headnode", lines)], median[("baseline", lines)]
        print(f"{lines} dummy lines: headnode run {run:.2f} s, baseline {base:.2f} s ({run / base:.2f}x)")
    growth = median[("headnode", 4 * args.lines)] / median[("headnode", args.lines)]
    print(f"4x the lines took {growth:.2f}x the time (4 is linear)")


if __name__ == "__main__":
    main()
