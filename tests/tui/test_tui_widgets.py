"""The shared widgets on their own: keyed diffing, the virtual table at class-B size, usage bars, modals."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import Field, FormScreen, PickScreen
from tui.widgets.keyed_table import DATATABLE_INTERNALS, KeyedTable, widths_changed
from tui.widgets.usage_bar import usage_text
from tui.widgets.virtual_table import Column, VirtualTable

CLASS_B = 65534


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.selected: list[int] = []

    def compose(self) -> ComposeResult:
        yield KeyedTable([("Name", "name"), ("State", "state")])
        yield VirtualTable([Column("IP", 15), Column("VM", 4)])

    def on_virtual_table_selected(self, message: VirtualTable.Selected) -> None:
        self.selected.append(message.row)


async def test_keyed_table_diffs_rows_and_keeps_the_cursor_on_its_row() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.show({"a": ("a", "up"), "b": ("b", "up"), "c": ("c", "down")})
        table.focus()
        await pilot.press("down")
        assert table.selected_key == "b"
        table.show({"a": ("a", "up"), "b": ("b", "down"), "c": ("c", "down")})
        assert table.selected_key == "b" and table.get_cell("b", "state") == "down"
        # A new row arrives in the middle: the order follows the mapping.
        table.show({"a": ("a", "up"), "ab": ("ab", "new"), "b": ("b", "down"), "c": ("c", "down")})
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == ["a", "ab", "b", "c"]
        assert table.selected_key == "b"  # the cursor moved with its row
        table.show({"c": ("c", "down"), "b": ("b", "down"), "ab": ("ab", "new"), "a": ("a", "up")})
        assert [table.get_row_at(i)[0] for i in range(table.row_count)] == ["c", "b", "ab", "a"]
        assert table.selected_key == "b"
        table.show({"a": ("a", "up"), "c": ("c", "down")})
        assert table.row_count == 2
        table.filter_text = "DOWN"
        table.show({"a": ("a", "up"), "c": ("c", "down")})
        assert table.row_count == 1 and table.selected_key == "c"


async def test_keyed_table_paints_whole_cells_even_before_it_idles() -> None:
    # DataTable measures new rows only when idle; a frame painted before that (a busy console under tmux)
    # cached cells cut to the labels' widths ("ttyl", "pendi") and kept them after the widths grew.
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.show({"0": ("ttylinux", "pending")})
        painted_early = table.render_line(1).text
        await pilot.pause()
        assert "ttylinux" in painted_early and "pending" in painted_early
        assert "ttylinux" in table.render_line(1).text and "pending" in table.render_line(1).text
        table.show({"0": ("ttylinux", "running-a-long-state")})
        assert "running-a-long-state" in table.render_line(1).text
        table.show({"0": ("tty", "up")})
        assert table.ordered_columns[0].get_render_width(table) == len("Name") + 2
        table.show({})
        assert table.row_count == 0 and table.ordered_columns[1].get_render_width(table) == len("State") + 2


async def test_the_datatable_internals_keyed_table_touches_are_there() -> None:
    """KeyedTable sets two private attributes of Textual's DataTable (widths_changed): a Textual that renames them
    would leave cells painted at their old widths without a word, so this fails first."""
    app = TableApp()
    async with app.run_test():
        table = app.query_one(KeyedTable)
        assert isinstance(table._update_count, int) and isinstance(table._require_update_dimensions, bool)
        assert set(DATATABLE_INTERNALS) <= set(vars(table))
        before = table._update_count
        widths_changed(table)
        assert table._update_count == before + 1 and table._require_update_dimensions


async def test_virtual_table_holds_a_class_b_network_and_moves_anywhere() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(VirtualTable)
        rows = [(f"10.1.{i >> 8}.{i & 255}", str(i)) for i in range(1, CLASS_B + 1)]
        table.set_rows(rows)
        table.focus()
        await pilot.press("end")
        assert table.current == rows[-1]
        assert table.scroll_y > CLASS_B - 30
        await pilot.press("pageup", "up")
        assert table.cursor < CLASS_B - 20
        await pilot.press("home", "down", "down")
        assert table.current == rows[2] and table.scroll_y == 0
        await pilot.press("enter")
        assert app.selected == [2]
        table.set_rows(rows[:1])
        assert table.cursor == 0 and table.current == rows[0]


def test_usage_bar_shows_even_one_lease_in_a_class_b() -> None:
    assert usage_text(1, CLASS_B, 10).plain == "█░░░░░░░░░ 1/65534"
    assert usage_text(0, 254, 4).plain == "░░░░ 0/254"
    assert usage_text(254, 254, 4).plain == "████ 254/254"


async def test_confirm_says_what_it_will_do_and_answers() -> None:
    answers: list[bool | None] = []
    app = TableApp()
    async with app.run_test() as pilot:
        for key in ("y", "n", "escape"):
            app.push_screen(ConfirmScreen("Release 10.0.0.5?", ["frees 10.0.0.5 (02:00:0a:00:00:05)"]), answers.append)
            await pilot.pause()
            assert "frees 10.0.0.5" in str(app.screen.query_one("#confirm-details").render())
            await pilot.press(key)
    assert answers == [True, False, False]


async def test_form_and_pick_return_what_was_entered() -> None:
    results: list[object] = []
    app = TableApp()
    async with app.run_test() as pilot:
        app.push_screen(FormScreen("Hold", [Field("ip", "IP"), Field("note", "Note", "gw")]), results.append)
        await pilot.pause()
        await pilot.press(*"10.0.0.9", "tab", "end", *"-2", "enter")
        app.push_screen(FormScreen("Hold", [Field("ip", "IP")]), results.append)
        await pilot.pause()
        await pilot.press("escape")
        app.push_screen(PickScreen("Host", ["local", "node1"]), results.append)
        await pilot.pause()
        await pilot.press("down", "enter")
    assert results == [{"ip": "10.0.0.9", "note": "gw-2"}, None, "node1"]


def test_progress_messages_coalesce_per_action_and_nothing_else_does() -> None:
    from engine.events import LogEvent
    from engine.transfers.progress import ActionProgress, ScriptProgress
    from tui.messages import EngineEvent

    def progress(line: int, done: int) -> EngineEvent:
        return EngineEvent(ActionProgress("run1", 3, line, "CLONE", done, 100, 1.0, 1.0))

    assert progress(1, 50).can_replace(progress(1, 10))
    assert not progress(2, 50).can_replace(progress(1, 10))
    assert EngineEvent(ScriptProgress("run1", 3, 2, 3, 2)).can_replace(EngineEvent(ScriptProgress("run1", 3, 1, 3, 1)))
    assert not EngineEvent(LogEvent("b")).can_replace(EngineEvent(LogEvent("a")))
    assert not progress(1, 50).can_replace(EngineEvent(LogEvent("a")))


def test_a_scripts_bar_counts_bytes_not_lines() -> None:
    from engine.service.runs import TransferBoard
    from engine.transfers.progress import ActionFinished, ActionProgress, ActionStarted, ScriptStarted
    from screens.transfers import run_row

    mib = 1 << 20
    board = TransferBoard()

    def script_bar() -> str:
        return run_row(board.runs["r1"])[2].plain  # the bar, after the name and the state

    def line(number: int, name: str, size: int, done: int) -> None:
        board.apply(ActionStarted("r1", 0, number, name, f"{name} ...", "local", "shared"))
        board.apply(ActionProgress("r1", 0, number, name, done, size, float(mib), 1.0))

    board.apply(ScriptStarted("r1", 0, "<plan>", 3))
    assert script_bar().endswith(" 0%")
    # Line 1 of 3 a third done: 16 MiB of (16 MiB and two lines not started, as big as the one known) is 11%,
    # where counting lines said 0% until the copy ended.
    line(1, "CLONE", 16 * mib, 16 * mib // 3)
    assert script_bar().endswith(" 11%")
    board.apply(ActionFinished("r1", 0, 1, "CLONE", "done", 16 * mib, 1.0))
    line(2, "MKSWAP", 16 * mib, 0)
    assert script_bar().endswith(" 33%")
    board.apply(ActionFinished("r1", 0, 2, "MKSWAP", "done", 16 * mib, 1.0))
    line(3, "CONTEXT", mib // 10, 0)  # the small last line weighs what it moves, not a third
    assert script_bar().endswith(" 100%") or script_bar().endswith(" 99%")


async def test_keyed_table_changes_many_cells_of_a_row_at_once_and_paints_them() -> None:
    """show() writes the changed cells of a row together (cells_changed) and the table paints the new values."""
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(KeyedTable)
        table.show({"a": ("a", "up"), "b": ("b", "up")})
        await pilot.pause()
        before = table._update_count
        table.show({"a": ("a2", "down"), "b": ("b", "up")})
        assert table._update_count == before + 1  # one refresh for both cells of row a, none for row b
        assert table.get_row("a") == ["a2", "down"] and table.get_row("b") == ["b", "up"]
        await pilot.pause()
        painted = "\n".join(strip.text for strip in table.render_lines(table.region.reset_offset))
        assert "a2" in painted and "down" in painted
