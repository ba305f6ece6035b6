"""The Textual application."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static

from engine.home import Home


class HeadnodeApp(App[int]):
    TITLE = "headnode"
    BINDINGS = [("ctrl+q", "quit", "Quit")]

    def __init__(self, home: Home, read_only: bool = False) -> None:
        super().__init__()
        self.home = home
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"headnode — home {self.home.root}", id="placeholder")
        yield Footer()
