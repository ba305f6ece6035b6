"""The command palette (ctrl+p): every screen, and every action of every screen, by name."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.widgets.nav import SCREENS

if TYPE_CHECKING:
    from tui.app import HeadnodeApp


class HeadnodeCommands(Provider):
    def _commands(self) -> Iterator[tuple[str, str, object]]:
        app = cast("HeadnodeApp", self.app)
        for mode, title in SCREENS:
            yield f"Go to {title}", f"Show the {title} screen", partial(app.switch_mode, mode)
        current = app.screen_stack[-1] if app.screen_stack else None
        for mode, title, binding in app.screen_actions():
            yield (
                f"{title}: {binding.description}",
                f"key {binding.key}",
                partial(app.run_screen_action, mode, binding.action),
            )
        # A pushed detail screen (a network's leases, a VM) has its own actions, runnable where it stands.
        if current is not None and type(current) not in app.MODES.values():
            for binding in app.described_bindings(type(current)):
                yield (
                    f"{current.TITLE}: {binding.description}",
                    f"key {binding.key}",
                    partial(app.run_screen_action, None, binding.action),
                )

    async def discover(self) -> Hits:
        for name, help_text, command in self._commands():
            yield DiscoveryHit(name, command, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, command in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, help=help_text)  # type: ignore[arg-type]
