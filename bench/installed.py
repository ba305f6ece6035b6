"""Benchmarks time headnode as an installed copy runs: from its bytecode.

`pip install` compiles a package's modules once; a process started with PYTHONDONTWRITEBYTECODE (as some shells
and CI images set it) compiles every module it imports from source on every start instead, which tripled a
command's wall time here. Each benchmark's children inherit this process's environment.
"""

from __future__ import annotations

import compileall
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADNODE = [sys.executable, "-c", "from tui.main import main; main()"]  # the command, from this tree


def cpu_seconds() -> float:
    """The machine's busy CPU time so far, every process's (a benchmark's hosts and services share its cores)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    return sum(int(f) for f in fields[:3] + fields[5:8]) / os.sysconf("SC_CLK_TCK")


def run_as_installed() -> None:
    """Compile the project's modules once and let every process started from here use the bytecode."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    for package in ("engine", "tui", "screens"):
        compileall.compile_dir(ROOT / package, quiet=1)
