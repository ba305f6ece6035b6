"""The top line: the console's screens with their number keys, the current one highlighted."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

# (mode, title) in number-key order; the App maps these names to screens.
SCREENS: tuple[tuple[str, str], ...] = (
    ("dashboard", "Dashboard"),
    ("vms", "VMs"),
    ("transfers", "Transfers"),
    ("networks", "Networks"),
    ("hosts", "Hosts"),
    ("log", "Log"),
    ("images", "Images"),  # last: the screens before it keep the number keys admins know
)

HINTS = ("  / filter  ^q quit", "  ^q quit")


class NavBar(Static):
    """Screens as tabs; `read_only` shows a marker so nobody wonders why keys are greyed out."""

    def __init__(self, current: str, read_only: bool) -> None:
        super().__init__(id="nav")
        self.current = current
        self.read_only = read_only

    def render(self) -> Text:
        # The name goes first where the line has room for it and the quit key (80 columns have not, since Images).
        named = self._tabs("headnode ")
        text = named if named.cell_len + len(HINTS[-1]) <= self.size.width else self._tabs("")
        # The keys every screen has, right-aligned where the line has room (they are in ? too).
        for hint in HINTS:
            if text.cell_len + len(hint) <= self.size.width:
                text.append(" " * (self.size.width - text.cell_len - len(hint)) + hint, style="dim")
                break
        return text

    def _tabs(self, name: str) -> Text:
        text = Text(name, style="bold")
        for number, (mode, title) in enumerate(SCREENS, 1):
            style = "reverse bold" if mode == self.current else ""
            text.append(f" {number} {title} ", style=style)
        if self.read_only:
            text.append("  READ-ONLY", style="bold yellow")
        return text
