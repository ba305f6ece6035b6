"""The journal of script runs: every action's start, end, bytes and outcome, so a run that was interrupted (killed,
crashed, failed, cancelled) can be resumed from its first unfinished line.

Each run has a record in the database's table `journal`: its id, VM, the script's canonical text and where it came
from, the pid of the process running it (so a restarted service tells its own interrupted runs from another
process's live ones), its state (`running`, then `done`, `failed`, `cancelled`, `interrupted` when a restarted
service could not resume it, or `resumed` once a later run took over) and the positions of the lines an earlier run
did. It is written when the run starts and when it ends.

What each action did goes to the run's own file, `<home>/journal/RUN.jsonl`, one line appended per start and per
end (position, line, times, bytes, checksum, outcome, error): a run of N lines costs N appends, never N rewrites of
the database (4,000 dummy lines rewrote and synced the whole headnode.db 8,000 times: 871 s). An action's end is
synced before the next action starts, so a resumed run never repeats a line that was done; a start is synced with
it (a start alone, lost with the machine, only hides that the line was begun). A torn last line, from a process
killed while it wrote, is ignored: that action had not ended. Any other line that does not load is damage: the run
is not resumed over it, and the error names the file and line.

Records the journal no longer needs are pruned when a run ends, and their files removed. Kept: runs still running,
the newest run of each script for each VM when it did not finish (what `--resume` and `vm recover --retry`
continue), and the newest FINISHED_KEPT of the others (for inspection; the service keeps its own history of
finished runs). Records written before the files existed keep their actions inline and load alike.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.errors import InputError, Problem
from engine.home import Home
from engine.store.atomic import fsync_directory
from engine.store.database import Store
from engine.transfers.progress import RunOutcome

TABLE = "journal"
FINISHED_KEPT = 100
LOG_SUFFIX = ".jsonl"


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
    damage: str | None = None  # why its actions did not all load: the file and line

    @classmethod
    def from_record(cls, r: dict[str, Any], log: Path | None = None) -> JournalEntry:
        """The run of record `r`; its actions inline (older records) or in its file `log`."""
        actions, done, damage = list(r.get("actions", [])), list(r["done"]), None
        if log is not None and r.get("log"):
            actions, damage = _read_log(log)
            done += [a["position"] for a in actions if a.get("outcome") == RunOutcome.DONE]
        return cls(
            r["run"],
            r["vm"],
            r["script"],
            tuple(done),
            JournalState(r["state"]),
            r["started"],
            tuple(actions),
            r.get("source", "<script>"),
            r.get("pid"),
            damage,
        )

    @property
    def finished(self) -> bool:
        return self.state in (JournalState.DONE, JournalState.RESUMED)


def _read_log(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """A run's actions from its file, and the damage found in it (None: all loaded)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], f"{path}: the run's journal of actions is missing"
    actions: list[dict[str, Any]] = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            item = _shaped(json.loads(line))
            position = item["position"]
            if "ended" in item and actions and actions[-1]["position"] == position and "ended" not in actions[-1]:
                actions[-1] = {**actions[-1], **item}
            elif "ended" in item:  # it ended before it could start (cancelled, or its host vanished)
                actions.append({"started": None, **item})
            else:
                actions.append({**item, "outcome": JournalState.RUNNING.value})
        except (ValueError, TypeError, KeyError):
            if number == len(lines):  # a torn last line: a writer killed mid-line, that action never ended
                break
            return actions, f"{path}:{number}: a line of the run's journal does not load"
    return actions, None


_OUTCOMES = {outcome.value for outcome in RunOutcome}


def _shaped(item: Any) -> dict[str, Any]:
    """A line of a run's file as Journal writes it (a start, or an end), else ValueError."""

    def number(key: str) -> bool:  # a whole number, never a bool (which json reads as one too)
        value = item.get(key)
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(item, dict) or not number("position"):
        raise ValueError("not an action")
    if "ended" in item:
        if item.get("outcome") not in _OUTCOMES or not number("bytes"):
            raise ValueError("not an action's end")
    elif not number("line"):
        raise ValueError("not an action's start")
    return item


