"""Hosts: where VMs run. Add, edit, test (as `headnode host test`), delete."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable

from tui.operations import test_hosts, tested_text
from tui.screen import HeadnodeScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import Field, FormScreen
from tui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from engine.transfers.host_check import HostReport
    from engine.transfers.hosts import Host

# (field, label, the words of an engine problem that point at it: the CLI's option names)
HOST_FIELDS = (
    ("name", "Name", ("host name", "already exists", "no host named")),
    ("driver", "Driver (shared, ssh, dummy or a configured one)", ("driver",)),
    ("vm_dir", "VM directory (absolute path on the host)", ("--vm-dir",)),
    ("address", "Address (blank: the name)", ("--address",)),
    ("port", "SSH port (blank: from ~/.ssh/config or 22)", ("--port",)),
    ("user", "SSH user (blank: from ~/.ssh/config or you)", ("--user",)),
    ("identity", "Identity file (blank: ssh-agent and ~/.ssh)", ("--identity", "identity")),
    ("max_transfers", "Concurrent transfers at most", ("--max-transfers",)),
    ("cache_dir", "Image cache directory (blank: .headnode-cache in the VM directory)", ("--cache-dir",)),
    ("cache_max_mb", "Image cache budget in MiB (blank: the configuration's; 0: none)", ("--cache-max-mb",)),
    ("compress", "Compress its link: zstd or no (blank: the driver's)", ("--compress",)),
)


def host_row(host: Host, tested: HostReport | str | None, shown: Callable[[str], str]) -> tuple[str, ...]:
    where = host.address or ""
    if host.user:
        where = f"{host.user}@{where or host.name}"
    if host.port:
        where = f"{where or host.name}:{host.port}"
    return (host.name, host.driver, where, shown(host.vm_dir), str(host.max_transfers), tested_text(tested))


class HostsScreen(HeadnodeScreen):
    NAV = "hosts"
    TITLE = "Hosts"
    CHANGING = frozenset({"add", "edit", "delete"})
    BINDINGS = [
        Binding("a", "add", "Add host"),
        Binding("e", "edit", "Edit host"),
        Binding("t", "test", "Test host"),
        Binding("d", "delete", "Delete host"),
    ]

    def body(self) -> Iterable[Widget]:
        yield KeyedTable(
            [
                ("Host", "name"),
                ("Driver", "driver"),
                ("SSH", "ssh"),
                ("VM directory", "vm_dir"),
                ("Max", "max"),
                ("Test", "test"),
            ],
            id="hosts-table",
        )

    def main_widget(self) -> KeyedTable:
        return self.query_one(KeyedTable)

    def load(self) -> list[Host]:
        return self.happ.hosts.list()

    def show(self, hosts: list[Host]) -> None:
        self.main_widget().show(
            {h.name: host_row(h, self.happ.host_reports.get(h.name), self.happ.shown) for h in hosts}
        )

    def apply_filter(self, text: str) -> None:
        self.main_widget().filter_text = text
        self.reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.run_worker(self.happ.run_screen_action(None, "edit"))

    def _selected(self) -> str | None:
        name = self.main_widget().selected_key
        if name is None:
            self.notify("No host selected", severity="warning")
        return name

    def _host_form(self, title: str, host: Host | None, save: Any) -> FormScreen:
        values = {} if host is None else {k: getattr(host, k) for k, _, _ in HOST_FIELDS}
        values.setdefault("max_transfers", 4)
        fields = [
            Field(name, label, "" if values.get(name) is None else str(values[name]), mentions=mentions)
            for name, label, mentions in HOST_FIELDS
        ]
        return FormScreen(title, fields, save=save)

    def action_add(self) -> None:
        def save(values: dict[str, str], form: FormScreen) -> None:
            def added(host: Host) -> None:
                self.notify(f"host {host.name} added")
                self.happ.home_changed()

            happ = self.happ
            self.happ.run_form(form, "add host", happ.changes.create_host, happ.hosts, values, then=added)

        self.app.push_screen(self._host_form("Add a host", None, save))

    def action_edit(self) -> None:
        name = self._selected()
        if name is None:
            return

        def edit(host: Host) -> None:
            def save(values: dict[str, str], form: FormScreen) -> None:
                def saved(_: Any) -> None:
                    self.notify(f"host {name} saved")
                    self.happ.home_changed()

                happ = self.happ
                happ.run_form(form, f"edit host {name}", happ.changes.update_host, happ.hosts, name, values, then=saved)

            self.app.push_screen(self._host_form(f"Edit host {name}", host, save))

        self.happ.run_engine("read host", self.happ.hosts.get, name, then=edit)

    def action_test(self) -> None:
        name = self._selected()
        if name is not None:
            test_hosts(self.happ, [name], then=self.reload)
            self.reload()

    def action_delete(self) -> None:
        name = self._selected()
        if name is None:
            return

        def deleted(_: Any) -> None:
            self.notify(f"host {name} deleted")
            self.happ.home_changed()

        def answer(yes: bool | None) -> None:
            if yes:
                happ = self.happ
                happ.run_engine(f"delete host {name}", happ.changes.delete_host, happ.vms, name, then=deleted)

        self.app.push_screen(
            ConfirmScreen(
                f"Delete host {name}?",
                [
                    f"Removes the record of host {name} from this home.",
                    "Files on the host and VMs already placed there are left as they are.",
                ],
                "Delete",
            ),
            answer,
        )
