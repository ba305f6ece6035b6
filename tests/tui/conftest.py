"""Console test helpers: apps over a real home, and a fixed home for deterministic snapshots."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.home import Home

SIZES = [(80, 24), (120, 40)]


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Times on screen (log lines) in UTC, whatever the machine's zone."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def fixed_home() -> Iterator[Home]:
    """A fresh home at a fixed path, so anything showing the path is the same in every run. Test runs on one
    machine take turns with it (a lock beside it): another run's fixture would empty it under this one."""
    root = Path(tempfile.gettempdir()) / "headnode-snapshot-home"
    with open(f"{root}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(root, ignore_errors=True)
        yield Home(root).ensure()
        shutil.rmtree(root, ignore_errors=True)


def notifications(app) -> list[str]:
    """The notifications the app raised (run_test records them without drawing)."""
    return [n.message for n in app._notifications]
