"""Events of running image scripts, published on the EventBus; each has a `kind` (the JSON `event` field).

Progress events are throttled by the executor to a few per second per action; the others are sent as they
happen. `run` is the script run's id, `vm` its VM (None when run without one), `line` the script line number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from time import time
from typing import Any, ClassVar


class RunOutcome(StrEnum):
    """How a script, or one line of it, ended (its value is what JSON, logs and the journal say)."""

    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ScriptStarted:
    kind: ClassVar[str] = "script_started"
    run: str
    vm: int | None
    source: str
    lines: int
    skipped: int = 0  # lines already done by the run this one resumes
    resumed_from: str | None = None  # the interrupted run this one continues
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class ActionStarted:
    kind: ClassVar[str] = "action_started"
    run: str
    vm: int | None
    line: int
    action: str
    text: str
    host: str
    driver: str
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class ActionProgress:
    kind: ClassVar[str] = "action_progress"
    run: str
    vm: int | None
    line: int
    action: str
    bytes_done: int
    bytes_total: int | None
    rate: float  # bytes per second, averaged over the action so far
    eta: float | None  # seconds left, when the total is known
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class ActionRetry:
    kind: ClassVar[str] = "action_retry"
    run: str
    vm: int | None
    line: int
    action: str
    attempt: int
    error: str
    delay: float
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class ActionLog:
    """A line for the VM's transfer log (an external program's output, a driver's note)."""

    kind: ClassVar[str] = "action_log"
    run: str
    vm: int | None
    line: int
    message: str
    error: bool = False
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class ActionFinished:
    kind: ClassVar[str] = "action_finished"
    run: str
    vm: int | None
    line: int
    action: str
    outcome: RunOutcome
    bytes: int
    seconds: float
    checksum: str | None = None  # "cksum:VALUE" or "sha256:VALUE", of a copied file
    error: str | None = None
    detail: str = ""  # how it was done, e.g. "stream, local to openssh"
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class ScriptProgress:
    kind: ClassVar[str] = "script_progress"
    run: str
    vm: int | None
    lines_done: int
    lines_total: int
    line: int  # the line running now
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class ScriptFinished:
    kind: ClassVar[str] = "script_finished"
    run: str
    vm: int | None
    outcome: RunOutcome
    failed_line: int | None = None
    error: str | None = None
    seconds: float = 0.0
    at: float = field(default_factory=time)


def event_json(event: Any) -> dict[str, Any]:
    """A JSON object for an event, with its kind as `event`."""
    return {"event": event.kind, **asdict(event)}
