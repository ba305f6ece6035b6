"""Hosts."""

from __future__ import annotations

from tui.screen import HeadnodeScreen


class HostsScreen(HeadnodeScreen):
    NAV = "hosts"
    TITLE = "Hosts"
