"""Console test fixtures: times in UTC, a home shown under one name for deterministic snapshots, and every
notification recorded (tests/tui/watch.py reads them)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.home import Home
from tests.tui.watch import NOTIFIED
from tui.app import HeadnodeApp

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
def fixed_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A fresh home of this test's own that the console shows as /var/lib/headnode, so that anything showing its
    path is the same in every run, and runs at once do not share it."""
    monkeypatch.setattr(HeadnodeApp, "SHOWN_HOME", "/var/lib/headnode")
    return Home(tmp_path / "home").ensure()


@pytest.fixture(autouse=True)
def record_notifications(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message a console notifies is recorded as well as shown (Textual keeps only the unexpired ones, in a
    private attribute)."""
    notify = HeadnodeApp.notify

    def recorded(app: HeadnodeApp, message: str, **options: Any) -> None:
        NOTIFIED.setdefault(app, []).append(message)
        notify(app, message, **options)

    monkeypatch.setattr(HeadnodeApp, "notify", recorded)
