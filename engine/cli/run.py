"""`headnode run SCRIPT`: validate an image script whole, then run it through the hosts' transfer drivers.

Progress: bars on a terminal, plain lines otherwise, JSON lines with --json (one object per event, its kind in
`event`). Exit 0 when every line ran, 1 when one failed, 2 when the script is invalid (nothing ran), 130 after
Ctrl-C (the running action is cancelled and leaves nothing at its destination).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from engine.cli.context import CliContext
from engine.presentation import duration_text, eta_text, rate_text, size_text


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "run", parents=[common], help="run an image script", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("script", metavar="SCRIPT", help="image script file")
    p.add_argument("--vm", type=int, metavar="ID", help="the VM the script is for (its log: <home>/logs/vm-ID.log)")
    p.add_argument("--resume", action="store_true", help="continue the last interrupted run of this script")
    p.set_defaults(handler=run_script)


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
                sys.stdout.write(json.dumps(event_json(event)) + "\n")
                sys.stdout.flush()
                return
            text = self._text(event)
            if text is None:
                return
            if self.tty and event.kind == "action_progress":
                sys.stdout.write("\r\x1b[K" + text)
                self._bar = True
            else:
                sys.stdout.write(("\r\x1b[K" if self._bar else "") + text + "\n")
                self._bar = False
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
            if e.outcome == "done":
                copied = e.checksum is not None and e.seconds > 0  # a rate means something for copies only
                rate = f", {rate_text(e.bytes / e.seconds)}" if copied else ""
                return f"  done: {size_text(e.bytes)} in {duration_text(e.seconds)}{rate}"
            return f"  {e.outcome}: {e.error}"
        if e.kind == "script_finished":
            if e.outcome == "done":
                return f"{vm}script done in {duration_text(e.seconds)}"
            return f"{vm}script {e.outcome} at line {e.failed_line}: {e.error}"
        return None


def run_script(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.errors import InputError, Problem
    from engine.events import EventBus
    from engine.language.script import load_script
    from engine.transfers.executor import Executor

    if args.vm is not None and args.vm < 0:
        raise InputError(Problem(f"--vm must be a VM id (0 or more), not {args.vm}"))
    script = load_script(args.script)
    bus = EventBus()
    bus.subscribe(Printer(ctx.json, sys.stdout.isatty()))
    executor = Executor(ctx.home, bus)
    try:
        run = executor.submit(script, args.vm, resume=args.resume)
        try:
            while (result := run.wait(0.2)) is None:
                pass
        except KeyboardInterrupt:
            run.cancel()
            result = run.wait()
            print("headnode: interrupted; the running action was cancelled", file=sys.stderr)
            return 130
    finally:
        executor.close()
    return 0 if result.ok else 1
