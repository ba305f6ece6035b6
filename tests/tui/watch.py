"""What a console under test did and shows: the messages it notified, and a wait until it shows something."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from textual.app import App
from textual.pilot import Pilot

NOTIFIED: WeakKeyDictionary[App[Any], list[str]] = WeakKeyDictionary()  # filled by tests/tui/conftest.py


def notifications(app: App[Any]) -> list[str]:
    """The messages the app notified, oldest first."""
    return NOTIFIED.get(app, [])


async def until(pilot: Pilot, condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Let the console run until `condition()` holds: what shows after a worker, the home's poll or a timer."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"the console did not get there within {timeout:.0f} s"
        await pilot.pause(0.02)
