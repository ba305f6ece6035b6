"""Transfers: one row per running or recent action with a determinate bar, bytes, rate and ETA, grouped under
its script (VM) with a per-script bar; cancel (`c`) and retry (`R`); the VM's transfer log under it, live."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable

from engine.presentation import eta_text, progress_text, rate_text
from engine.service.runs import ActionState, RunState, RunStatus, script_title
from engine.transfers.fanout import ACTION as FANOUT_ACTION
from tui.operations import recover_vm
from tui.screen import HeadnodeScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.file_tail import FileTail
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.usage_bar import EMPTY, FULL

REDRAW_SECONDS = 0.5  # at most 2 repaints a second, whatever the event rate: kind to a slow SSH link and the CPU


def bar(done: float, total: float | None, width: int = 5) -> Text:
    """A determinate bar with its percentage (short: with it every column fits 80 columns); a size not known yet
    shows no bar at all."""
    if not total:
        return Text("")
    fraction = min(done / total, 1.0)
    filled = round(fraction * width)
    text = Text(FULL * filled, style="green")
    text.append(EMPTY * (width - filled), style="dim")
    text.append(f" {fraction:>4.0%}")
    return text


def fan_out(run: RunState) -> bool:
    """A fan-out's run: a line per host (engine.transfers.fanout)."""
    return any(action.action == FANOUT_ACTION for action in run.actions.values())


def run_row(run: RunState) -> tuple[Any, ...]:
    who = f"VM {run.vm}" if run.vm is not None else "fan-out" if fan_out(run) else "script"
    state = run.state if run.failed_line is None else f"{run.state}: line {run.failed_line}"
    return (
        f"{who} {run.lines_done}/{run.lines_total}",
        state,
        bar(run.done_fraction, 1.0),  # by bytes, not lines: line 1 a third done is not 0%
        progress_text(run.bytes_done, run.bytes_total),
        "",
        "",
    )


def action_row(action: ActionState) -> tuple[Any, ...]:
    rate = rate_text(action.rate) if action.state is RunStatus.RUNNING and action.rate else ""
    size = progress_text(action.bytes_done, action.bytes_total) if action.bytes_total or action.bytes_done else ""
    host = f" {action.host}" if action.action == FANOUT_ACTION else ""  # a fan-out's line is a host
    return (
        f" {action.line} {action.action}{host}",
        action.state,
        bar(action.bytes_done, action.bytes_total),
        size,
        rate,
        eta_text(action.eta) if action.state is RunStatus.RUNNING else "",
    )


class TransfersScreen(HeadnodeScreen):
    NAV = "transfers"
    TITLE = "Transfers"
    CHANGING = frozenset({"cancel", "retry"})
    BINDINGS = [Binding("c", "cancel", "Cancel"), Binding("R", "retry", "Retry")]

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._drawn = -1

    def body(self) -> Iterable[Widget]:
        # The table over the whole width (the state second: what a narrow terminal cuts is the rate and ETA),
        # the selected VM's transfer log under it, its lines whole.
        with Vertical(id="transfers"):
            yield KeyedTable(
                [
                    ("Script / line", "what"),
                    ("State", "state"),
                    ("Progress", "bar"),
                    ("Bytes", "bytes"),
                    ("Rate", "rate"),
                    ("ETA", "eta"),
                ],
                id="transfers-table",
            )
            yield FileTail(id="transfer-log")

    def main_widget(self) -> KeyedTable:
        return self.query_one(KeyedTable)

    def on_mount(self) -> None:
        self.set_interval(REDRAW_SECONDS, self._redraw)

    def reload(self) -> None:
        self._drawn = -1
        self._redraw()

    def apply_filter(self, text: str) -> None:
        self.main_widget().filter_text = text
        self.reload()

    def _redraw(self) -> None:
        if not self.is_current:
            return  # another screen is on view: redraw when shown (reload)
        board = self.happ.transfers
        if board.version != self._drawn:
            self._drawn = board.version
            rows: dict[str, tuple[Any, ...]] = {}
            for run in reversed(list(board.runs.values())):  # newest first
                rows[run.run] = run_row(run)
                for line, action in sorted(run.actions.items()):
                    rows[f"{run.run}:{line}"] = action_row(action)
            self.main_widget().show(rows)
        self._tail_log()

    def _selected(self) -> tuple[RunState, int | None] | None:
        key = self.main_widget().selected_key
        if key is None:
            return None
        run_id, _, line = key.partition(":")
        run = self.happ.transfers.runs.get(run_id)
        return None if run is None else (run, int(line) if line else None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._tail_log()

    def _tail_log(self) -> None:
        """The selected script's VM transfer log."""
        selected = self._selected()
        if selected is not None and selected[0].vm is not None:
            self.query_one(FileTail).follow(self.happ.vms.log_path(selected[0].vm))

    def action_cancel(self) -> None:
        selected = self._selected()
        if selected is None or selected[0].state is not RunStatus.RUNNING:
            self.notify("Select a running script or action to cancel", severity="warning")
            return
        run, line = selected
        executing = self.happ.executor.find(run.run)
        if executing is None:
            self.notify("That script does not run in this console", severity="warning")
            return
        who = f" of VM {run.vm}" if run.vm is not None else ""
        if line is None:
            title = f"Cancel the whole script{who}?"
            details = [
                f"Stops {script_title(run.source, run.vm)}: the running action stops at its next check, "
                "later lines do not run."
            ]
        else:
            action = run.actions[line]
            title = f"Cancel line {line}{who}?"
            details = [f"Stops line {line}: {action.text}", "The script then fails at that line."]
        if run.vm is not None:
            details.append(f"VM {run.vm} is left failed; R (retry) runs it again from that line.")

        def answer(yes: bool | None) -> None:
            if yes and executing is not None:
                executing.cancel() if line is None else executing.cancel_action(line)
                self.notify(f"cancelling {'line ' + str(line) if line else 'script'}{who}")

        self.app.push_screen(ConfirmScreen(title, details, "Cancel it"), answer)

    def action_retry(self) -> None:
        selected = self._selected()
        if selected is None or selected[0].state is RunStatus.RUNNING:
            self.notify("Select a failed or cancelled script to retry", severity="warning")
            return
        run = selected[0]
        if run.vm is None or run.state is RunStatus.DONE:
            self.notify(
                "Only a VM's failed script is retried here (headnode run --resume for others)", severity="warning"
            )
            return
        vm_id = run.vm
        details = [f"Runs VM {vm_id}'s failed operation again from line {run.failed_line or 1} (vm recover --retry)."]

        def answer(yes: bool | None) -> None:
            if yes:
                recover_vm(self.happ, vm_id, retry=True)

        self.app.push_screen(ConfirmScreen(f"Retry VM {vm_id}?", details, "Retry"), answer)
