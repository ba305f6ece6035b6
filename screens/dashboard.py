"""Dashboard: hosts, networks with usage bars, VMs by state, transfers in flight, at one glance."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

from tui.screen import HeadnodeScreen
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.usage_bar import usage_text


class DashboardScreen(HeadnodeScreen):
    NAV = "dashboard"
    TITLE = "Dashboard"
    FILTERABLE = False

    def body(self) -> Iterable[Widget]:
        with Vertical(id="dashboard"):
            yield Static("Networks", classes="section-title")
            yield KeyedTable(
                [("Network", "name"), ("Bridge", "bridge"), ("Used", "usage"), ("Free", "free")],
                id="dash-networks",
                show_cursor=False,
            )

    def reload(self) -> None:
        # Lease books load on a worker thread: a class B network takes ~0.1 s the first time.
        self.happ.run_engine("read the dashboard", self._load, then=self._loaded)

    def _load(self) -> dict[str, Any]:
        networks = self.happ.networks
        return {"networks": [(n, networks.usage(n.name)) for n in networks.list()]}

    def _loaded(self, data: dict[str, Any]) -> None:
        self.query_one("#dash-networks", KeyedTable).show(
            {
                n.name: (n.name, n.bridge, usage_text(usage.used + usage.held, usage.size), str(usage.free))
                for n, usage in data["networks"]
            }
        )
