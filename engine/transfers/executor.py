"""The executor: runs image scripts in worker threads it owns, and reports on an EventBus.

    executor = Executor(home, bus)
    run = executor.submit(script, vm_id=12)          # validated whole first: InputError, nothing runs
    run.cancel()  /  run.cancel_action(line)          # cooperative: copies check between chunks
    result = run.wait()                               # ScriptResult(outcome, failed_line, error, ...)
    run.retry()                                       # a new run from the first unfinished line
    executor.active()                                 # runs not finished yet
    with executor.together(): executor.submit(...)    # a batch: its runs start at once when the block ends

Scripts run in parallel (up to `max_scripts`), the lines of one script in order, stopping at the first failure.
Each host admits at most its `max_transfers` actions at once, across all scripts. Transient network failures are
retried with backoff, resuming the copy. Every action's start and end go to the VM's transfer log and the journal,
so `submit(..., resume=True)` continues an interrupted run of the same script from its first unfinished line.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from engine.errors import Cancelled, InputError, OperationError, Problem
from engine.events import EventBus
from engine.home import Home
from engine.language.numbers import whole_number
from engine.language.script import Clone, Link, Location, Script, ScriptLine, format_action
from engine.presentation import outcome_text
from engine.transfers.actions import ActionResult, Transfers, written_paths
from engine.transfers.fanout.gathering import Gatherer, Lookahead, Pending
from engine.transfers.job import Job, LineRef, RetryPolicy
from engine.transfers.journal import Journal, JournalState
from engine.transfers.log import TransferLog
from engine.transfers.openssh import OpenSsh, configured_accelerator
from engine.transfers.progress import (
    ActionFinished,
    ActionLog,
    ActionProgress,
    ActionRetry,
    ActionStarted,
    RunOutcome,
    ScriptFinished,
    ScriptProgress,
    ScriptStarted,
)
from engine.transfers.ssh import SshPool

PROGRESS_INTERVAL = 0.25  # seconds between progress events of one action
MAX_SCRIPTS = 15  # OpenNebula 1.4 ran 15 transfer files at once
KEEP_FINISHED_RUNS = 200  # finished runs a console may still retry


@dataclass(frozen=True)
class ScriptResult:
    run: str
    vm: int | None
    outcome: RunOutcome
    failed_line: int | None = None
    error: str | None = None
    lines_done: int = 0
    lines_total: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome is RunOutcome.DONE


class _Throttle:
    """Publishes progress at most every PROGRESS_INTERVAL, but always the first report, the first that shows
    bytes moving (so a watcher sees a copy start at once) and the last."""

    def __init__(self, publish: Callable[[int, int | None, float], None]) -> None:
        """publish(done, total, rate): the rate counts only bytes moved by this action (not a resumed head)."""
        self._publish = publish
        self._started = time.monotonic()
        self._last = 0.0
        self._first_done: int | None = None
        self._moved = False
        self._last_done = -1

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self._first_done is None:
            self._first_done = done
        moved = not self._moved and done > self._first_done
        finished = total is not None and done == total != self._last_done
        if moved or finished or now - self._last >= PROGRESS_INTERVAL:
            self._moved = self._moved or moved
            self._last = now
            self._last_done = done
            self._publish(done, total, (done - self._first_done) / (now - self._started or 1e-9))


class ScriptRun:
    """A submitted script: cancel it, cancel one of its actions, wait for its result."""

    def __init__(
        self,
        executor: Executor,
        script: Script,
        vm: int | None,
        run_id: str,
        skip: frozenset[int],
        resumed_from: str | None,
    ) -> None:
        self.executor = executor
        self.script = script
        self.vm = vm
        self.id = run_id
        self.skip = skip
        self.resumed_from = resumed_from
        self.resumed = resumed_from is not None  # a resumed run also continues partial files the interrupted one left
        self.position = 0  # the index of the line running (or next): those before it are finished
        self.started = False  # holds a script slot (MAX_SCRIPTS): its lines run
        self._cancel = threading.Event()
        self._action_cancels: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result: ScriptResult | None = None
        self.log = TransferLog(executor.home, vm)

    def cancel(self) -> None:
        """Stop the script: the running action stops at its next check, later lines do not run."""
        self._cancel.set()
        with self._lock:
            for event in self._action_cancels.values():
                event.set()

    def cancel_action(self, line: int) -> None:
        """Stop only the action of this line (the script then fails at that line)."""
        with self._lock:
            event = self._action_cancels.setdefault(line, threading.Event())
        event.set()

    @property
    def source(self) -> str:
        return self.script.source

    def remaining(self) -> list[ScriptLine]:
        """The lines not finished yet: the one running and those after it (the gathering's look ahead)."""
        return [
            line for index, line in enumerate(self.script.lines) if index >= self.position and index not in self.skip
        ]

    def retry(self) -> ScriptRun:
        """Run this script again from its first unfinished line (after it failed or was cancelled)."""
        return self.executor.submit(self.script, self.vm, resume=True)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> ScriptResult | None:
        """The result, once the script has finished (None if `timeout` passed first)."""
        self._done.wait(timeout)
        return self._result

    def _publish(self, event: object) -> None:
        self.executor.bus.publish(event)

    def _action_cancel(self, line: int) -> threading.Event:
        with self._lock:
            event = self._action_cancels.setdefault(line, threading.Event())
            if self._cancel.is_set():
                event.set()
        return event

    def _execute(self) -> None:
        self.started = True
        started = time.monotonic()
        lines = self.script.lines
        self._publish(
            ScriptStarted(self.id, self.vm, self.script.source, len(lines), len(self.skip), self.resumed_from)
        )
        self.log.write(f"Running {self.script.source} ({len(lines)} lines, run {self.id})")
        result = None
        for index, line in enumerate(lines):
            if index in self.skip:
                self.log.write(f"Line {line.number} was done by the interrupted run; skipping")
                continue
            if self._cancel.is_set():
                result = ScriptResult(
                    self.id, self.vm, RunOutcome.CANCELLED, line.number, "cancelled", index, len(lines)
                )
                break
            self.position = index
            self._publish(ScriptProgress(self.id, self.vm, index, len(lines), line.number))
            outcome, error = self._run_line(index, line)
            if outcome is not RunOutcome.DONE:
                result = ScriptResult(self.id, self.vm, outcome, line.number, error, index, len(lines))
                break
        if result is None:
            result = ScriptResult(self.id, self.vm, RunOutcome.DONE, None, None, len(lines), len(lines))
        self.executor.journal.finish(self.id, JournalState(result.outcome))
        if result.ok:
            self.log.write("Script finished successfully")
        else:
            ended = outcome_text(result.outcome, result.error)
            self.log.write(f"Script {result.outcome} at line {result.failed_line}{ended}", error=True)
        self._publish(
            ScriptFinished(
                self.id, self.vm, result.outcome, result.failed_line, result.error, time.monotonic() - started
            )
        )
        self._result = result
        self._done.set()

    def _run_line(self, index: int, line: ScriptLine) -> tuple[RunOutcome, str | None]:
        action, number = line.action, line.number
        transfers = self.executor.transfers
        text = format_action(action)
        cancel = self._action_cancel(number)
        started = time.monotonic()
        try:
            target = transfers.target(action)
            host_name, driver = target.name, target.driver
        except InputError as exc:
            return self._finish_line(index, line, RunOutcome.FAILED, ActionResult(), started, str(exc))

        def log(message: str, error: bool) -> None:
            self.log.write(message, error)
            self._publish(ActionLog(self.id, self.vm, number, message, error))

        def progress(done: int, total: int | None, rate: float) -> None:
            eta = (total - done) / rate if total is not None and rate > 0 else None
            self._publish(ActionProgress(self.id, self.vm, number, action.name, done, total, rate, eta))

        def retrying(attempt: int, error: str, delay: float) -> None:
            log(f"{action.name}: {error}; retry {attempt} in {delay:g} s", False)
            self._publish(ActionRetry(self.id, self.vm, number, action.name, attempt, error, delay))

        job = Job(log, _Throttle(progress), retrying, cancel, self.executor.retry, LineRef(self.id, number))
        # The slot is held until the end is reported, so a host's started/finished events never overlap its limit.
        try:
            slots = self.executor.host_slots(self._hosts_of(line), cancel)
        except Cancelled:
            return self._finish_line(index, line, RunOutcome.CANCELLED, ActionResult(), started, "cancelled")
        except InputError as exc:  # a host deleted since the script was checked
            return self._finish_line(index, line, RunOutcome.FAILED, ActionResult(), started, str(exc))
        with slots:
            try:
                job.check_cancel()
                self._publish(ActionStarted(self.id, self.vm, number, action.name, text, host_name, driver))
                self.log.write(f"{text} (line {number}, host {host_name}, driver {driver}) started")
                self.executor.journal.action_started(self.id, index, number)
                started = time.monotonic()
                result = transfers.run(action, job, self.vm, resume_partial=self.resumed)
            except Cancelled:
                return self._finish_line(index, line, RunOutcome.CANCELLED, ActionResult(), started, "cancelled")
            except (OperationError, InputError) as exc:
                return self._finish_line(index, line, RunOutcome.FAILED, ActionResult(), started, str(exc))
            except OSError as exc:
                # The file made or written: os.symlink(target, path) and os.rename(src, dst) name it second.
                message = f"{exc.strerror or exc}: {exc.filename2 or exc.filename or ''}"
                return self._finish_line(index, line, RunOutcome.FAILED, ActionResult(), started, message)
            except Exception as exc:  # a bug: fail this line, keep the traceback in the VM's log
                self.log.write(traceback.format_exc(), error=True)
                return self._finish_line(
                    index, line, RunOutcome.FAILED, ActionResult(), started, f"internal error: {exc!r}"
                )
            return self._finish_line(index, line, RunOutcome.DONE, result, started, None)

    def _hosts_of(self, line: ScriptLine) -> list[str]:
        action = line.action
        names = {loc.host for loc in written_paths(action)}
        if isinstance(getattr(action, "source", None), Location):
            names.add(action.source.host)  # type: ignore[union-attr]
        names.discard(self.executor.transfers.hosts.frontend_name)
        return sorted(names)

    def _finish_line(
        self,
        index: int,
        line: ScriptLine,
        outcome: RunOutcome,
        result: ActionResult,
        started: float,
        error: str | None,
    ) -> tuple[RunOutcome, str | None]:
        seconds = time.monotonic() - started
        name = line.action.name
        if outcome is RunOutcome.DONE:
            checksum = f", checksum {result.checksum}" if result.checksum else ""
            detail = f" ({result.detail})" if result.detail else ""
            self.log.write(
                f"{name} (line {line.number}) done: {result.bytes} bytes in {seconds:.2f} s{checksum}{detail}"
            )
        else:
            self.log.write(f"{name} (line {line.number}) {outcome}{outcome_text(outcome, error)}", error=True)
        journal = self.executor.journal
        journal.action_finished(self.id, index, outcome, result.bytes, result.checksum, error, line=line.number)
        self._publish(
            ActionFinished(
                self.id,
                self.vm,
                line.number,
                name,
                outcome,
                result.bytes,
                seconds,
                result.checksum,
                error,
                result.detail,
            )
        )
        return outcome, error


class _Slots:
    """A host's transfer slots: at most `limit` held at once. The limit may change while slots are held; a lower
    one admits no new transfer until enough of the running ones end (none is stopped)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._limit = 1
        self._held = 0

    def limit(self, limit: int) -> None:
        with self._changed:
            self._limit = limit
            self._changed.notify_all()

    def acquire(self, timeout: float) -> bool:
        with self._changed:
            if not self._changed.wait_for(lambda: self._held < self._limit, timeout):
                return False
            self._held += 1
            return True

    def release(self) -> None:
        with self._changed:
            self._held -= 1
            self._changed.notify_all()


def configured_max_scripts(home: Home) -> int:
    """MAX_SCRIPTS of headnode.conf: how many scripts run at once (the others wait their turn)."""
    text = home.config.template.get("MAX_SCRIPTS") or str(MAX_SCRIPTS)
    number = whole_number(text)
    if not number:
        line = home.config.template.all("MAX_SCRIPTS")[0].line
        raise InputError(Problem(f"MAX_SCRIPTS {text!r} is not a whole number above 0", str(home.config_path), line))
    return number


class Executor:
    """Runs scripts for one home. Close it to stop accepting scripts and release SSH connections."""

    def __init__(
        self,
        home: Home,
        bus: EventBus | None = None,
        *,
        max_scripts: int | None = None,
        retry: RetryPolicy | None = None,
        accelerator: OpenSsh | bool | None = None,
    ) -> None:
        self.home = home
        self.bus = bus or EventBus()
        self.retry = retry or RetryPolicy()
        self.pool = SshPool()
        # None: as headnode.conf says; False: paramiko only; True or an OpenSsh: the OpenSSH accelerator.
        if accelerator is None:
            accelerator = configured_accelerator(home)
        elif accelerator is True:
            accelerator = configured_accelerator(home) or OpenSsh()
        self.accelerator = accelerator or None
        self.transfers = Transfers(home, self.pool, self.accelerator)
        self.transfers.gathering = Gatherer(self.transfers, self._lookahead, self.bus.publish)
        self.journal = Journal(home)
        self._max_scripts = max_scripts or configured_max_scripts(home)
        self._scripts = threading.BoundedSemaphore(self._max_scripts)
        self._slots_lock = threading.Lock()
        self._slots: dict[str, _Slots] = {}
        self._threads: set[threading.Thread] = set()  # the workers still running (each forgets itself when done)
        self._runs_lock = threading.Lock()
        self._runs: dict[str, ScriptRun] = {}  # by id, so a console can cancel or retry a run it did not submit
        self._holding = 0  # `together` blocks open: while any is, new workers wait in _held
        self._held: list[threading.Thread] = []

    def validate(self, script: Script) -> list[Problem]:
        """Every reason a line of the script cannot run, located by line."""
        problems = []
        earlier: list[Location] = []
        for line in script.lines:
            for message in self.transfers.check(line.action, earlier):
                problems.append(Problem(message, script.source, line.number or None))
            earlier.append(line.action.dest)
        return problems

    def submit(self, script: Script, vm_id: int | None = None, *, resume: bool = False) -> ScriptRun:
        """Validate the whole script (InputError if any line cannot run), then start it in a worker thread.
        With resume, the lines done by the last unfinished run of the same script for this VM are skipped."""
        problems = self.validate(script)
        if problems:
            raise InputError(problems)
        text = script.format()
        skip: tuple[int, ...] = ()
        resumed_from = None
        if resume:
            previous = self.journal.unfinished(vm_id, text)
            if previous is None:
                of_vm = f" for VM {vm_id}" if vm_id is not None else ""
                raise InputError(Problem(f"no unfinished run of {script.source}{of_vm} to resume"))
            skip, resumed_from = previous.done, previous.run
            self.journal.finish(previous.run, JournalState.RESUMED)
        run_id = self.journal.start(vm_id, text, skip, script.source)
        run = ScriptRun(self, script, vm_id, run_id, frozenset(skip), resumed_from)
        with self._runs_lock:
            self._runs[run.id] = run
            finished = [key for key, old in self._runs.items() if old.done]
            for key in finished[: max(0, len(finished) - KEEP_FINISHED_RUNS)]:
                del self._runs[key]
        thread = threading.Thread(target=self._worker, args=(run,), name=f"script-{run.id}", daemon=True)
        with self._runs_lock:
            self._threads.add(thread)
            held = self._holding > 0
            if held:
                self._held.append(thread)
        if not held:
            thread.start()
        return run

    @contextmanager
    def together(self) -> Iterator[None]:
        """Runs submitted while the block is open (from any thread: the service submits a VM operation's script
        on a thread of the operation's) start when it ends, all at once: each is active before any CLONE of theirs
        asks the gathering, so a batch's CLONEs of one image go as one fan-out (engine.transfers.fanout.gathering)
        rather than the first alone. Blocks open at once end as one, when the last does."""
        with self._runs_lock:
            self._holding += 1
        try:
            yield
        finally:
            with self._runs_lock:
                self._holding -= 1
                ready, self._held = (self._held, []) if not self._holding else ([], self._held)
            for thread in ready:
                thread.start()

    def _worker(self, run: ScriptRun) -> None:
        try:
            with self._scripts:
                try:
                    run._execute()
                except BaseException as exc:  # a bug must still end the run, or wait() would hang
                    run._result = ScriptResult(run.id, run.vm, RunOutcome.FAILED, None, f"internal error: {exc!r}")
                    run._done.set()
                    raise
        finally:
            with self._runs_lock:
                self._threads.discard(threading.current_thread())

    def find(self, run_id: str) -> ScriptRun | None:
        """A run submitted to this executor, by id (the `run` of its events); the last finished ones are kept."""
        with self._runs_lock:
            return self._runs.get(run_id)

    def host_slots(self, hosts: list[str], cancel: threading.Event) -> ExitStack:
        """Hold one transfer slot on each host (taken in name order, so two actions never deadlock). Waiting for
        a slot ends with Cancelled if `cancel` is set meanwhile."""
        stack = ExitStack()
        try:
            for name in hosts:
                # The host's record is read each time (a stat while it is unchanged): an edited MAX_TRANSFERS
                # holds from the next transfer on, not from the next restart.
                limit = self.transfers.hosts.resolve(name).max_transfers
                with self._slots_lock:
                    slot = self._slots.setdefault(name, _Slots())
                slot.limit(limit)
                while not slot.acquire(timeout=0.1):
                    if cancel.is_set():
                        raise Cancelled("cancelled while waiting for a transfer slot on " + name)
                stack.callback(slot.release)
        except BaseException:
            stack.close()
            raise
        return stack

    def active(self) -> list[ScriptRun]:
        """The runs not finished yet, oldest first."""
        with self._runs_lock:
            return [run for run in self._runs.values() if not run.done]

    def _lookahead(self) -> Lookahead:
        """For the gathering: the CLONE and LN lines the active runs have still to run (a source on some host),
        the runs holding a script slot, and those waiting for one when every slot is taken."""
        active = self.active()
        running = frozenset(run.id for run in active if run.started)
        full = len(running) >= self._max_scripts
        lines = tuple(
            Pending(LineRef(run.id, line.number), line.action.source, line.action.dest.host)
            for run in active
            for line in run.remaining()
            if isinstance(line.action, Clone | Link) and isinstance(line.action.source, Location)
        )
        return Lookahead(
            lines, running, frozenset(run.id for run in active if not run.started) if full else frozenset()
        )

    def close(self) -> None:
        with self._runs_lock:
            running = list(self._threads)
        for thread in running:
            thread.join()
        self.pool.close()
