"""A read-mostly table that renders only the rows on view, for lists too long for DataTable.

DataTable builds and measures every row, seconds for a class B network's leases (README, Benchmarks). This keeps
the rows as plain tuples and draws only the visible lines (Textual's line API), so size costs nothing on
screen; the owner filters by handing in a new row list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True)
class Column:
    label: str
    width: int


class VirtualTable(ScrollView, can_focus=True):
    """Rows of text cells under a fixed header line; a row cursor moved by the usual keys."""

    DEFAULT_CSS = """
    VirtualTable { height: 1fr; }
    VirtualTable > .virtual-table--header { text-style: bold; background: $panel; }
    VirtualTable > .virtual-table--cursor { background: $accent 40%; text-style: bold; }
    VirtualTable:focus > .virtual-table--cursor { background: $accent; }
    """
    COMPONENT_CLASSES = {"virtual-table--header", "virtual-table--cursor"}
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    cursor = reactive(0, always_update=True)

    @dataclass
    class Selected(Message):
        table: VirtualTable
        row: int

    def __init__(self, columns: Sequence[Column], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = list(columns)
        self.rows: Sequence[Sequence[str]] = []
        self.total_width = sum(c.width + 1 for c in self.columns)

    def set_rows(
        self, rows: Sequence[Sequence[str]], keep_cursor: bool = True, columns: Sequence[Column] | None = None
    ) -> None:
        """Show `rows` (any sequence: a list of 65k tuples is fine, nothing is copied), under new `columns` if given."""
        if columns is not None:
            self.columns = list(columns)
            self.total_width = sum(c.width + 1 for c in self.columns)
        self.rows = rows
        self.virtual_size = Size(self.total_width, len(rows) + 1)
        self.cursor = min(self.cursor if keep_cursor else 0, max(len(rows) - 1, 0))
        self.refresh()

    @property
    def current(self) -> Sequence[str] | None:
        return self.rows[self.cursor] if self.rows else None

    def _line(self, cells: Sequence[str], style: Style) -> Strip:
        text = "".join(cell[: c.width].ljust(c.width) + " " for c, cell in zip(self.columns, cells, strict=False))
        return Strip([Segment(text, style)], len(text))

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            strip = self._line([c.label for c in self.columns], self.get_component_rich_style("virtual-table--header"))
        else:
            index = scroll_y + y - 1
            if index >= len(self.rows):
                return Strip.blank(width, base)
            style = self.get_component_rich_style("virtual-table--cursor") if index == self.cursor else base
            strip = self._line(self.rows[index], style)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def watch_cursor(self, old: int, new: int) -> None:
        # Keep the cursor on view (line 0 is the header).
        view = max(self.size.height - 1, 1)
        top = int(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + view:
            self.scroll_to(y=new - view + 1, animate=False)
        self.refresh()

    def action_move(self, step: int) -> None:
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + step))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(self.size.height - 2, 1))

    def action_jump(self, where: int) -> None:
        if self.rows:
            self.cursor = where % len(self.rows)

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.Selected(self, self.cursor))
