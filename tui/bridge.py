"""From the engine's EventBus (any thread) to the console (the App's thread).

Engine subscribers run on the publishing thread and must be quick: the bridge only posts a message, which is
thread-safe and never blocks a transfer on the UI. Superseded progress still queued is dropped (`can_replace`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import App

from engine.events import EventBus
from tui.messages import EngineEvent


class EventBridge:
    """Posts every event published on `bus` to `app` as an `EngineEvent` while started."""

    def __init__(self, bus: EventBus, app: App[Any]) -> None:
        self.bus = bus
        self.app = app
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(self._forward)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _forward(self, event: Any) -> None:
        self.app.post_message(EngineEvent(event))  # returns False once the app has closed: nothing to do then
