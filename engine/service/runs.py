"""A picture of image-script runs built from the executor's events: the service keeps one for every client
(`headnode transfers`, the history), the console one for its Transfers screen and Dashboard.

Finished runs stay as "recent" until `recent_kept` newer ones have finished. A run's JSON (what `transfers --json`
prints and the history keeps) carries run, vm, state, bytes_done, bytes_total and its lines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from time import time
from typing import Any

from engine.transfers.progress import (
    ActionFinished,
    ActionProgress,
    ActionRetry,
    ActionStarted,
    RunOutcome,
    ScriptFinished,
    ScriptProgress,
    ScriptStarted,
)

RECENT_KEPT = 20
TRANSFER_EVENTS = (
    ScriptStarted,
    ActionStarted,
    ActionProgress,
    ActionRetry,
    ActionFinished,
    ScriptProgress,
    ScriptFinished,
)


class RunStatus(StrEnum):
    """What a run or one of its lines is doing, or how it ended (its value is what JSON and the history say)."""

    RUNNING = "running"
    RETRYING = "retrying"  # a line only: waiting to try again after a transient failure
    DONE = RunOutcome.DONE.value
    FAILED = RunOutcome.FAILED.value
    CANCELLED = RunOutcome.CANCELLED.value
    INTERRUPTED = "interrupted"  # its service died; `resumed_by` names the run that took over, if one did

    @property
    def active(self) -> bool:
        return self in (RunStatus.RUNNING, RunStatus.RETRYING)


@dataclass(frozen=True)
class ActionState:
    line: int
    action: str
    text: str
    host: str
    bytes_done: int = 0
    bytes_total: int | None = None
    rate: float = 0.0
    eta: float | None = None
    state: RunStatus = RunStatus.RUNNING
    error: str | None = None


@dataclass
class RunState:
    run: str
    vm: int | None
    source: str
    lines_total: int
    lines_done: int = 0
    state: RunStatus = RunStatus.RUNNING
    failed_line: int | None = None
    error: str | None = None
    actions: dict[int, ActionState] = field(default_factory=dict)
    started: float = field(default_factory=time)
    ended: float | None = None
    resumed_from: str | None = None
    resumed_by: str | None = None

    @property
    def bytes_done(self) -> int:
        return sum(a.bytes_done for a in self.actions.values())

    @property
    def bytes_total(self) -> int | None:
        totals = [a.bytes_total for a in self.actions.values() if a.bytes_total]
        return sum(totals) if totals else None

    @property
    def rate(self) -> float:
        return sum(a.rate for a in self.actions.values() if a.state is RunStatus.RUNNING)

    @property
    def done_fraction(self) -> float:
        """How far the run is, weighted by bytes: a line whose size is known weighs its bytes, and one whose
        size is not known yet (not started, or a download without a length) the mean of the known ones. So a
        16 MiB copy a third done moves the bar at once, and a small CONTEXT after it does not weigh a third."""
        if self.state == RunStatus.DONE:
            return 1.0
        sizes = [a.bytes_total for a in self.actions.values() if a.bytes_total]
        unit = sum(sizes) / len(sizes) if sizes else 1.0
        done = total = 0.0
        for action in self.actions.values():
            weight = action.bytes_total or unit
            total += weight
            if action.state == "done":
                done += weight
            elif action.bytes_total:
                done += weight * min(action.bytes_done / action.bytes_total, 1.0)
        # Lines without an action yet: still to run, or done by the run this one resumes.
        finished_here = sum(a.state == "done" for a in self.actions.values())
        unseen = max(self.lines_total - len(self.actions), 0)
        total += unseen * unit
        done += min(max(self.lines_done - finished_here, 0), unseen) * unit
        return done / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "actions"}
        data["state"] = str(self.state)
        data["bytes_done"] = self.bytes_done
        data["bytes_total"] = self.bytes_total
        data["rate"] = self.rate
        data["lines"] = [asdict(a) for _, a in sorted(self.actions.items())]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "actions"}
        run = cls(**{**fields, "state": RunStatus(fields.get("state", RunStatus.RUNNING))})
        run.actions = {a["line"]: ActionState(**{**a, "state": RunStatus(a["state"])}) for a in data.get("lines", [])}
        return run


def script_title(source: str, vm: int | None) -> str:
    """What the console calls a running script: a VM's planned image script by its VM (its source is only a
    placeholder such as `<plan>`), any other by its file."""
    return f"the image script of VM {vm}" if vm is not None else source


class TransferBoard:
    """Runs by id, in the order they started."""

    def __init__(self, recent_kept: int = RECENT_KEPT) -> None:
        self.runs: dict[str, RunState] = {}
        self.recent_kept = recent_kept
        self.version = 0  # bumped on every change, so views redraw only when something moved

    def load(self, runs: list[RunState]) -> None:
        """Take runs known from elsewhere (the service's history and active runs), oldest first."""
        for run in runs:
            self.runs[run.run] = run
        self.version += 1
        self._forget_old()

    def apply(self, event: Any) -> bool:
        """Take one event; False if it is not a transfer event."""
        if not isinstance(event, TRANSFER_EVENTS):
            return False
        self.version += 1
        if isinstance(event, ScriptStarted):
            self.runs[event.run] = RunState(
                event.run,
                event.vm,
                event.source,
                event.lines,
                event.skipped,
                started=event.at,
                resumed_from=event.resumed_from,
            )
            previous = self.runs.get(event.resumed_from or "")
            if previous is not None:
                previous.resumed_by = event.run
            return True
        run = self.runs.get(event.run)
        if run is None:
            return True
        if isinstance(event, ActionStarted):
            run.actions[event.line] = ActionState(event.line, event.action, event.text, event.host)
        elif isinstance(event, ActionProgress):
            action = run.actions.get(event.line)
            if action is not None:
                run.actions[event.line] = replace(
                    action,
                    bytes_done=event.bytes_done,
                    bytes_total=event.bytes_total,
                    rate=event.rate,
                    eta=event.eta,
                    state=RunStatus.RUNNING,
                )
        elif isinstance(event, ActionRetry):
            action = run.actions.get(event.line)
            if action is not None:
                run.actions[event.line] = replace(action, state=RunStatus.RETRYING, error=event.error)
        elif isinstance(event, ActionFinished):
            action = run.actions.get(event.line)
            if action is not None:
                total = action.bytes_total if action.bytes_total is not None else event.bytes
                run.actions[event.line] = replace(
                    action,
                    bytes_done=event.bytes,
                    bytes_total=total,
                    rate=0.0,
                    eta=None,
                    state=RunStatus(event.outcome),
                    error=event.error,
                )
        elif isinstance(event, ScriptProgress):
            run.lines_done = event.lines_done
        elif isinstance(event, ScriptFinished):
            run.state, run.failed_line, run.error = RunStatus(event.outcome), event.failed_line, event.error
            run.ended = event.at
            if event.outcome is RunOutcome.DONE:
                run.lines_done = run.lines_total
            self._forget_old()
        return True

    def _forget_old(self) -> None:
        finished = [run_id for run_id, run in self.runs.items() if run.state is not RunStatus.RUNNING]
        for run_id in finished[: max(0, len(finished) - self.recent_kept)]:
            del self.runs[run_id]

    def running(self) -> list[RunState]:
        return [run for run in self.runs.values() if run.state is RunStatus.RUNNING]

    def in_flight(self) -> tuple[int, int, float]:
        """Bytes done and bytes planned over the running actions whose size is known, and their total rate."""
        done = total = 0
        rate = 0.0
        for run in self.running():
            for action in run.actions.values():
                if action.state.active and action.bytes_total:
                    done += action.bytes_done
                    total += action.bytes_total
                    rate += action.rate
        return done, total, rate
