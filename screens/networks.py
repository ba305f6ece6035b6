"""Networks."""

from __future__ import annotations

from tui.screen import HeadnodeScreen


class NetworksScreen(HeadnodeScreen):
    NAV = "networks"
    TITLE = "Networks"
