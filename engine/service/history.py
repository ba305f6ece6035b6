"""The run history in the home (`run/history.json`): the last HISTORY_KEPT finished runs, with their lines, kept
across service restarts so `headnode transfers` and the console show what ran before.

Written whole (temporary file, then rename) when a run ends; a damaged file is set aside as history.json.damaged
and reported, never silently overwritten.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from engine.service.runs import RunState
from engine.store.atomic import write_atomically

HISTORY_KEPT = 200


class History:
    def __init__(self, path: Path, kept: int = HISTORY_KEPT) -> None:
        self.path = path
        self.kept = kept
        self.problem: str | None = None  # what was wrong with the file when it was read, for the service's log
        self._lock = threading.Lock()
        self._runs: dict[str, RunState] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            runs = [RunState.from_json(item) for item in data]
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            damaged = self.path.with_name(self.path.name + ".damaged")
            os.replace(self.path, damaged)
            self.problem = f"run history {self.path} is damaged ({exc}); kept as {damaged}, starting a new one"
            return
        self._runs = {run.run: run for run in runs}

    def runs(self) -> list[RunState]:
        """Oldest first."""
        with self._lock:
            return list(self._runs.values())

    def get(self, run_id: str) -> RunState | None:
        with self._lock:
            return self._runs.get(run_id)

    def add(self, *runs: RunState) -> None:
        """Record finished runs (a run already recorded is replaced) and write the file."""
        with self._lock:
            for run in runs:
                self._runs.pop(run.run, None)
                self._runs[run.run] = RunState.from_json(run.to_json())  # a copy: the board goes on changing its own
            for old in list(self._runs)[: max(0, len(self._runs) - self.kept)]:
                del self._runs[old]
            text = json.dumps([run.to_json() for run in self._runs.values()])
            write_atomically(self.path, text)
