"""The command palette (ctrl+p): every screen, and every action of every screen, by name; a network's lease
actions once per network (they act on that network's leases screen, opened first)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from screens.networks import LeasesScreen
from tui.screen import HeadnodeScreen
from tui.widgets.nav import SCREENS

if TYPE_CHECKING:
    from tui.app import HeadnodeApp


class HeadnodeCommands(Provider):
    networks: tuple[str, ...] = ()

    @property
    def happ(self) -> HeadnodeApp:
        return cast("HeadnodeApp", self.app)

    async def startup(self) -> None:
        # The names of the networks, read on the console's call threads (the palette opens at once regardless).
        try:
            self.networks = tuple(n.name for n in await self.happ.call(self.happ.networks.list))
        except Exception as exc:
            self.happ.report_failure("list networks", exc)

    def _commands(self) -> Iterator[tuple[str, str, object]]:
        app = self.happ
        for mode, title in SCREENS:
            yield f"Go to {title}", f"Show the {title} screen", partial(app.switch_mode, mode)
        for mode, title, binding in app.screen_actions():
            yield (
                f"{title}: {binding.description}",
                f"key {binding.key}",
                partial(app.run_screen_action, mode, binding.action),
            )
        for network in self.networks:
            for binding in app.described_bindings(LeasesScreen):
                yield (
                    f"Leases of {network}: {binding.description}",
                    f"key {binding.key} on the leases of {network}",
                    partial(app.run_leases_action, network, binding.action),
                )
        # A pushed detail screen (a VM) has its own actions, runnable where it stands. The palette itself is on
        # top of the stack: the console's screen is the topmost HeadnodeScreen under it.
        current = next((s for s in reversed(app.screen_stack) if isinstance(s, HeadnodeScreen)), None)
        if current is not None and type(current) not in {*app.MODES.values(), LeasesScreen}:
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
