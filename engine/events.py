"""Events: how the engine reports to whoever listens (the console, the CLI, tests) without importing them.

Producers publish plain dataclass events; subscribers are callables run on the publishing thread, so they must
be quick (the console hands each event to its own thread). Producers throttle high-rate events themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from time import time
from typing import Any

Subscriber = Callable[[Any], None]


class Level(StrEnum):
    """How much a log line matters: the console marks each (I, W, E) and can show errors only."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class LogEvent:
    """A line for the engine's log."""

    message: str
    level: Level = Level.INFO
    source: str = "engine"
    at: float = field(default_factory=time)


class EventBus:
    """Fan-out of events to subscribers; safe to publish from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Any) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception as exc:  # one broken listener must not stop the engine or the others
                if not isinstance(event, LogEvent):
                    self.publish(LogEvent(f"event subscriber failed: {exc!r}", Level.ERROR))
