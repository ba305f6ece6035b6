"""Networks: each network's usage; enter opens its leases (fast at 65,534); create, delete, export, doctor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, Static

from engine.language.numbers import whole_number
from engine.networks.exports import FORMATS as EXPORT_FORMATS
from tui.screen import HeadnodeScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import Field, FormScreen, PickScreen
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.usage_bar import usage_text
from tui.widgets.virtual_table import Column, VirtualTable

CLIPBOARD = "clipboard"


def show_damage(line: Static, warnings: list[str]) -> None:
    """The damage found in lease files, as `vnet list` and `vnet show` say it (Usage.warnings), under the table;
    hidden while there is none."""
    line.update("\n".join(f"⚠ {warning}" for warning in warnings))
    line.display = bool(warnings)


def network_row(network: Any, usage: Any, dhcp: Any = None) -> tuple[Any, ...]:
    """A network's cells; DHCP: its dnsmasq's state and interface ("serving srv0"), or "-" when not served."""
    return (
        network.name,
        network.type,
        network.bridge,
        network.range_text,
        usage_text(usage.used + usage.held, usage.size),
        str(usage.free),
        f"{dhcp.state} {dhcp.interface}" if dhcp is not None else "-",
    )


LEASE_COLUMNS = [Column("IP", 15), Column("MAC", 17), Column("VM", 6), Column("State", 5), Column("Note", 30)]


def lease_row(lease: Any, ipv6: bool = False) -> tuple[str, ...]:
    """A lease's cells; with `ipv6`, its global (else ULA) IPv6 address last, where the 120-column layout has room."""
    row = (lease.ip, lease.mac, "" if lease.vm is None else str(lease.vm), lease.state, lease.note)
    return (*row, lease.ip6_global or lease.ip6_ula or "") if ipv6 else row


def export_leases_to(app: Any, network: str | None) -> None:
    """Pick a format, then a file (or the clipboard), and write the export there."""
    what = f"export {network or 'all networks'}"

    def chosen_format(fmt: str | None) -> None:
        if fmt is None:
            return

        def chosen_target(values: dict[str, str], form: FormScreen) -> None:
            target = values["target"].strip() or CLIPBOARD

            def export() -> str:
                text = app.networks.export(fmt, network)
                if target != CLIPBOARD:
                    write_export(Path(target).expanduser(), text)
                return text

            def exported(text: str) -> None:
                if target == CLIPBOARD:
                    app.copy_to_clipboard(text)
                    app.notify(f"{fmt} export of {network or 'all networks'} copied to the clipboard")
                else:
                    app.notify(f"{fmt} export written to {target}")

            app.run_form(form, what, export, then=exported)

        app.push_screen(
            FormScreen(
                f"Export {network or 'all networks'} as {fmt}",
                [Field("target", f"File to write (blank or '{CLIPBOARD}': the clipboard)", placeholder=CLIPBOARD)],
                "Export",
                save=chosen_target,
            )
        )

    app.push_screen(PickScreen(f"Export {network or 'all networks'}: format", EXPORT_FORMATS), chosen_format)


def write_export(path: Path, text: str) -> None:
    from engine.store.atomic import write_atomically

    write_atomically(str(path), text)


