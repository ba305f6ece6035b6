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
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey


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
                elif old != cells:
                    changed = {
                        column: after
                        for column, before, after in zip(column_keys, old, cells, strict=True)
                        if type(before) is not type(after) or _plain(before) != _plain(after)
                    }
                    if changed:
                        cells_changed(self, key, changed)
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
            widths_changed(self)

    def _reorder(self, order: list[str]) -> None:
        """Put the rows in `order` with DataTable's public calls: the rows from the first one out of place on are
        removed and added again (DataTable.sort's key sees only cell values, never row keys), the cursor kept on
        its row."""
        current = list(self._rows)
        first = next(i for i, (was, wanted) in enumerate(zip(current, order, strict=True)) if was != wanted)
        selected = self.selected_key
        for key in current[first:]:
            self.remove_row(key)
        for key in order[first:]:
            self.add_row(*self._rows[key], key=key)
        if selected is not None:
            self.move_cursor(row=self.get_row_index(selected))


# The DataTable internals this module touches, all in `widths_changed` and `cells_changed` (Textual has no public
# call for a column width set by its owner, nor for many cells changed at once); tests/tui/test_tui_widgets.py fails
# when a Textual upgrade renames them.
DATATABLE_INTERNALS = ("_update_count", "_require_update_dimensions", "_data")


def cells_changed(table: DataTable, key: str, cells: Mapping[str, Any]) -> None:
    """Put new values in cells of row `key`, as DataTable.update_cell does for one, with one refresh for all of
    them: a refresh per cell, for the ~600 cells 100 transfers change between two redraws, took ~45 ms of a key
    press that switched to the Transfers screen (profiled at load 8)."""
    row = table._data[RowKey(key)]
    for column, value in cells.items():
        row[ColumnKey(column)] = value
    table._update_count += 1
    table.refresh()


def widths_changed(table: DataTable) -> None:
    """Make `table` paint its columns at the widths just set on them: its cached cell renders carry the old
    widths (their cache key holds `_update_count`), and its virtual width (horizontal scrolling) is recomputed
    only when asked."""
    table._update_count += 1
    table._require_update_dimensions = True
    table.refresh()
