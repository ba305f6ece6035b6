"""Shared fixtures: a fresh home per test, and the real `headnode` command."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.home import Home

ROOT = Path(__file__).resolve().parent.parent
HEADNODE = [sys.executable, "-c", "from tui.main import main; main()"]


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def headnode(home: Home):
    """Run the real CLI in a subprocess against the test's home."""

    def run(*args: str, input: str | None = None, cwd: Path | None = None, timeout: float = 120) -> Result:
        env = {**os.environ, "HEADNODE_HOME": str(home.root)}
        done = subprocess.run(
            [*HEADNODE, *args], capture_output=True, text=True, input=input, env=env, cwd=cwd or ROOT, timeout=timeout
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run