class NetworksScreen(HeadnodeScreen):
    NAV = "networks"
    TITLE = "Networks"
    CHANGING = frozenset({"create", "delete", "doctor_fix"})
    BINDINGS = [
        Binding("n", "create", "New"),
        Binding("d", "delete", "Delete"),
        Binding("x", "export", "Export"),
        Binding("D", "doctor", "Doctor"),
    ]

    def body(self) -> Iterable[Widget]:
        yield KeyedTable(
            [
                ("Network", "name"),
                ("Type", "type"),
                ("Bridge", "bridge"),
                ("Range", "range"),
                ("Used", "usage"),
                ("Free", "free"),
                ("DHCP", "dhcp"),
            ],
            id="networks-table",
        )
        yield Static("", id="networks-damage", classes="damage", markup=False)

    def main_widget(self) -> KeyedTable:
        return self.query_one(KeyedTable)

    def load(self) -> list[tuple[Any, Any, Any]]:
        networks = self.happ.networks
        return [(n, networks.usage(n.name), networks.dhcp_status(n)) for n in networks.list()]

    def show(self, networks: list[tuple[Any, Any, Any]]) -> None:
        self.main_widget().show({n.name: network_row(n, usage, dhcp) for n, usage, dhcp in networks})
        damage = [w for n, u, _ in networks for w in u.warnings(n.name)]
        show_damage(self.query_one("#networks-damage", Static), damage)

    def apply_filter(self, text: str) -> None:
        self.main_widget().filter_text = text
        self.reload()

    def _selected(self) -> str | None:
        name = self.main_widget().selected_key
        if name is None:
            self.notify("No network selected", severity="warning")
        return name

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.app.push_screen(LeasesScreen(event.row_key.value))

    def action_create(self) -> None:
        def create(values: dict[str, str], form: FormScreen) -> None:
            def created(network: Any) -> None:
                self.notify(f"network {network.name} created")
                self.happ.home_changed()

            path = Path(values["path"].strip()).expanduser()
            happ = self.happ
            happ.run_form(form, "create network", happ.changes.create_network, happ.networks, path, then=created)

        self.app.push_screen(
            FormScreen(
                "New network from a template file",
                [Field("path", "Template file", placeholder="net.tmpl")],
                save=create,
            )
        )

    def action_delete(self) -> None:
        name = self._selected()
        if name is None:
            return

        def deleted(_: Any) -> None:
            self.notify(f"network {name} deleted")
            self.happ.home_changed()

        def ask(usage: Any) -> None:
            in_use = usage.used + usage.held
            details = [f"Deletes network {name} and its lease database."]
            if in_use:
                details.append(
                    f"{in_use} address(es) in use are freed: their VMs keep the addresses in their templates."
                )

            def answer(yes: bool | None) -> None:
                if yes:
                    happ = self.happ
                    happ.run_engine(
                        f"delete network {name}",
                        happ.changes.delete_network,
                        happ.networks,
                        name,
                        force=bool(in_use),
                        then=deleted,
                    )

            self.app.push_screen(ConfirmScreen(f"Delete network {name}?", details, "Delete"), answer)

        self.happ.run_engine("read network", self.happ.networks.usage, name, then=ask)

    def action_export(self) -> None:
        export_leases_to(self.happ, self.main_widget().selected_key)

    def action_doctor(self) -> None:
        self.happ.run_engine("doctor", self.happ.networks.doctor, then=self._show_doctor)

    def _show_doctor(self, findings: Sequence[Any]) -> None:
        def fix(yes: bool | None) -> None:
            if yes:
                self.run_worker(self.happ.run_screen_action(None, "doctor_fix"))

        self.app.push_screen(DoctorScreen(findings), fix)

    def action_doctor_fix(self) -> None:
        def fixed(findings: Sequence[Any]) -> None:
            self.notify(f"doctor fixed {len(findings)} finding(s)")
            self.happ.home_changed()

        self.happ.run_engine("doctor --fix", self.happ.changes.repair, self.happ.networks, then=fixed)


def finding_text(finding: Any) -> str:
    return f"{finding.network} {finding.ip}: {finding.kind}: {finding.message}" + (" (fixed)" if finding.fixed else "")


class DoctorScreen(ModalScreen[bool]):
    """What `vnet doctor` found; `f` fixes them (after this list said what will change)."""

    DEFAULT_CSS = """
    DoctorScreen { align: center middle; }
    DoctorScreen > Vertical { width: 90%; height: auto; max-height: 90%; border: thick $warning;
                              background: $surface; padding: 0 1; }
    DoctorScreen VerticalScroll { height: auto; max-height: 18; }
    """
    BINDINGS = [Binding("f", "answer(True)", "Fix these"), Binding("escape", "answer(False)", "Close")]

    def __init__(self, findings: Sequence[Any]) -> None:
        super().__init__()
        self.findings = list(findings)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Doctor: {len(self.findings)} finding(s)", markup=False)
            with VerticalScroll():
                yield Static(
                    "\n".join(finding_text(f) for f in self.findings) or "Every lease is consistent.", markup=False
                )
            yield Static("f: fix them as listed    escape: close" if self.findings else "escape: close")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return bool(self.findings) or action != "answer" or parameters != (True,)

    def action_answer(self, fix: bool) -> None:
        self.dismiss(fix)


