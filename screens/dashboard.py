"""Dashboard: hosts (driver, reachable, free space), networks with usage bars, VMs by state, and transfers in
flight with one overall bar and the throughput, at one glance."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import ProgressBar, Static

from engine.presentation import progress_text, rate_text
from engine.vms.states import VmState
from tui.operations import test_hosts, tested_text
from tui.screen import HeadnodeScreen
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.usage_bar import usage_text

REDRAW_SECONDS = 0.5


class DashboardScreen(HeadnodeScreen):
    NAV = "dashboard"
    TITLE = "Dashboard"
    FILTERABLE = False
    BINDINGS = [Binding("t", "test_hosts", "Test hosts")]

    def __init__(self) -> None:
        super().__init__()
        self._drawn = -1

    def body(self) -> Iterable[Widget]:
        with Vertical(id="dashboard"):
            yield Static("Hosts", classes="section-title")
            yield KeyedTable(
                [("Host", "name"), ("Driver", "driver"), ("Reachable (t tests)", "reachable")],
                id="dash-hosts",
                show_cursor=False,
            )
            yield Static("Networks", classes="section-title")
            yield KeyedTable(
                [("Network", "name"), ("Bridge", "bridge"), ("Used", "usage"), ("Free", "free")],
                id="dash-networks",
                show_cursor=False,
            )
            yield Static("VMs", classes="section-title")
            yield Static("", id="dash-vms", markup=False)
            yield Static("Transfers", classes="section-title")
            yield Static("", id="dash-transfers", markup=False)
            yield ProgressBar(total=1, show_eta=False, id="dash-progress", classes="hidden")

    def on_mount(self) -> None:
        self.set_interval(REDRAW_SECONDS, self._draw_transfers)

    def reload(self) -> None:
        super().reload()
        self._draw_transfers()

    def load(self) -> dict[str, Any]:
        networks = self.happ.networks
        return {
            "hosts": self.happ.hosts.list(),
            "networks": [(n, networks.usage(n.name)) for n in networks.list()],
            "vms": self.happ.vms.list(),
        }

    def show(self, data: dict[str, Any]) -> None:
        reports = self.happ.host_reports
        self.query_one("#dash-hosts", KeyedTable).show(
            {h.name: (h.name, h.driver, tested_text(reports.get(h.name)) or "not tested") for h in data["hosts"]}
        )
        self.query_one("#dash-networks", KeyedTable).show(
            {
                n.name: (n.name, n.bridge, usage_text(usage.used + usage.held, usage.size), str(usage.free))
                for n, usage in data["networks"]
            }
        )
        states = Counter(vm.state.value for vm in data["vms"] if vm.state is not VmState.DONE)
        summary = "  ".join(f"{state} {count}" for state, count in sorted(states.items()))
        self.query_one("#dash-vms", Static).update(
            f"{summary}   (total {sum(states.values())}, done not counted)"
            if states
            else "No VMs yet: 2 shows VMs, c there creates one"
        )

    def _draw_transfers(self) -> None:
        board = self.happ.transfers
        if board.version == self._drawn or not self.is_current:
            return
        self._drawn = board.version
        running = board.running()
        done, total, rate = board.in_flight()
        bar = self.query_one("#dash-progress", ProgressBar)
        text = self.query_one("#dash-transfers", Static)
        if not running:
            text.update("No transfers running (3 shows recent ones)")
            bar.add_class("hidden")
            return
        actions = sum(a.state.active for run in running for a in run.actions.values())
        text.update(
            f"{len(running)} script(s), {actions} action(s) running: {progress_text(done, total)}, {rate_text(rate)}"
        )
        bar.remove_class("hidden")
        bar.update(total=max(total, 1), progress=done)

    def action_test_hosts(self) -> None:
        self.happ.run_engine(
            "list hosts",
            self.happ.hosts.list,
            then=lambda hosts: test_hosts(self.happ, [h.name for h in hosts], then=self.reload),
        )
