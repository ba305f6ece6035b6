"""Submitting work to the home's service and following it: what `run` and the `vm` operations share.

Following prints the run's events: progress bars on a terminal, plain lines otherwise, JSON lines with --json (one
object per event, its kind in `event`). `--detach` returns as soon as the service accepted the work. Ctrl-C stops
following only: the work goes on in the service, and the message says how to watch or cancel it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from engine.cli.context import CliContext
from engine.errors import HeadnodeError, OperationError, Problem
from engine.presentation import duration_text, eta_text, outcome_text, rate_text, size_text
from engine.transfers.progress import RunOutcome


def add_follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detach", action="store_true", help="return once the service accepted it; it goes on")


class Printer:
    """Turns events into output: JSON lines, progress bars on a terminal, or plain lines."""

    def __init__(self, as_json: bool, tty: bool) -> None:
        self.as_json = as_json
        self.tty = tty
        self._lock = threading.Lock()
        self._bar = False

    def __call__(self, event: Any) -> None:
        from engine.transfers.progress import event_json

        with self._lock:
            if self.as_json:
                self.json_line(event_json(event))
                return
            text = self._text(event)
            if text is None:
                return
            if self.tty and event.kind == "action_progress":
                sys.stdout.write("\r\x1b[K" + text)
                self._bar = True
            else:
                self.line(text)
            sys.stdout.flush()

    def line(self, text: str) -> None:
        sys.stdout.write(("\r\x1b[K" if self._bar else "") + text + "\n")
        self._bar = False
        sys.stdout.flush()

    def json_line(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    def _text(self, e: Any) -> str | None:
        vm = "" if e.vm is None else f"vm {e.vm} "
        if e.kind == "action_started":
            return f"{vm}line {e.line}: {e.text}"
        if e.kind == "action_progress":
            if not self.tty:
                return None
            total = e.bytes_total
            pct = f"{100 * e.bytes_done / total:5.1f}% " if total else ""
            width = 30
            filled = int(width * e.bytes_done / total) if total else 0
            bar = f"[{'#' * filled}{'.' * (width - filled)}] " if total else ""
            eta = f" ETA {eta_text(e.eta)}" if e.eta is not None else ""
            return f"  {bar}{pct}{size_text(e.bytes_done)} {rate_text(e.rate)}{eta}"
        if e.kind == "action_retry":
            return f"  retry {e.attempt} in {duration_text(e.delay)}: {e.error}"
        if e.kind == "action_log":
            return f"  {e.message}"
        if e.kind == "action_finished":
            if e.outcome is RunOutcome.DONE:
                copied = e.checksum is not None and e.seconds > 0  # a rate means something for copies only
                rate = f", {rate_text(e.bytes / e.seconds)}" if copied else ""
                size = f": {size_text(e.bytes)}" if e.bytes else ""  # a DELETE or a site program's LN moves none
                detail = f" ({e.detail})" if e.detail else ""
                return f"  done{size} in {duration_text(e.seconds)}{rate}{detail}"
            return f"  {e.outcome}{outcome_text(e.outcome, e.error)}"
        if e.kind == "script_finished":
            if e.outcome is RunOutcome.DONE:
                return f"{vm}script done in {duration_text(e.seconds)}"
            return f"{vm}script {e.outcome} at line {e.failed_line}{outcome_text(e.outcome, e.error)}"
        return None


def submit_and_follow(
    ctx: CliContext, op: str, request: dict[str, Any], detach: bool, finish: Callable[[Printer, Any], int] | None
) -> int:
    """Send request `op` to the service; unless detached, print its run's events until it ends. `finish(printer,
    end)` reports a VM operation's end (a VmOperationFinished, or the finished VM's JSON when nothing had to run)
    and gives the exit status; without it the run's outcome does (0 done, 1 otherwise)."""
    from engine.service.client import ServiceClient
    from engine.service.protocol import VmOperationFinished
    from engine.transfers.progress import ScriptFinished

    client = ServiceClient(ctx.home, "cli")
    printer = Printer(ctx.json, sys.stdout.isatty())
    stream = None if detach else client.subscribe()  # before submitting: not one of the run's events is missed
    try:
        accepted = client.call(op, **request)
        run = accepted.get("run")
        if detach or run is None:
            if run is None and finish is not None:
                return finish(printer, accepted.get("finished"))
            if ctx.json:
                printer.json_line({"event": "accepted", **accepted})
            else:
                print(f"run {run} accepted; watch it: headnode transfers --follow; cancel it: headnode cancel {run}")
            return 0
        assert stream is not None
        try:
            for event in stream:
                if getattr(event, "run", None) != run:
                    continue
                if isinstance(event, VmOperationFinished):
                    return finish(printer, event) if finish is not None else (0 if event.ok else 1)
                printer(event)
                if isinstance(event, ScriptFinished) and finish is None:
                    if event.outcome is RunOutcome.DONE:
                        return 0
                    # stdout had the run's lines; a failure is an error, so stderr says it too
                    ended = f"script {event.outcome}{outcome_text(event.outcome, event.error)}"
                    print(Problem(ended, request.get("source"), event.failed_line), file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            print(
                f"headnode: stopped following; run {run} goes on in the service. "
                f"Watch it: headnode transfers --follow; cancel it: headnode cancel {run}",
                file=sys.stderr,
            )
            return 130
        raise OperationError(f"the service stopped before run {run} ended; it resumes when the service starts again")
    finally:
        if stream is not None:
            stream.close()


def submit_batch_and_follow(
    ctx: CliContext, request: dict[str, Any], detach: bool, finish_for: Callable[[int], Callable[[Printer, Any], int]]
) -> int:
    """Send a `vm_batch` request (several VMs' operations, started together); unless detached, print the events of
    all its runs until every VM's operation has ended, each end reported by `finish_for(vm)`. Exit status 0 when
    every one succeeded, else 1 (a VM refused or failed says so on stderr)."""
    from engine.service.client import ServiceClient
    from engine.service.protocol import VmOperationFinished

    client = ServiceClient(ctx.home, "cli")
    printer = Printer(ctx.json, sys.stdout.isatty())
    stream = None if detach else client.subscribe()  # before submitting: not one of the runs' events is missed
    try:
        answers = client.call("vm_batch", **request)["vms"]
        status = 0

        def ended(vm: int, end: Any) -> None:
            nonlocal status
            try:
                status |= finish_for(vm)(printer, end)
            except HeadnodeError as exc:
                ctx.report(exc)
                status = 1

        runs = {answer["run"]: answer["vm"] for answer in answers if answer.get("run")}
        for answer in answers:
            if answer.get("error"):
                ctx.report(OperationError(f"VM {answer['vm']}: {answer['error']}"))
                status = 1
            elif not answer.get("run"):
                ended(answer["vm"], answer.get("finished"))
        if detach:
            for run, vm in runs.items():
                if ctx.json:
                    printer.json_line({"event": "accepted", "run": run, "vm": vm})
                else:
                    print(f"VM {vm}: run {run} accepted; watch it: headnode transfers --follow")
            return status
        assert stream is not None
        waiting = set(runs)
        try:
            for event in stream if waiting else ():
                run = getattr(event, "run", None)
                if run not in waiting:
                    continue
                if isinstance(event, VmOperationFinished):
                    waiting.discard(run)
                    ended(runs[run], event)
                    if not waiting:
                        break
                    continue
                printer(event)
        except KeyboardInterrupt:
            print(
                "headnode: stopped following; the runs go on in the service: headnode transfers --follow",
                file=sys.stderr,
            )
            return 130
        if waiting:
            raise OperationError("the service stopped before the runs ended; they resume when the service starts again")
        return status
    finally:
        if stream is not None:
            stream.close()
