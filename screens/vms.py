"""VMs: the list with state and host; create from a template (the samples offered); a VM's details; deploy,
stop, resume, migrate, shutdown, delete and recover, each after showing the image script it will run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Static

from engine.defaults import sample_templates
from engine.presentation import operation_text, preview_lines, state_label, time_text
from tui.operations import recover_vm
from tui.screen import HeadnodeScreen
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.file_tail import FileTail
from tui.widgets.form import Field, FormScreen, PickScreen
from tui.widgets.keyed_table import KeyedTable

if TYPE_CHECKING:
    from engine.vms.records import Vm

OTHER_TEMPLATE = "another template file…"
NEEDS_HOST = {"deploy": "Deploy", "resume": "Resume", "migrate": "Migrate"}
RECOVER_CHOICES = ("retry the failed operation from its failed line", "delete: clean the host and free the leases")


def vm_ips(vm: Vm) -> str:
    return ", ".join(nic.get("IP") or "" for nic in vm.nics())


def vm_row(vm: Vm) -> tuple[str, ...]:
    last = vm.last_operation
    outcome = f"{last.op}: {last.outcome}" if last else ""
    return (str(vm.id), vm.name, state_label(vm), vm.host or "", vm_ips(vm), outcome)


class VmActions(HeadnodeScreen):
    """The VM operations, shared by the list and a VM's details: each acts on `vm_id()`."""

    CHANGING = frozenset({"create", "deploy", "stop", "resume", "migrate", "shutdown", "delete", "recover"})
    VM_BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "deploy", "Deploy"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("m", "migrate", "Migrate"),
        Binding("S", "shutdown", "Shutdown"),
        Binding("d", "delete", "Delete"),
        Binding("R", "recover", "Recover"),
    ]

    def vm_id(self) -> int | None:
        raise NotImplementedError

    def _chosen_vm(self) -> int | None:
        vm_id = self.vm_id()
        if vm_id is None:
            self.notify("No VM selected", severity="warning")
        return vm_id

    def _operate(self, op: str, title: str, extra: Callable[[Any], list[str]] | None = None) -> None:
        """Ask for a host if the operation needs one, show the planned script, and run it once confirmed."""
        vm_id = self._chosen_vm()
        if vm_id is None:
            return
        if op in NEEDS_HOST:

            def pick(hosts: list[Any]) -> None:
                def picked(host: str | None) -> None:
                    if host is not None:
                        self._confirm_and_run(vm_id, op, title, host, extra)

                self.app.push_screen(PickScreen(f"{title} VM {vm_id} to host", [h.name for h in hosts]), picked)

            self.happ.run_engine("list hosts", self.happ.hosts.list, then=pick)
        else:
            self._confirm_and_run(vm_id, op, title, None, extra)

    def _confirm_and_run(
        self, vm_id: int, op: str, title: str, host: str | None, extra: Callable[[Any], list[str]] | None
    ) -> None:
        where = f" on {host}" if host else ""

        def plan() -> tuple[Any, Any]:
            return self.happ.vms.preview(vm_id, op, host), self.happ.vms.get(vm_id)

        def planned(planned: tuple[Any, Any]) -> None:
            preview, vm = planned
            details = [f"This image script runs{where}:", *map(self.happ.shown, preview_lines(preview))]
            if extra is not None:
                details += extra(vm)

            def answer(yes: bool | None) -> None:
                if yes:
                    self._run(vm_id, op, host)

            self.app.push_screen(ConfirmScreen(f"{title} VM {vm_id}{where}?", details, title), answer)

        self.happ.run_engine(f"plan {op} of VM {vm_id}", plan, then=planned)

    def _run(self, vm_id: int, op: str, host: str | None) -> None:
        vms = self.happ.vms
        target = host or ""  # the operations that need a host were given one; the engine refuses "" as none
        call: Callable[[], Any] = {
            "deploy": lambda: vms.deploy(vm_id, target),
            "resume": lambda: vms.resume(vm_id, target),
            "migrate": lambda: vms.migrate(vm_id, target),
            "stop": lambda: vms.stop(vm_id),
            "shutdown": lambda: vms.shutdown(vm_id),
            "delete": lambda: vms.delete(vm_id),
        }[op]

        def done(vm: Any) -> None:
            self.app.notify(f"VM {vm.id}: {op} succeeded, now {vm.state.value}")
            self.happ.home_changed()

        self.happ.run_engine(f"{op} VM {vm_id}", call, then=done, otherwise=self.happ.home_changed)
        self.happ.home_changed()  # show the VM busy at once

    @staticmethod
    def _freed(vm: Vm) -> list[str]:
        nics = [f"{n.get('IP')} ({n.get('MAC')}) in {n.get('NETWORK')}" for n in vm.nics() if n.get("IP")]
        return ["Then frees its leases:", *nics] if nics else ["It holds no leases."]

    def action_deploy(self) -> None:
        self._operate("deploy", "Deploy")

    def action_stop(self) -> None:
        self._operate("stop", "Stop")

    def action_resume(self) -> None:
        self._operate("resume", "Resume")

    def action_migrate(self) -> None:
        self._operate("migrate", "Migrate")

    def action_shutdown(self) -> None:
        self._operate("shutdown", "Shut down", self._freed)

    def action_delete(self) -> None:
        self._operate("delete", "Delete", self._freed)

    def action_recover(self) -> None:
        vm_id = self._chosen_vm()
        if vm_id is None:
            return

        def picked(choice: str | None) -> None:
            if choice is None:
                return
            retry = choice == RECOVER_CHOICES[0]

            def ask(vm: Any) -> None:
                last = vm.last_operation
                details = [
                    f"Last operation: {last.op} on {last.host or '-'}: {last.outcome}" if last else "No operation."
                ]
                if last and last.error:
                    details.append(f"Failed at line {last.failed_line}: {last.error}")
                details += ["Runs it again from the failed line."] if retry else self._freed(vm)

                def answer(yes: bool | None) -> None:
                    if yes:
                        recover_vm(self.happ, vm_id, retry)

                self.app.push_screen(ConfirmScreen(f"Recover VM {vm_id}: {choice}?", details, "Recover"), answer)

            self.happ.run_engine("read VM", self.happ.vms.get, vm_id, then=ask)

        self.app.push_screen(PickScreen(f"Recover VM {vm_id}", RECOVER_CHOICES), picked)


