"""The question every destructive action asks first, saying exactly what it will do."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmScreen(ModalScreen[bool]):
    """`title`, then every line of what will happen; `y` does it, `n` or `escape` does not."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: thick $error; background: $surface; padding: 0 1;
    }
    ConfirmScreen #confirm-title { text-style: bold; }
    ConfirmScreen VerticalScroll { height: auto; max-height: 16; }
    ConfirmScreen #confirm-keys { color: $text-muted; margin-top: 1; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes, do it"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, details: Sequence[str], action: str = "Do it") -> None:
        super().__init__()
        self.title_text = title
        self.details = list(details)
        self.action = action

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="confirm-title", markup=False)
            with VerticalScroll():
                yield Static("\n".join(self.details), id="confirm-details", markup=False)
            yield Static(f"y: {self.action}    n / escape: cancel", id="confirm-keys", markup=False)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