class Journal:
    def __init__(self, home: Home) -> None:
        self.store = Store(home.db_path)
        self.directory = home.root / "journal"

    def _log(self, run: str) -> Path:
        return self.directory / f"{run}{LOG_SUFFIX}"

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
            "log": True,
        }
        self.directory.mkdir(exist_ok=True)
        with self.store.write() as db:
            table = db.table(TABLE)
            # Made inside the transaction, so a prune (under the same lock) never takes it for a stray file.
            self._log(run).touch()
            fsync_directory(self.directory)
            table.insert(record)
        return run

    def _append(self, run: str, item: dict[str, Any], sync: bool) -> None:
        with open(self._log(run), "ab") as out:
            out.write(json.dumps(item, separators=(",", ":")).encode() + b"\n")
            out.flush()
            if sync:
                os.fsync(out.fileno())

    def action_started(self, run: str, position: int, line: int) -> None:
        self._append(run, {"position": position, "line": line, "started": time.time()}, sync=False)

    def action_finished(
        self,
        run: str,
        position: int,
        outcome: RunOutcome,
        size: int,
        checksum: str | None,
        error: str | None,
        *,
        line: int,
    ) -> None:
        """Record the end of the action at `position` (its script `line`, written again: it may never have
        started)."""
        ended = {"position": position, "line": line, "ended": time.time(), "outcome": outcome.value, "bytes": size}
        self._append(run, {**ended, "checksum": checksum, "error": error}, sync=True)

    def finish(self, run: str, state: JournalState) -> None:
        with self.store.write() as db:
            table = db.table(TABLE)
            record = table.get(lambda d: d["run"] == run)
            if isinstance(record, dict):
                table.update({"state": state.value}, doc_ids=[record.doc_id])
            pruned = _prunable(table.all())
            if pruned:
                table.remove(lambda d: d["run"] in pruned)
            kept = {d["run"] for d in table.all()}
            for path in self.directory.glob(f"*{LOG_SUFFIX}"):  # under the lock: no run is being started
                if path.name.removesuffix(LOG_SUFFIX) not in kept:
                    path.unlink(missing_ok=True)

    def _entries(self, records: list[Any]) -> list[JournalEntry]:
        entries = (JournalEntry.from_record(r, self._log(r["run"])) for r in records)
        return sorted(entries, key=lambda e: e.started)

    def runs(self, vm: int | None) -> list[JournalEntry]:
        """The runs for a VM, oldest first."""
        with self.store.read() as db:
            records = db.table(TABLE).search(lambda d: d["vm"] == vm)
        return self._entries(records)

    def running(self) -> list[JournalEntry]:
        """Every run still marked running, of any VM, oldest first (some may be live in another process)."""
        with self.store.read() as db:
            records = db.table(TABLE).search(lambda d: d["state"] == JournalState.RUNNING)
        return self._entries(records)

    def unfinished(self, vm: int | None, script: str) -> JournalEntry | None:
        """The latest run of this script for this VM, if it did not finish; InputError when its journal is damaged
        (which lines were done is not known, and a line such as MV must not run twice)."""
        with self.store.read() as db:
            records = db.table(TABLE).search(lambda d: d["vm"] == vm and d["script"] == script)
        same = self._entries(records)
        if not same or same[-1].finished:
            return None
        if same[-1].damage is not None:
            message = f"cannot resume run {same[-1].run}: {same[-1].damage}, so which of its lines were done is unknown"
            raise InputError(Problem(message))
        return same[-1]


def _prunable(records: list[Any]) -> set[str]:
    """The runs the journal no longer needs (see the module's docstring)."""
    newest_of: dict[tuple[Any, str], dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r["started"]):
        newest_of[(record["vm"], record["script"])] = record
    needed = {
        r["run"]
        for r in newest_of.values()
        if r["state"] not in (JournalState.DONE, JournalState.RESUMED)  # resumable
    }
    needed |= {r["run"] for r in records if r["state"] == JournalState.RUNNING}
    others = sorted((r for r in records if r["run"] not in needed), key=lambda r: r["started"])
    return {r["run"] for r in others[: max(0, len(others) - FINISHED_KEPT)]}
