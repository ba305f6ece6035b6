"""The journal of script runs (table `journal`): which lines of which run finished, so a run that was interrupted
(killed, crashed, failed, cancelled) can be resumed from its first unfinished line.

One record per run: its id, VM, the script's canonical text, the numbers of the lines done, and its state
(`running`, then `done`, `failed` or `cancelled`). Each finished line is on disk before the next one starts.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from engine.store import Store

TABLE = "journal"


@dataclass(frozen=True)
class JournalEntry:
    run: str
    vm: int | None
    script: str
    done: tuple[int, ...]
    state: str
    started: float


class Journal:
    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, vm: int | None, script: str, done: tuple[int, ...] = ()) -> str:
        run = uuid.uuid4().hex[:12]
        record = {
            "run": run,
            "vm": vm,
            "script": script,
            "done": list(done),
            "state": "running",
            "started": time.time(),
        }
        with self.store.write() as db:
            db.table(TABLE).insert(record)
        return run

    def line_done(self, run: str, line: int) -> None:
        with self.store.write() as db:
            table = db.table(TABLE)
            record = table.get(lambda d: d["run"] == run)
            if isinstance(record, dict):
                table.update({"done": [*record["done"], line]}, doc_ids=[record.doc_id])

    def finish(self, run: str, state: str) -> None:
        with self.store.write() as db:
            db.table(TABLE).update({"state": state}, lambda d: d["run"] == run)

    def unfinished(self, vm: int | None, script: str) -> JournalEntry | None:
        """The latest run of this script for this VM that did not finish, if any."""
        with self.store.read() as db:
            records = db.table(TABLE).search(lambda d: d["vm"] == vm and d["script"] == script)
        records.sort(key=lambda d: d["started"])
        if not records or records[-1]["state"] == "done":
            return None
        r = records[-1]
        return JournalEntry(r["run"], r["vm"], r["script"], tuple(r["done"]), r["state"], r["started"])
