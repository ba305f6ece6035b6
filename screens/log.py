"""Log: the engine's events as they arrive, newest at the bottom, filterable with `/`; a long line wraps at the
screen's width (rewrapped when the terminal is resized), its continuation indented."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

from textual import events
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Log

from engine.events import Level, LogEvent
from engine.presentation import clock_text
from tui.screen import HeadnodeScreen

LEVEL_MARK = {Level.INFO: "I", Level.WARNING: "W", Level.ERROR: "E"}


def format_log_event(event: LogEvent) -> str:
    stamp = clock_text(event.at)
    return f"{stamp} [{LEVEL_MARK.get(event.level, '?')}] {event.source}: {event.message}"


CONTINUED = " " * len("00:00:00 [I] ")  # a wrapped line's continuation starts under the message


def wrapped(text: str, width: int) -> list[str]:
    """`text` as lines of at most `width` cells (all of it on one line while the width is not known yet)."""
    if width <= len(CONTINUED) + 10:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=CONTINUED, break_on_hyphens=False) or [""]


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
        self.call_after_refresh(self._render_all)  # again at the width the layout gave it

    def _shows(self, event: LogEvent) -> bool:
        if self.errors_only and event.level is not Level.ERROR:
            return False
        return not self.filter_text or self.filter_text in format_log_event(event).lower()

    def _lines(self, event: LogEvent) -> list[str]:
        view = self.query_one(Log)
        return wrapped(format_log_event(event), view.scrollable_content_region.width - 1)

    def _render_all(self) -> None:
        view = self.query_one(Log)
        view.clear()
        view.write_lines([line for e in self.happ.log_events if self._shows(e) for line in self._lines(e)])

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self._render_all)  # the log's new width is known once laid out

    def _on_engine_event(self, event: Any) -> None:
        if isinstance(event, LogEvent) and self._shows(event):
            self.query_one(Log).write_lines(self._lines(event))

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.lower()
        self._render_all()

    def action_clear_view(self) -> None:
        self.happ.log_events.clear()
        self._render_all()

    def action_errors_only(self) -> None:
        self.errors_only = not self.errors_only
        self._render_all()
