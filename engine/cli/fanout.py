"""What `cache warm` shows of a fan-out (engine.transfers.fanout): its plan for `--dry-run`, and its progress as
it runs, per host and overall: a bar on a terminal, JSON lines with --json (one event a line, as `run --json`
prints them, and the outcome as the last line)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import TYPE_CHECKING, Any

from engine.cli.context import CliContext
from engine.presentation import duration_text, rate_text, size_text
from engine.transfers.progress import ActionFinished, ActionLog, ActionProgress, ActionStarted, RunOutcome

if TYPE_CHECKING:
    from engine.language.script import Location, Url
    from engine.transfers.actions import Transfers


def dry_run_warm(ctx: CliContext, transfers: Transfers, source: Location | Url, args: argparse.Namespace) -> int:
    """The plan of a warm: the fan-out's chains, hosts that have it, bytes per link, the estimate; the hosts the
    fan-out does not serve are filled each from the head. Nothing is sent."""
    from engine.transfers.fanout.chain_warm import chained_hosts, plan_warm

    chained = chained_hosts(transfers, source, args.hosts)
    others = [name for name in dict.fromkeys(args.hosts) if name not in chained]
    plan = plan_warm(transfers, source, chained, args.bwlimit, args.host_bwlimit) if chained else None  # type: ignore[arg-type]
    if ctx.json:
        ctx.emit_json({"fanout": plan.to_json() if plan else None, "each_from_the_head": others})
        return 0
    for line in plan.text() if plan else []:
        print(line)
    if others:
        print(f"each from the head, on its own: {', '.join(others)}")
    return 0


class FanoutProgress:
    """Prints a fan-out's events: JSON lines, or a line per host as it ends and the plan's lines, with an overall
    bar kept at the bottom on a terminal."""

    def __init__(self, as_json: bool, tty: bool) -> None:
        self.as_json = as_json
        self.tty = tty
        self._lock = threading.Lock()
        self._hosts: dict[int, str] = {}
        self._done: dict[int, int] = {}
        self._totals: dict[int, int] = {}
        self._rates: dict[int, float] = {}
        self._finished: set[int] = set()
        self._bar = False

    def __call__(self, event: Any) -> None:
        from engine.transfers.progress import event_json

        with self._lock:
            if self.as_json:
                if hasattr(event, "kind"):
                    self._write(json.dumps(event_json(event), default=str) + "\n")
                return
            if isinstance(event, ActionStarted):
                self._hosts[event.line] = event.host
            elif isinstance(event, ActionLog):
                self._line(f"  {event.message}")
            elif isinstance(event, ActionProgress):
                self._done[event.line] = event.bytes_done
                self._totals[event.line] = event.bytes_total or 0
                self._rates[event.line] = event.rate
                self._draw()
            elif isinstance(event, ActionFinished):
                self._finished.add(event.line)
                self._done[event.line] = event.bytes
                self._rates.pop(event.line, None)
                host = self._hosts.get(event.line, f"line {event.line}")
                if event.outcome is RunOutcome.DONE:
                    how = f" ({event.detail})" if event.detail else ""
                    self._line(f"  {host}: done, {size_text(event.bytes)} in {duration_text(event.seconds)}{how}")
                else:
                    self._line(f"  {host}: {event.outcome.value}: {event.error}")
                self._draw()

    def _write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def _line(self, text: str) -> None:
        self._write(("\r\x1b[K" if self._bar else "") + text + "\n")
        self._bar = False
        self._draw()

    def _draw(self) -> None:
        if not self.tty or not self._hosts:
            return
        total = sum(self._totals.values()) or 0
        done = sum(self._done.values())
        width = 30
        filled = int(width * done / total) if total else 0
        bar = f"[{'#' * filled}{'.' * (width - filled)}] " if total else ""
        rate = sum(self._rates.values())
        line = f"  fan-out {len(self._finished)}/{len(self._hosts)} hosts {bar}{size_text(done)}, {rate_text(rate)}"
        self._write("\r\x1b[K" + line)
        self._bar = True

    def end(self) -> None:
        with self._lock:
            if self._bar:
                self._write("\n")
                self._bar = False

    @staticmethod
    def document(value: Any) -> None:
        """The command's outcome, with --json: the last line."""
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()


def follow_warm(ctx: CliContext, request: dict[str, Any]) -> list[dict[str, Any]]:
    """Have the service run a `cache warm` and print its events until it ends; each host's outcome."""
    from engine.errors import OperationError
    from engine.service.client import ServiceClient
    from engine.service.protocol import WarmFinished

    client = ServiceClient(ctx.home, "cli")
    progress = FanoutProgress(ctx.json, sys.stdout.isatty())
    stream = client.subscribe()  # before asking: not one of the run's events is missed
    try:
        run = client.call("warm", **request)["run"]
        try:
            for event in stream:
                if getattr(event, "run", None) != run:
                    continue
                if isinstance(event, WarmFinished):
                    progress.end()
                    if event.error is not None:
                        raise OperationError(event.error)
                    return event.outcomes
                if isinstance(event, ActionLog) and event.error and event.line == 0 and not ctx.json:
                    print(f"headnode: {event.message}", file=sys.stderr)
                    continue
                progress(event)
        except KeyboardInterrupt:
            print("headnode: stopped following; the warm goes on in the service (headnode transfers)", file=sys.stderr)
            raise SystemExit(130) from None
        raise OperationError("the service stopped before the warm ended")
    finally:
        stream.close()