class VmsScreen(VmActions):
    NAV = "vms"
    TITLE = "VMs"
    BINDINGS = [Binding("c", "create", "Create"), *VmActions.VM_BINDINGS]

    def body(self) -> Iterable[Widget]:
        yield KeyedTable(
            [("ID", "id"), ("Name", "name"), ("State", "state"), ("Host", "host"), ("IPs", "ips"), ("Last", "last")],
            id="vms-table",
        )

    def main_widget(self) -> KeyedTable:
        return self.query_one(KeyedTable)

    def vm_id(self) -> int | None:
        key = self.main_widget().selected_key
        return None if key is None else int(key)

    def load(self) -> list[Vm]:
        return self.happ.vms.list()

    def show(self, vms: list[Vm]) -> None:
        self.main_widget().show({str(vm.id): vm_row(vm) for vm in vms})

    def apply_filter(self, text: str) -> None:
        self.main_widget().filter_text = text
        self.reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.app.push_screen(VmScreen(int(event.row_key.value)))

    def action_create(self) -> None:
        samples = sample_templates()

        def created(vm: Any) -> None:
            leased = vm_ips(vm)
            self.notify(f"VM {vm.id} ({vm.name}) created" + (f", leased {leased}" if leased else ""))
            self.happ.home_changed()

        def create(path: Path) -> None:
            self.happ.run_engine(f"create VM from {path}", self.happ.vms.create, path, then=created)

        def other(values: dict[str, str], form: FormScreen) -> None:
            path = Path(values["path"].strip()).expanduser()
            self.happ.run_form(form, f"create VM from {path}", self.happ.vms.create, path, then=created)

        def picked(choice: str | None) -> None:
            if choice == OTHER_TEMPLATE:
                self.app.push_screen(FormScreen("Create a VM", [Field("path", "Template file")], "Create", save=other))
            elif choice is not None:
                create(samples[choice])

        self.app.push_screen(PickScreen("Create a VM from a template", [*samples, OTHER_TEMPLATE]), picked)


class VmScreen(VmActions):
    """One VM: its leased NICs, disks, hosts, operations, and its transfer log."""

    NAV = "vms"
    FILTERABLE = False
    BINDINGS = VmActions.VM_BINDINGS

    def __init__(self, vm_id: int) -> None:
        super().__init__()
        self.shown_vm = vm_id
        self.TITLE = f"VM {vm_id}"  # type: ignore[misc]  # a detail screen's title names its VM, per instance

    def body(self) -> Iterable[Widget]:
        with VerticalScroll(id="vm-details"):
            yield Static("", id="vm-summary", markup=False)
        yield FileTail(id="vm-log")

    def vm_id(self) -> int:
        return self.shown_vm

    def load(self) -> Vm:
        return self.happ.vms.get(self.shown_vm)

    def show(self, vm: Vm) -> None:
        self.query_one("#vm-summary", Static).update(self.happ.shown("\n".join(vm_summary(vm))))
        self._tail_log()

    def _tail_log(self) -> None:
        self.query_one(FileTail).follow(self.happ.vms.log_path(self.shown_vm))


def vm_summary(vm: Vm) -> list[str]:
    template = vm.parsed_template()
    out = [f"VM {vm.id} {vm.name}: {state_label(vm)}" + (f" on {vm.host}" if vm.host else ""), "", "NICs"]
    out += [
        f"  {n.get('NETWORK') or '-'}: {n.get('IP') or '-'}  {n.get('MAC') or '-'}  bridge {n.get('BRIDGE') or '-'}"
        for n in template.vectors("NIC")
    ] or ["  -"]
    out += ["", "Disks"]
    out += ["  " + ", ".join(f"{k}={v}" for k, v in disk.items) for disk in template.vectors("DISK")] or ["  -"]
    out += ["", "Hosts"]
    out += [f"  {h.host}  {h.vm_dir}  {time_text(h.started)} - {time_text(h.ended)}" for h in vm.history] or ["  -"]
    out += ["", "Operations"]
    for op in vm.operations:
        out.append(f"  {operation_text(op)}")
    if not vm.operations:
        out.append("  -")
    return out
