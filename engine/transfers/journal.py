"""The journal of script runs (table `journal`): every action's start, end, bytes and outcome, so a run that
was interrupted (killed, crashed, failed, cancelled) can be resumed from its first unfinished line.

One record per run: its id, VM, the script's canonical text and where it came from, the pid of the process
running it (so a restarted service tells its own interrupted runs from another process's live ones), its state
(`running`, then `done`, `failed`, `cancelled`, `interrupted` when a restarted service could not resume it, or
`resumed` once a later run took over), the positions of the lines done (counting the ones an earlier run did), and
one entry per action run: position, line, start and end times, bytes, checksum, outcome, error. Each entry is on
disk before the next action starts.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.store.database import Store
from engine.transfers.progress import RunOutcome

TABLE = "journal"


class JournalState(StrEnum):
    """A journaled run's state; its value is what the journal stores. An action entry's outcome is RUNNING until
    it ends, then a RunOutcome's value."""

    RUNNING = "running"
    DONE = RunOutcome.DONE.value
    FAILED = RunOutcome.FAILED.value
    CANCELLED = RunOutcome.CANCELLED.value
    INTERRUPTED = "interrupted"  # a restarted service could not resume it
    RESUMED = "resumed"  # a later run took over from its first unfinished line


@dataclass(frozen=True)
class JournalEntry:
    run: str
    vm: int | None
    script: str
    done: tuple[int, ...]  # positions in the script's lines, not line numbers (comments do not count)
    state: JournalState
    started: float
    actions: tuple[dict[str, Any], ...]
    source: str = "<script>"
    pid: int | None = None  # None in records written before pids were kept

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> JournalEntry:
        return cls(
            r["run"],
            r["vm"],
            r["script"],
            tuple(r["done"]),
            JournalState(r["state"]),
            r["started"],
            tuple(r["actions"]),
            r.get("source", "<script>"),
            r.get("pid"),
        )


class Journal:
    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, vm: int | None, script: str, done: tuple[int, ...] = (), source: str = "<script>") -> str:
        run = uuid.uuid4().hex[:12]
        record = {
            "run": run,
            "vm": vm,
            "script": script,
            "source": source,
            "pid": os.getpid(),
            "done": list(done),
            "state": JournalState.RUNNING.value,
            "started": time.time(),
            "actions": [],
        }
        with self.store.write() as db:
            db.table(TABLE).insert(record)
        return run

    def _change(self, run: str, change) -> None:
        with self.store.write() as db:
            table = db.table(TABLE)
            record = table.get(lambda d: d["run"] == run)
            if isinstance(record, dict):
                table.update(change(record), doc_ids=[record.doc_id])

    def action_started(self, run: str, position: int, line: int) -> None:
        entry = {"position": position, "line": line, "started": time.time(), "outcome": JournalState.RUNNING.value}
        self._change(run, lambda r: {"actions": [*r["actions"], entry]})

    def action_finished(
        self, run: str, position: int, outcome: RunOutcome, size: int, checksum: str | None, error: str | None
    ) -> None:
        def change(record: dict) -> dict:
            actions = list(record["actions"])
            ended = {
                "ended": time.time(),
                "outcome": outcome.value,
                "bytes": size,
                "checksum": checksum,
                "error": error,
            }
            if actions and actions[-1]["position"] == position and actions[-1]["outcome"] == JournalState.RUNNING:
                actions[-1] = {**actions[-1], **ended}
            else:  # it ended before it could start (cancelled, or its host vanished)
                actions.append({"position": position, "started": None, **ended})
            done = [*record["done"], position] if outcome is RunOutcome.DONE else record["done"]
            return {"actions": actions, "done": done}

        self._change(run, change)

    def finish(self, run: str, state: JournalState) -> None:
        self._change(run, lambda r: {"state": state.value})

    def runs(self, vm: int | None) -> list[JournalEntry]:
        """The runs for a VM, oldest first."""
        with self.store.read() as db:
            records = db.table(TABLE).search(lambda d: d["vm"] == vm)
        return sorted((JournalEntry.from_record(r) for r in records), key=lambda e: e.started)

    def running(self) -> list[JournalEntry]:
        """Every run still marked running, of any VM, oldest first (some may be live in another process)."""
        with self.store.read() as db:
            records = db.table(TABLE).search(lambda d: d["state"] == JournalState.RUNNING)
        return sorted((JournalEntry.from_record(r) for r in records), key=lambda e: e.started)

    def unfinished(self, vm: int | None, script: str) -> JournalEntry | None:
        """The latest run of this script for this VM, if it did not finish."""
        same = [e for e in self.runs(vm) if e.script == script]
        return same[-1] if same and same[-1].state not in (JournalState.DONE, JournalState.RESUMED) else None
