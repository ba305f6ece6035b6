"""Every screen at 80x24 and 120x40, with fixed data in a home at a fixed path (sync: snap_compare runs its
own event loop). Update with `pytest tests/tui/test_snapshots.py --snapshot-update` after reading the report."""

from __future__ import annotations

import pytest

from engine.events import LogEvent
from tests.tui.conftest import SIZES
from tui.app import HeadnodeApp

SCREEN_KEYS = {"dashboard": "1", "vms": "2", "transfers": "3", "networks": "4", "hosts": "5", "log": "6"}


def log_some(app: HeadnodeApp) -> None:
    app.bus.publish(LogEvent("network default created (254 addresses)", source="vnet", at=3600.0))
    app.bus.publish(LogEvent("host local: VM directory not writable", level="warning", source="host", at=3661.0))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREEN_KEYS))
def test_screen(snap_compare, fixed_home, screen, size) -> None:
    app = HeadnodeApp(fixed_home)

    async def prepare(pilot) -> None:
        pilot.app.animation_level = "none"
        log_some(pilot.app)
        await pilot.pause()

    assert snap_compare(app, press=[SCREEN_KEYS[screen]], terminal_size=size, run_before=prepare)


def test_help(snap_compare, fixed_home) -> None:
    assert snap_compare(HeadnodeApp(fixed_home), press=["6", "question_mark"], terminal_size=(80, 24))


def test_read_only(snap_compare, fixed_home) -> None:
    assert snap_compare(HeadnodeApp(fixed_home, read_only=True), press=["6"], terminal_size=(80, 24))
