"""The home's engine service from the CLI: `daemon` (foreground, for systemd), `daemon status`, `daemon stop`;
`transfers` (runs active and recent, from every client), `cancel VM|RUN`, and `log` (the audit history)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from engine.cli.context import CliContext, format_table
from engine.presentation import duration_text, eta_text, progress_text, rate_text, time_text
from engine.service.runs import RunStatus


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    daemon = subparsers.add_parser(
        "daemon", parents=[common], help="the engine service: run it in the foreground, or its status, stop"
    )
    daemon.set_defaults(handler=run_daemon)
    verbs = daemon.add_subparsers(dest="verb", metavar="VERB", parser_class=type(daemon))
    status = verbs.add_parser("status", parents=[common], help="pid, socket, uptime and runs of the service")
    status.set_defaults(handler=run_status)
    stop = verbs.add_parser("stop", parents=[common], help="stop the service (refused while runs are active)")
    stop.add_argument("--force", action="store_true", help="cancel the active runs cleanly, then stop")
    stop.set_defaults(handler=run_stop)

    transfers = subparsers.add_parser("transfers", parents=[common], help="runs active and recent, from every client")
    transfers.add_argument("--follow", action="store_true", help="keep showing them until no run is active")
    transfers.set_defaults(handler=run_transfers)

    cancel = subparsers.add_parser("cancel", parents=[common], help="cancel a run, or every run of a VM")
    cancel.add_argument("target", metavar="VM|RUN", help="a VM id or a run id (as `transfers` shows)")
    cancel.set_defaults(handler=run_cancel)

    log = subparsers.add_parser("log", parents=[common], help="who changed what on this head node")
    log.add_argument("--limit", type=int, default=100, metavar="N", help="the last N changes (default 100, 0: all)")
    log.set_defaults(handler=run_log)


def _client(ctx: CliContext) -> Any:
    from engine.service.client import ServiceClient

    return ServiceClient(ctx.home, "cli")


def run_daemon(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.service.server import run_service

    return run_service(ctx.home)


def run_status(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.service.client import NotRunning
    from engine.service.protocol import ServicePaths

    try:
        status = _client(ctx).call("status", start=False)
    except NotRunning:
        if ctx.json:
            ctx.emit_json({"running": False, "socket": str(ServicePaths(ctx.home).socket)})
        else:
            print(f"no service runs for {ctx.home.root}")
        return 1
    if ctx.json:
        ctx.emit_json({"running": True, **status})
        return 0
    print(
        f"service pid {status['pid']}, up {duration_text(status['uptime'], whole=True)}, "
        f"{status['runs_active']} run(s) active, {status['clients'] - 1} other client(s)\nsocket {status['socket']}"
    )
    return 0


def run_stop(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.errors import OperationError
    from engine.service.client import NotRunning
    from engine.service.server import lock_holder

    client = _client(ctx)
    try:
        pid = client.call("stop", start=False, force=args.force)["pid"]
    except NotRunning:
        print(f"no service runs for {ctx.home.root}")
        return 0
    deadline = time.monotonic() + 90
    while lock_holder(client.paths) == pid:
        if time.monotonic() > deadline:
            raise OperationError(f"the service (pid {pid}) did not stop within 90 s")
        time.sleep(0.05)
    if ctx.json:
        ctx.emit_json({"stopped": pid})
    else:
        print(f"service pid {pid} stopped")
    return 0


def run_cancel(args: argparse.Namespace, ctx: CliContext) -> int:
    cancelled = _client(ctx).call("cancel", target=args.target)["cancelled"]
    if ctx.json:
        ctx.emit_json({"cancelled": cancelled})
    else:
        for run in cancelled:
            print(f"run {run}: cancelling")
    return 0


def _state(run: dict[str, Any]) -> str:
    state = run["state"]
    if run.get("failed_line") is not None and state != RunStatus.DONE:
        state += f" at line {run['failed_line']}"
    if run.get("resumed_by"):
        state += f", resumed by {run['resumed_by']}"
    if run.get("resumed_from"):
        state += f" (resumes {run['resumed_from']})"
    return state


def transfers_table(runs: list[dict[str, Any]]) -> str:
    rows: list[tuple[Any, ...]] = []
    for run in runs:
        rate = rate_text(run["rate"]) if run["state"] == RunStatus.RUNNING and run["rate"] else ""
        rows.append(
            (
                run["run"],
                "-" if run["vm"] is None else run["vm"],
                f"{run['lines_done']}/{run['lines_total']}",
                progress_text(run["bytes_done"], run["bytes_total"]),
                rate,
                _state(run),
            )
        )
        for line in run["lines"]:
            eta = eta_text(line["eta"]) if line["state"] == RunStatus.RUNNING else ""
            rows.append(
                (
                    f"  {line['line']} {line['action']}",
                    "",
                    "",
                    progress_text(line["bytes_done"], line["bytes_total"]),
                    eta,
                    line["state"],
                )
            )
    return format_table(["RUN", "VM", "LINES", "BYTES", "RATE / ETA", "STATE"], rows, right=["VM"])


def run_transfers(args: argparse.Namespace, ctx: CliContext) -> int:
    """The runs, newest last. With --follow, again each second while any runs: the table redrawn on a terminal,
    appended otherwise; with --json one JSON list a line."""
    import json

    client = _client(ctx)
    runs = client.call("runs")["runs"]
    tty = sys.stdout.isatty()
    while True:
        if ctx.json and args.follow:
            print(json.dumps(runs), flush=True)
        elif ctx.json:
            ctx.emit_json(runs)
        else:
            text = transfers_table(runs) if runs else "no runs\n"
            sys.stdout.write(("\x1b[H\x1b[2J" if tty and args.follow else "") + text)
            sys.stdout.flush()
        if not args.follow or not any(run["state"] == RunStatus.RUNNING for run in runs):
            return 0
        try:
            time.sleep(1.0)
        except KeyboardInterrupt:
            return 130
        runs = client.call("runs")["runs"]
        if not tty and not ctx.json:
            print()


def run_log(args: argparse.Namespace, ctx: CliContext) -> int:
    """Read from the audit file directly: no service needed to see what happened."""
    from dataclasses import asdict

    from engine.service.audit import AuditLog

    entries = AuditLog(ctx.home).entries(args.limit or None)
    if ctx.json:
        ctx.emit_json([asdict(e) for e in entries])
        return 0
    rows = [(time_text(e.at), e.user, e.client, e.action, e.target, e.detail) for e in entries]
    sys.stdout.write(format_table(["TIME", "USER", "CLIENT", "ACTION", "TARGET", "DETAIL"], rows))
    return 0
