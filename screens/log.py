"""Log: the engine's events as they arrive, newest at the bottom, filterable with `/`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Log

from engine.events import LogEvent
from engine.presentation import clock_text
from tui.screen import HeadnodeScreen

LEVEL_MARK = {"info": "I", "warning": "W", "error": "E"}


def format_log_event(event: LogEvent) -> str:
    stamp = clock_text(event.at)
    return f"{stamp} [{LEVEL_MARK.get(event.level, '?')}] {event.source}: {event.message}"


class LogScreen(HeadnodeScreen):
    NAV = "log"
    TITLE = "Log"
    BINDINGS = [Binding("c", "clear_view", "Clear view"), Binding("e", "errors_only", "Errors only")]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.errors_only = False

    def body(self) -> Iterable[Widget]:
        yield Log(max_lines=5000, id="log-view")

    def main_widget(self) -> Widget:
        return self.query_one(Log)

    def on_mount(self) -> None:
        self.happ.engine_signal.subscribe(self, self._on_engine_event)
        self._render_all()

    def _shows(self, event: LogEvent) -> bool:
        if self.errors_only and event.level != "error":
            return False
        return not self.filter_text or self.filter_text in format_log_event(event).lower()

    def _render_all(self) -> None:
        view = self.query_one(Log)
        view.clear()
        view.write_lines([format_log_event(e) for e in self.happ.log_events if self._shows(e)])

    def _on_engine_event(self, event: Any) -> None:
        if isinstance(event, LogEvent) and self._shows(event):
            self.query_one(Log).write_line(format_log_event(event))

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.lower()
        self._render_all()

    def action_clear_view(self) -> None:
        self.happ.log_events.clear()
        self._render_all()

    def action_errors_only(self) -> None:
        self.errors_only = not self.errors_only
        self._render_all()
