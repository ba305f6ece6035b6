"""The VM records of a home as stored (the `vms` table): what a VM is, its hosts and operations, and reading them.
Quick reads (`vm list`, `vm show`) load only this, not the lifecycle that runs operations (engine.vms.lifecycle).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError, Problem
from engine.home import Home
from engine.language.template import Template, Vector, parse_template
from engine.store.database import Store
from engine.vms.states import OperationOutcome, VmState


@dataclass(frozen=True)
class OperationRecord:
    """One operation on a VM: its script, who ran it, and how it ended."""

    op: str
    host: str
    script: tuple[str, ...]
    started: float
    pid: int
    ended: float | None = None
    outcome: OperationOutcome = OperationOutcome.RUNNING
    failed_line: int | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.outcome is OperationOutcome.FAILURE


@dataclass(frozen=True)
class HistoryEntry:
    """A host the VM's images lived on, from when to when."""

    host: str
    vm_dir: str
    started: float
    ended: float | None = None


@dataclass(frozen=True)
class Vm:
    id: int
    name: str
    owner: str
    state: VmState
    template: str  # the stored template, leased NICs included
    created: float
    host: str | None = None
    vm_dir: str | None = None
    previous_state: VmState | None = None  # the state an operation started from, to retry or undo it
    history: tuple[HistoryEntry, ...] = ()
    operations: tuple[OperationRecord, ...] = ()

    @property
    def last_operation(self) -> OperationRecord | None:
        return self.operations[-1] if self.operations else None

    @property
    def interrupted(self) -> bool:
        """True when the operation in progress was run by a process that is gone."""
        last = self.last_operation
        return last is not None and last.outcome is OperationOutcome.RUNNING and not process_alive(last.pid)

    def parsed_template(self) -> Template:
        return parse_template(self.template, f"vm {self.id}")

    def nics(self) -> list[Vector]:
        return self.parsed_template().vectors("NIC")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        data["interrupted"] = self.interrupted
        template = self.parsed_template()
        data["template_text"] = self.template
        data["template"] = template_json(template)
        data["nics"] = [n.as_dict() for n in template.vectors("NIC")]
        return data

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Vm:
        return cls(
            **{
                **doc,
                "state": VmState(doc["state"]),
                "previous_state": VmState(doc["previous_state"]) if doc.get("previous_state") else None,
                "history": tuple(HistoryEntry(**h) for h in doc.get("history", ())),
                "operations": tuple(
                    OperationRecord(**{**o, "script": tuple(o["script"]), "outcome": OperationOutcome(o["outcome"])})
                    for o in doc.get("operations", ())
                ),
            }
        )


def template_json(template: Template) -> dict[str, Any]:
    """A template as JSON: vectors are objects, and a repeated attribute (DISK, NIC) is always a list."""
    grouped: dict[str, list[Any]] = {}
    for attr in template.attributes:
        grouped.setdefault(attr.name, []).append(attr.value.as_dict() if isinstance(attr.value, Vector) else attr.value)
    return {
        name: values if name in ("DISK", "NIC") or len(values) > 1 else values[0] for name, values in grouped.items()
    }


def process_alive(pid: int) -> bool:
    """True while process `pid` runs; a zombie (killed, its parent has not reaped it yet) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class VmChanged:
    """Event: a VM's record changed."""

    vm_id: int
    state: VmState
    at: float = field(default_factory=time.time)


class VmRecords:
    """The VMs of a home, read from its database."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.store = Store(home.db_path)

    def list(self) -> list[Vm]:
        with self.store.read() as db:
            return sorted((Vm.from_doc(dict(d)) for d in db.table("vms").all()), key=lambda vm: vm.id)

    def get(self, vm_id: int) -> Vm:
        with self.store.read() as db:
            doc = db.table("vms").get(doc_id=vm_id)
        if doc is None:
            raise InputError(Problem(f"no VM {vm_id}"))
        return Vm.from_doc(dict(doc))

    def exists(self, vm_id: int) -> bool:
        with self.store.read() as db:
            return db.table("vms").contains(doc_id=vm_id)

    def log_path(self, vm_id: int) -> Path:
        return self.home.logs / f"vm-{vm_id}.log"
