"""What every console screen shares: the navigation bar, the footer, `/` filtering, `escape` back, and the
read-only rule (changing actions left out of the footer and refused with a notification)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget

from tui.widgets.filter import FilterInput
from tui.widgets.footer import SteadyFooter
from tui.widgets.nav import NavBar

if TYPE_CHECKING:
    from tui.app import HeadnodeApp


class HeadnodeScreen(Screen[None]):
    """A console screen. Subclasses compose `body()`, name their changing actions in CHANGING, and re-read the
    engine in `reload()` (called when shown and whenever the home changes on disk)."""

    NAV: ClassVar[str] = "dashboard"  # which tab is highlighted
    TITLE: ClassVar[str] = ""
    CHANGING: ClassVar[frozenset[str]] = frozenset()  # action names refused in read-only mode
    FILTERABLE: ClassVar[bool] = True

    BINDINGS = [
        Binding("question_mark", "app.help", "Keys"),
        # tab cycles screens (Screen's default is focus-next); forms in modals keep tab for their fields
        Binding("tab", "app.cycle_screen(1)", "Next screen", show=False),
        Binding("shift+tab", "app.cycle_screen(-1)", "Previous screen", show=False),
        Binding(
            "slash", "filter", "Filter", show=False
        ),  # in ? and the nav bar: the footer keeps room for a screen's own
        Binding("escape", "back", "Back", show=False),
    ]

    @property
    def happ(self) -> HeadnodeApp:
        return cast("HeadnodeApp", self.app)

    def compose(self) -> ComposeResult:
        yield NavBar(self.NAV, self.happ.read_only)
        yield from self.body()
        if self.FILTERABLE:
            yield FilterInput()
        # Compact, ? first and the palette's hint left out: a screen's keys fit in 80 columns (ctrl+p still works).
        yield SteadyFooter(compact=True, show_command_palette=False)

    def body(self) -> Iterable[Widget]:
        return ()

    def reload(self) -> None:
        """Re-read what this screen shows: `load()` on a worker thread (the engine's locks may be held by
        transfers writing their journal; the UI thread never waits on them), then `show()` on the UI thread.
        A newer reload supersedes one still loading."""
        self.happ.run_engine(f"show {self.TITLE}", self.load, then=self.show, group=f"view-{id(self)}")

    def load(self) -> Any:
        """Read from the engine what `show` needs (runs on a worker thread: no widgets here)."""
        return None

    def show(self, data: Any) -> None:
        """Put what `load` read on screen."""

    def apply_filter(self, text: str) -> None:
        """Show only what matches `text` (case-insensitive)."""

    def main_widget(self) -> Widget | None:
        """The widget that gets focus back from the filter."""
        return None

    ready = False  # widgets composed: reload() may run

    def post_message(self, message: Message) -> bool:
        if isinstance(message, events.ScreenResume):
            # Textual restyles every node of a screen it resumes (a third of a key press beside 100 transfers).
            # Nothing changes a suspended screen's styles here: its widgets restyle themselves as they change, and
            # a change of theme or CSS has the App refresh every screen's styles when it is next shown.
            message.refresh_styles = False
        return super().post_message(message)

    def on_mount(self) -> None:
        self.ready = True
        if self.happ.screens_mounted:  # the first screen is styled with the app, as it starts
            self.call_after_refresh(self._styled_once)
        self.happ.screens_mounted += 1
        self.refresh_view()

    def _styled_once(self) -> None:
        # Textual counts a mode's screen as styled only when it was mounted as the CSS was refreshed, which its
        # first visit's refresh is not: its second visit re-parsed the whole stylesheet (~50 ms of the key press
        # beside 100 transfers). Refreshed once mounted, while its first visit is still being drawn.
        if self.app.screen is self and self.app.screen_stack[0] is self:
            self.app.refresh_css(animate=False)

    def on_screen_resume(self) -> None:
        # A mode's screen is resumed before its widgets exist the first time; on_mount reads it then.
        if self.ready:
            self.refresh_view()

    def refresh_view(self) -> None:
        """reload(), with any error reported instead of raised."""
        self.happ.attempt(f"show {self.TITLE}", self.reload)

    # Read-only: the footer leaves changing actions out (help lists them as read-only); pressing one says why.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter" and not self.FILTERABLE:
            return False  # hidden: nothing to filter here
        return not (action in self.CHANGING and self.happ.read_only)  # False: left out of the footer

    def on_key(self, event: events.Key) -> None:
        if not self.happ.read_only:
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            if binding.action in self.CHANGING:
                event.stop()
                self.happ.refuse_read_only(binding.description or binding.action)

    # Filter and navigation.

    def action_filter(self) -> None:
        if self.FILTERABLE:
            self.query_one(FilterInput).open()

    @on(FilterInput.Applied)
    def _filter_applied(self, message: FilterInput.Applied) -> None:
        self.apply_filter(message.text)

    @on(FilterInput.Closed)
    def _filter_closed(self) -> None:
        widget = self.main_widget()
        if widget is not None:
            widget.focus()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
