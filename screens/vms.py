"""VMs."""

from __future__ import annotations

from tui.screen import HeadnodeScreen


class VmsScreen(HeadnodeScreen):
    NAV = "vms"
    TITLE = "VMs"
