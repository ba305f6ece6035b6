"""`/`: a one-line filter under a list or log; `enter` keeps it, `escape` clears it."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    """Hidden until `/`; posts `FilterInput.Changed`-style `Applied` messages as the admin types."""

    BINDINGS = [Binding("escape", "clear_filter", "Clear filter"), Binding("enter", "done", "Keep filter")]

    @dataclass
    class Applied(Message):
        text: str

    class Closed(Message):
        """The admin left the filter (its text stays applied)."""

    def __init__(self) -> None:
        super().__init__(placeholder="filter (enter keeps, escape clears)", id="filter", classes="hidden")
        self.cursor_blink = False
        self.can_focus = False  # hidden: screens must not auto-focus it

    def open(self) -> None:
        self.remove_class("hidden")
        self.can_focus = True
        self.focus()

    def _hide(self) -> None:
        self.add_class("hidden")
        self.can_focus = False

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Applied(event.value))

    def action_clear_filter(self) -> None:
        self.value = ""
        self._hide()
        self.post_message(self.Closed())

    def action_done(self) -> None:
        if not self.value:
            self._hide()
        self.post_message(self.Closed())
