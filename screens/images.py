"""Images: what each host's image cache holds (size, age, last use, pinned), its usage against its budget; warm
an image into a host's cache, evict (a dry run first, confirmed), pin and unpin. The CLI's `headnode cache`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static

from engine.presentation import age_text, cache_summary, size_text, time_text
from tui.screen import HeadnodeScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import Field, FormScreen
from tui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from engine.transfers.cache.inventory import CacheReport, EvictOutcome
    from engine.transfers.cache.layout import Entry


def entry_row(entry: Entry) -> tuple[str, ...]:
    s = entry.sidecar
    pinned = "pinned" if s.pinned else ""
    return (entry.host, s.source, size_text(s.size), age_text(s.fetched), time_text(s.last_used), pinned, entry.key)


class ImagesScreen(HeadnodeScreen):
    NAV = "images"
    TITLE = "Images"
    CHANGING = frozenset({"warm", "evict", "evict_host", "pin"})
    BINDINGS = [
        Binding("w", "warm", "Warm"),
        Binding("e", "evict", "Evict"),
        Binding("E", "evict_host", "Evict host"),
        Binding("p", "pin", "Pin/unpin"),
    ]

    def body(self) -> Iterable[Widget]:
        yield Static("", id="images-summary")
        yield KeyedTable(
            [
                ("Host", "host"),
                ("Source", "source"),
                ("Size", "size"),
                ("Age", "age"),
                ("Last used", "used"),
                ("Pin", "pinned"),
                ("Key", "key"),
            ],
            id="images-table",
        )

    def main_widget(self) -> KeyedTable:
        return self.query_one(KeyedTable)

    def load(self) -> list[CacheReport]:
        from engine.transfers.cache.inventory import cache_reports

        return cache_reports(self.happ.image_caches)

    def show(self, reports: list[CacheReport]) -> None:
        self.reports = reports
        lines = [self.happ.shown(cache_summary(report)) for report in reports]
        self.query_one("#images-summary", Static).update(
            "\n".join(lines) or "No host keeps an image cache: hosts reached over SSH do (see Hosts)"
        )
        rows = {f"{e.host} {e.key}": entry_row(e) for r in reports if r.listing is not None for e in r.listing.entries}
        self.main_widget().show(rows)

    reports: list[CacheReport] = []

    def apply_filter(self, text: str) -> None:
        self.main_widget().filter_text = text
        self.reload()

    def _selected(self) -> tuple[str, str] | None:
        key = self.main_widget().selected_key
        if key is None:
            self.notify("No cached image selected", severity="warning")
            return None
        host, _, entry = key.partition(" ")
        return host, entry

    def action_warm(self) -> None:
        selected = self.main_widget().selected_key
        hosts = [r.host for r in self.reports if r.caches]
        fields = [
            Field("source", "Image (host:path, URL, or a path on the front end)", mentions=("SOURCE", "source")),
            Field("hosts", "Hosts (separated by spaces)", selected.partition(" ")[0] if selected else " ".join(hosts)),
        ]

        def save(values: dict[str, str], form: FormScreen) -> None:
            def warmed(said: str) -> None:
                self.notify(said)
                self.reload()

            hosts = values["hosts"].split()
            if not hosts:
                form.refuse(["name at least one host"])
                return
            happ = self.happ
            happ.run_form(form, "warm", happ.warm_images, values["source"].strip(), hosts, then=warmed)

        self.app.push_screen(FormScreen("Warm hosts' caches", fields, "Warm", save=save))

    def action_evict(self) -> None:
        selected = self._selected()
        if selected is not None:
            self._evict(selected[0], selected[1])

    def action_evict_host(self) -> None:
        selected = self._selected()
        if selected is not None:
            self._evict(selected[0], None)

    def _evict(self, host: str, what: str | None) -> None:
        """A dry run first: the confirmation lists what would go and what stays."""
        happ = self.happ

        def confirm(dry: EvictOutcome) -> None:
            gone = [f"{e.key} {e.sidecar.source} ({size_text(e.sidecar.size)})" for e in dry.evicted]
            kept = [f"kept: {e.key} {e.sidecar.source} ({why})" for e, why in dry.kept]
            if not gone:
                self.notify(f"nothing to evict on {host}" + (f" ({len(kept)} kept)" if kept else ""))
                return

            def answer(yes: bool | None) -> None:
                if yes:
                    happ.run_engine(
                        f"evict on {host}", happ.changes.evict_cache, happ.image_caches, host, what, then=evicted
                    )

            self.app.push_screen(ConfirmScreen(f"Evict from {host}'s cache?", [*gone, *kept], "Evict"), answer)

        def evicted(outcome: EvictOutcome) -> None:
            self.notify(f"evicted {len(outcome.evicted)} from {host}")
            self.reload()

        happ.run_engine(f"evict on {host}", happ.changes.evict_cache, happ.image_caches, host, what, True, then=confirm)

    def action_pin(self) -> None:
        selected = self._selected()
        if selected is None:
            return
        host, key = selected
        entry = next(
            (e for r in self.reports if r.listing for e in r.listing.entries if e.host == host and e.key == key), None
        )
        pinned = not (entry is not None and entry.sidecar.pinned)

        def done(entries: list[Any]) -> None:
            self.notify(f"{'pinned' if pinned else 'unpinned'} {key} on {host}")
            self.reload()

        happ = self.happ
        happ.run_engine("pin", happ.changes.pin_cache, happ.image_caches, host, key, pinned, then=done)
