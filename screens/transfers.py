"""Transfers."""

from __future__ import annotations

from tui.screen import HeadnodeScreen


class TransfersScreen(HeadnodeScreen):
    NAV = "transfers"
    TITLE = "Transfers"
