"""Dashboard: hosts, networks with usage bars, VMs by state, transfers in flight, at one glance."""

from __future__ import annotations

from collections.abc import Iterable

from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from tui.screen import HeadnodeScreen
from tui.widgets.keyed_table import KeyedTable


class DashboardScreen(HeadnodeScreen):
    NAV = "dashboard"
    TITLE = "Dashboard"
    FILTERABLE = False

    def body(self) -> Iterable[Widget]:
        with Vertical(id="dashboard"):
            yield Static("Hosts", classes="section-title")
            yield KeyedTable(
                [("Host", "name"), ("Driver", "driver"), ("Reachable", "reachable"), ("Free", "free")],
                id="dash-hosts",
                show_cursor=False,
            )
            yield Static("Networks", classes="section-title")
            yield KeyedTable([("Network", "name"), ("Usage", "usage")], id="dash-networks", show_cursor=False)
            yield Static("VMs", classes="section-title")
            yield Static("", id="dash-vms")
            yield Static("Transfers", classes="section-title")
            yield Static("", id="dash-transfers")
