"""`?`: every key of the current screen, with what it does and whether it is available now (a read-only
console's changing keys are listed too, marked read-only)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static


def key_label(key: str) -> str:
    return {"question_mark": "?", "slash": "/", "escape": "esc"}.get(key, key)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 70; max-width: 95%; height: 90%; border: thick $primary; background: $surface; }
    HelpScreen DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, screen: Screen, title: str, read_only: Sequence[Binding] = ()) -> None:
        super().__init__()
        # Read now: once this modal is on top, the screen below has no active bindings.
        # The screen's own keys first, then the app's, then the focused widget's (cursor keys and the like).
        rank = {screen: 0, screen.app: 1}
        bindings = sorted(screen.active_bindings.items(), key=lambda item: rank.get(item[1].node, 2))
        self.rows = [
            (key_label(key), active.binding.description or active.binding.action, "" if active.enabled else "disabled")
            for key, active in bindings
        ]
        # Changing actions of a read-only console: not in the footer, but named here with the reason.
        self.rows += [(key_label(b.key), b.description, "read-only") for b in read_only]
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Keys: {self.title_text}   (escape closes)", markup=False)
            table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True)
            table.add_columns("Key", "Does", "")
            table.add_rows(self.rows)
            yield table
