"""Textual messages the console passes between its parts."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from textual.message import Message

from engine.transfers.progress import ActionProgress, ScriptProgress

# Event type -> what identifies "the same progress": a newer report of the same action (or script) makes an
# older one still queued pointless.
COALESCE_KEYS: dict[type, Callable[[Any], Hashable]] = {
    ActionProgress: lambda event: (event.run, event.line),
    ScriptProgress: lambda event: event.run,
}


class EngineEvent(Message):
    """An engine event, handed from whichever thread published it to the App's thread."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        # Only progress is coalesced: a log line or a state change must never be dropped.
        key_of = COALESCE_KEYS.get(type(self.event))
        return (
            key_of is not None
            and isinstance(message, EngineEvent)
            and type(message.event) is type(self.event)
            and key_of(message.event) == key_of(self.event)
        )
