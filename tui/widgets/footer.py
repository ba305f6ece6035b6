"""The footer of a screen's keys, composed again only when the keys it shows changed.

Textual's Footer recomposes whenever its screen's bindings are updated, which every resume of a screen does: each
number key rebuilt the footer's keys, restyling each (the set_class of their `compact` watch), about a sixth of
the work of a key press beside 100 transfers.
"""

from __future__ import annotations

from textual.widgets import Footer


class SteadyFooter(Footer):
    """A Footer whose recompose does nothing while the keys it would show are those it shows."""

    _shown: tuple[tuple[object, ...], ...] | None = None

    def shown_keys(self) -> tuple[tuple[object, ...], ...]:
        """What the footer shows of the screen's bindings: each shown key, its label and action, enabled or not."""
        return tuple(
            (binding.key, binding.description, binding.action, enabled, tooltip)
            for _node, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show
        )

    async def recompose(self) -> None:
        shown = self.shown_keys()
        if shown == self._shown and self.children:
            return
        self._shown = shown
        await super().recompose()
