"""A DataTable whose rows are keyed and updated by diff, never rebuilt.

Rebuilding with `clear()` resets the cursor and scroll and repaints everything; diffing inside one
`batch_update()` (dolphie's processlist pattern) touches only the cells that changed, which keeps repaints few
over a slow SSH link and keeps the admin's place in the list. Column widths are fitted here, synchronously:
DataTable measures new cells only when idle, and a frame painted before that cached them cut to the old widths
for good (seen under tmux: "ttyl", "pendi").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class KeyedTable(DataTable):
    """Rows keyed by a string; `show(rows)` makes the table hold exactly those rows, in that order."""

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self._columns_spec = list(columns)
        self._rows: dict[str, tuple[Any, ...]] = {}
        self.filter_text = ""

    def on_mount(self) -> None:
        for label, key in self._columns_spec:
            self.add_column(label, key=key, width=cell_len(label))

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return row_key.value

    def matches(self, cells: Iterable[Any]) -> bool:
        """Whether a row passes the filter (case-insensitive substring of any cell)."""
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in _plain(cell).lower() for cell in cells)

    def show(self, rows: Mapping[str, Sequence[Any]]) -> None:
        """Make the table hold `rows` (key -> cells) that pass the filter, in the mapping's order."""
        wanted = {key: tuple(cells) for key, cells in rows.items() if self.matches(cells)}
        column_keys = [key for _, key in self._columns_spec]
        with self.app.batch_update():
            gone = [k for k in self._rows if k not in wanted]
            touched = bool(gone)  # whether any cell's text changed, and so maybe a column's width
            for key in gone:
                self.remove_row(key)
                del self._rows[key]
            for key, cells in wanted.items():
                old = self._rows.get(key)
                if old is None:
                    self.add_row(*cells, key=key)
                    touched = True
                else:
                    for column, before, after in zip(column_keys, old, cells, strict=True):
                        if _plain(before) != _plain(after) or type(before) is not type(after):
                            self.update_cell(key, column, after)
                            touched = True
                self._rows[key] = cells
            if list(self._rows) != list(wanted):
                self._reorder(list(wanted))
                self._rows = {key: self._rows[key] for key in wanted}
            if touched:
                self._fit_columns()

    def _fit_columns(self) -> None:
        """Each column as wide as its label and its widest cell shown (narrower again when that row goes)."""
        changed = False
        for index, column in enumerate(self.ordered_columns):
            widest = max((cell_len(_plain(row[index])) for row in self._rows.values()), default=0)
            width = max(cell_len(column.label.plain), widest)
            if column.width != width:
                column.width = width
                changed = True
        if changed:
            self._update_count += 1  # cached cell renders carry the old widths
            self._require_update_dimensions = True  # the virtual width, for horizontal scrolling
            self.refresh()

    def _reorder(self, order: list[str]) -> None:
        # DataTable.sort's key sees only cell values, not row keys; the order is the caller's (textual is pinned).
        self._row_locations = TwoWayDict({RowKey(key): index for index, key in enumerate(order)})
        self._update_count += 1
        self.refresh()