class LeasesScreen(HeadnodeScreen):
    """One network's leases. Drawn lazily (VirtualTable), loaded on a worker thread: 65,534 rows stay fast."""

    NAV = "networks"
    CHANGING = frozenset({"lease", "hold", "release"})
    BINDINGS = [
        Binding("l", "lease", "Lease"),
        Binding("h", "hold", "Hold"),
        Binding("r", "release", "Release"),
        Binding("x", "export", "Export"),
    ]

    def __init__(self, network: str, first_action: str | None = None) -> None:
        super().__init__()
        self.network = network
        self.first_action = first_action  # run once the leases are on screen (the palette's lease actions)
        self.TITLE = f"Leases of {network}"  # type: ignore[misc]  # names its network, per instance
        self.leases: list[tuple[str, ...]] = []
        self.lease_columns = LEASE_COLUMNS
        self.filter_text = ""

    def body(self) -> Iterable[Widget]:
        yield Static(f"Network {self.network}: loading…", id="leases-title", markup=False)
        yield Static("", id="leases-damage", classes="damage", markup=False)
        yield VirtualTable(LEASE_COLUMNS, id="leases-table")

    def main_widget(self) -> VirtualTable:
        return self.query_one(VirtualTable)

    def load(self) -> tuple[Any, Any, list[tuple[str, ...]]]:
        networks = self.happ.networks
        network = networks.get(self.network)
        rows = [lease_row(lease, network.has_ipv6_prefix) for lease in networks.leases(self.network)]
        return networks.usage(self.network), networks.dhcp_status(network), rows

    def show(self, loaded: tuple[Any, Any, list[tuple[str, ...]]]) -> None:
        usage, dhcp, self.leases = loaded
        if self.leases and len(self.leases[0]) > len(LEASE_COLUMNS):
            width = max(len(row[-1]) for row in self.leases)
            self.lease_columns = [*LEASE_COLUMNS, Column("IPv6", max(width, 4))]
        else:
            self.lease_columns = LEASE_COLUMNS
        self.query_one("#leases-title", Static).update(
            f"Network {self.network}: {usage.used} used, {usage.held} held, {usage.free} free of {usage.size}"
            + (f"; DHCP {dhcp.text}" if dhcp is not None else "")
        )
        show_damage(self.query_one("#leases-damage", Static), usage.warnings(self.network))
        self._show()
        if self.first_action is not None:
            action, self.first_action = self.first_action, None
            self.run_worker(self.happ.run_screen_action(None, action))

    def _show(self) -> None:
        needle = self.filter_text
        rows = self.leases if not needle else [r for r in self.leases if any(needle in c.lower() for c in r)]
        self.main_widget().set_rows(rows, columns=self.lease_columns)

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.lower()
        self._show()

    def _changed(self, what: str) -> None:
        self.notify(what)
        self.happ.home_changed()

    def action_lease(self) -> None:
        def lease(values: dict[str, str], form: FormScreen) -> None:
            vm = values["vm"].strip()
            number = whole_number(vm)
            self.happ.run_form(
                form,
                f"lease in {self.network}",
                self.happ.changes.lease,
                self.happ.networks,
                self.network,
                vm=number if number is not None else (vm or None),
                ip=values["ip"].strip() or None,
                note=values["note"],
                then=lambda leased: self._changed(f"leased {leased.ip} ({leased.mac})"),
            )

        self.app.push_screen(
            FormScreen(
                f"Lease an address in {self.network}",
                [
                    Field("ip", "IP (blank: the next free one)"),
                    Field("vm", "VM id (blank: a hold, no VM)", mentions=("vm",)),
                    Field("note", "Note", mentions=("note",)),
                ],
                "Lease",
                save=lease,
            )
        )

    def action_hold(self) -> None:
        def hold(values: dict[str, str], form: FormScreen) -> None:
            self.happ.run_form(
                form,
                f"hold in {self.network}",
                self.happ.changes.hold,
                self.happ.networks,
                self.network,
                values["ip"].strip(),
                note=values["note"],
                then=lambda held: self._changed(f"held {held.ip} ({held.mac})"),
            )

        self.app.push_screen(
            FormScreen(
                f"Hold an address in {self.network}",
                [Field("ip", "IP"), Field("note", "Note", mentions=("note",))],
                "Hold",
                save=hold,
            )
        )

    def action_release(self) -> None:
        row = self.main_widget().current
        if row is None:
            self.notify("No lease selected", severity="warning")
            return
        ip, mac, vm, state, _ = row
        details = [f"Frees {ip} ({mac}) in network {self.network}: it can be leased again."]
        if vm:
            details.append(f"It is leased to VM {vm}, which keeps the address in its template and loses it here.")

        def answer(yes: bool | None) -> None:
            if yes:
                self.happ.run_engine(
                    f"release {ip}",
                    self.happ.changes.release,
                    self.happ.networks,
                    self.network,
                    ip,
                    force=bool(vm),
                    then=lambda _: self._changed(f"released {ip}"),
                )

        self.app.push_screen(ConfirmScreen(f"Release {ip} ({state})?", details, "Release"), answer)

    def action_export(self) -> None:
        export_leases_to(self.happ, self.network)
