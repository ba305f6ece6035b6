"""Wall time of headless `headnode` commands, beside the bare interpreter start-up they cannot beat.

    .venv/bin/python bench/bench_cli.py [--runs N]

Goal (issue 2): `headnode --help` and every engine sub-command under 0.3 s wall.
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

from bench.installed import run_as_installed  # noqa: E402
from engine.defaults import sample_templates  # noqa: E402

HEADNODE = str(Path(sys.executable).parent / "headnode")
GOLDEN = ROOT / "tests" / "engine" / "golden"


def wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HEADNODE_HOME": home}
        commands = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            "headnode --help": [HEADNODE, "--help"],
            "headnode plan (example a)": [
                HEADNODE,
                "plan",
                str(GOLDEN / "vm12.tmpl"),
                "--vm",
                "12",
                "--host",
                "host01",
                "--vm-dir",
                "/v",
            ],
            "headnode script check": [HEADNODE, "script", "check", str(GOLDEN / "all_actions.script")],
            "headnode host list": [HEADNODE, "host", "list"],
            "headnode vnet list": [HEADNODE, "vnet", "list"],
            "headnode vnet lease default --vm 1": [HEADNODE, "vnet", "lease", "default", "--vm", "1"],
            "headnode vm list": [HEADNODE, "vm", "list"],
        }
        # A home with its embedded default (host local, network default) and one VM.
        template = str(sample_templates()["ttylinux.tmpl"])
        subprocess.run([HEADNODE, "vm", "create", template], env=env, stdout=subprocess.DEVNULL, check=True)
        print(f"{'command':40} {'median wall (s)':>16}   ({runs} runs)")
        for label, argv in commands.items():
            print(f"{label:40} {wall(argv, env, runs):16.3f}")


if __name__ == "__main__":
    run_as_installed()
    main()
