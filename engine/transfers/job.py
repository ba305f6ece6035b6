"""What a running action can do besides its work: log, report progress, notice a cancel, wait out a retry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import Cancelled


@dataclass(frozen=True)
class RetryPolicy:
    """Transient network failures are retried `attempts - 1` times, waiting first_delay, then twice as long each."""

    attempts: int = 4
    first_delay: float = 0.5

    def delay(self, attempt: int) -> float:
        return self.first_delay * 2 ** (attempt - 1)


@dataclass(frozen=True)
class LineRef:
    """Which line of which run an action is: how the fan-out's gathering tells a CLONE that has asked it from one
    still to come (engine.transfers.fanout.gathering)."""

    run: str
    line: int


class Job:
    """The running action's handle on the outside world. The executor makes one per action (with its `origin`)."""

    def __init__(
        self,
        log: Callable[[str, bool], None] = lambda message, error: None,
        progress: Callable[[int, int | None], None] = lambda done, total: None,
        retrying: Callable[[int, str, float], None] = lambda attempt, error, delay: None,
        cancel: threading.Event | None = None,
        retry: RetryPolicy | None = None,
        origin: LineRef | None = None,
    ) -> None:
        self._log = log
        self._progress = progress
        self._retrying = retrying
        self.cancel_event = cancel or threading.Event()
        self.retry = retry or RetryPolicy()
        self.origin = origin

    def log(self, message: str, error: bool = False) -> None:
        self._log(message, error)

    def progress(self, done: int, total: int | None) -> None:
        self._progress(done, total)

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("cancelled")

    def wait_before_retry(self, attempt: int, error: str) -> None:
        """Announce retry `attempt` (1-based) and sleep its backoff; a cancel cuts the wait short."""
        delay = self.retry.delay(attempt)
        self._retrying(attempt, error, delay)
        if self.cancel_event.wait(delay):
            raise Cancelled("cancelled")
