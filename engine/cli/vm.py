"""`headnode vm`: create VMs from templates and drive their lifecycle (onevm's verbs)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from engine.cli.context import CliContext, format_table
from engine.cli.follow import Printer, add_follow_options, submit_and_follow, submit_batch_and_follow
from engine.presentation import operation_text, state_label, time_text
from engine.vms.states import VmState

if TYPE_CHECKING:
    from engine.vms.records import VmRecords


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("vm", parents=[common], help="virtual machines: create, deploy, stop, migrate...")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))

    def verb(name: str, help: str, handler: Any, *args: tuple[str, dict[str, Any]]) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, parents=[common], help=help, description=help)
        for arg, options in args:
            v.add_argument(arg, **options)
        v.set_defaults(handler=handler)
        return v

    vm_id: tuple[str, dict[str, Any]] = ("id", {"type": int, "metavar": "ID"})
    host: tuple[str, dict[str, Any]] = ("host", {"metavar": "HOST"})
    verb("create", "store a VM from a template and lease its NICs; prints its id", run_create, ("template", {}))
    listing = verb("list", "list VMs (those that are done only with --all or --state done)", run_list)
    listing.add_argument("--all", action="store_true", help="list done VMs too")
    states = [s.value for s in VmState]
    listing.add_argument(
        "--state", action="append", choices=states, metavar="STATE", help=f"only VMs in STATE ({', '.join(states)})"
    )
    verb("show", "a VM: template with leased NICs, state, hosts, operations", run_show, vm_id)
    verb("log", "a VM's transfer log", run_log, vm_id)
    for name, help, args in (
        ("deploy", "run the prolog on HOST (several VMs at once: ID HOST ID HOST ...)", (vm_id, host)),
        ("stop", "park the VM's images on the front end", (vm_id,)),
        ("resume", "bring a stopped VM's images to HOST", (vm_id, host)),
        ("migrate", "move a running VM's images to HOST", (vm_id, host)),
        ("shutdown", "run the epilog and free the VM's leases", (vm_id,)),
        ("delete", "delete the VM's files and free its leases; a VM that is done is removed", (vm_id,)),
    ):
        operation = verb(name, help, run_op(name), *args)
        add_follow_options(operation)
        operation.add_argument(
            "--dry-run",
            action="store_true",
            help="print the image script it would run, the bytes each line moves and what crosses the links "
            "(a CLONE through a host's image cache: a hit or a miss); change nothing",
        )
    verbs.choices["deploy"].add_argument(
        "more",
        nargs="*",
        metavar="ID HOST",
        help="more VMs, each with its host: deployed together, so their CLONEs of one image gather into one fan-out "
        "(the head sends it about once)",
    )
    verbs.choices["delete"].add_argument(
        "--force", action="store_true", help="finish even if its files cannot be deleted or its host is gone"
    )
    recover = verb("recover", "retry or undo a failed or interrupted operation", run_recover, vm_id)
    add_follow_options(recover)
    how = recover.add_mutually_exclusive_group(required=True)
    how.add_argument("--retry", action="store_true", help="run the failed operation again from its failed line")
    how.add_argument("--delete", action="store_true", help="clean the host and free the leases")


def _engine(ctx: CliContext) -> Any:
    from engine.core import Engine

    return Engine(ctx.home)


def _records(ctx: CliContext) -> VmRecords:
    """The VMs as stored, for the commands that only read them: no engine (executor, transfers) is loaded."""
    from engine.vms.records import VmRecords

    return VmRecords(ctx.home)


def run_create(args: argparse.Namespace, ctx: CliContext) -> int:
    vm = ctx.changes.create_vm(_engine(ctx).vms, args.template)
    if ctx.json:
        ctx.emit_json(vm.to_json())
    else:
        print(vm.id)
    return 0


def run_list(args: argparse.Namespace, ctx: CliContext) -> int:
    wanted = set(args.state or [])

    def shown(vm: Any) -> bool:
        return vm.state.value in wanted if wanted else args.all or vm.state is not VmState.DONE

    vms = [vm for vm in _records(ctx).list() if shown(vm)]
    if ctx.json:
        ctx.emit_json([vm.to_json() for vm in vms])
        return 0
    rows = [
        (
            vm.id,
            vm.owner,
            vm.name,
            state_label(vm),
            vm.host or "",
            ", ".join(filter(None, (n.get("IP") for n in vm.nics()))),
        )
        for vm in vms
    ]
    sys.stdout.write(format_table(["ID", "USER", "NAME", "STATE", "HOST", "IPS"], rows, right=["ID"]))
    return 0


def run_show(args: argparse.Namespace, ctx: CliContext) -> int:
    vm = _records(ctx).get(args.id)
    if ctx.json:
        ctx.emit_json(vm.to_json())
        return 0
    out = [
        f"VM {vm.id} INFORMATION",
        f"{'NAME':10}: {vm.name}",
        f"{'USER':10}: {vm.owner}",
        f"{'STATE':10}: {state_label(vm)}",
        f"{'HOST':10}: {vm.host or '-'}",
        f"{'CREATED':10}: {time_text(vm.created)}",
        "",
        "TEMPLATE",
        vm.template.rstrip(),
        "",
        "HOSTS",
    ]
    out += [f"  {h.host:16} {h.vm_dir:30} {time_text(h.started)} - {time_text(h.ended)}" for h in vm.history] or ["  -"]
    out += ["", "OPERATIONS"]
    for op in vm.operations:
        out.append(f"  {operation_text(op)}")
        out += [f"    {line}" for line in op.script]
    print("\n".join(out))
    return 0


def run_log(args: argparse.Namespace, ctx: CliContext) -> int:
    records = _records(ctx)
    records.get(args.id)
    path = records.log_path(args.id)
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    if ctx.json:
        ctx.emit_json({"vm": args.id, "path": str(path), "lines": text.splitlines()})
    else:
        sys.stdout.write(text)
    return 0


def run_op(op: str) -> Any:
    """A VM operation, run by the home's service and followed (engine/cli/follow.py)."""

    def handler(args: argparse.Namespace, ctx: CliContext) -> int:
        pairs = _pairs(args)
        if args.dry_run:
            return _dry_run(ctx, op, pairs)
        if len(pairs) > 1:
            batch = {"operation": op, "vms": [list(pair) for pair in pairs]}
            return submit_batch_and_follow(ctx, batch, args.detach, lambda vm: _finisher(ctx, vm))
        request: dict[str, Any] = {"operation": op, "vm": args.id, "host": getattr(args, "host", None)}
        request["force"] = getattr(args, "force", False)
        return submit_and_follow(ctx, "vm", request, args.detach, _finisher(ctx, args.id))

    return handler


def _pairs(args: argparse.Namespace) -> list[tuple[int, str | None]]:
    """The VMs the command names, each with its host: `ID [HOST]`, and for `deploy` any more `ID HOST` pairs."""
    from engine.errors import InputError, Problem
    from engine.language.numbers import whole_number

    more = getattr(args, "more", None) or []
    if len(more) % 2:
        raise InputError(Problem(f"vm deploy: {more[-1]!r} has no HOST: give a HOST after each ID"))
    pairs: list[tuple[int, str | None]] = [(args.id, getattr(args, "host", None))]
    problems = []
    for text, host in zip(more[::2], more[1::2], strict=True):
        number = whole_number(text)
        if number is None:
            problems.append(Problem(f"vm deploy: {text!r} is not a VM id"))
        else:
            pairs.append((number, host))
    if len({vm for vm, _ in pairs}) < len(pairs):
        problems.append(Problem("vm deploy: a VM is named twice: one deploy per VM"))
    if problems:
        raise InputError(problems)
    return pairs


def _dry_run(ctx: CliContext, op: str, pairs: list[tuple[int, str | None]]) -> int:
    """Each operation's preview, as the console's confirmation shows it (engine.presentation.preview_lines); with
    --json one object, or a list of them for several VMs."""
    from engine.presentation import preview_lines

    with _engine(ctx) as engine:
        previews = [engine.vms.preview(vm, op, host) for vm, host in pairs]
    if ctx.json:
        found = [_preview_json(preview) for preview in previews]
        ctx.emit_json(found[0] if len(found) == 1 else found)
        return 0
    for index, preview in enumerate(previews):
        if index:
            print()
        for line in preview_lines(preview):
            print(line)
    return 0


def _preview_json(preview: Any) -> dict[str, Any]:
    """A preview as `--dry-run --json` prints it: the script, each line's bytes and cache plan, the totals."""
    from dataclasses import asdict

    return {
        "vm": preview.vm_id,
        "operation": preview.op,
        "script": preview.script.format().splitlines(),
        "lines": [
            {
                "line": line.number,
                "action": line.action.name,
                "bytes": preview.source_bytes.get(line.number),
                "cache": asdict(preview.cache[line.number]) if line.number in preview.cache else None,
            }
            for line in preview.script.lines
        ],
        "total_bytes": preview.total_bytes,
        "link_bytes": preview.link_bytes,
    }


def run_recover(args: argparse.Namespace, ctx: CliContext) -> int:
    request = {"operation": "recover", "vm": args.id, "retry": args.retry, "delete": args.delete}
    return submit_and_follow(ctx, "vm", request, args.detach, _finisher(ctx, args.id))


def _finisher(ctx: CliContext, vm_id: int) -> Any:
    """Reports the VM as it is once its operation ended: one line, or with --json its record as the last line."""

    def finish(printer: Printer, end: Any) -> int:
        from engine.errors import OperationError

        if end is not None and not isinstance(end, dict) and not end.ok:
            raise OperationError(end.error or f"VM {vm_id}: {end.op} failed")
        vms = _records(ctx)
        if isinstance(end, dict) and not vms.exists(vm_id):  # a done VM deleted: its record is gone
            if ctx.json:
                printer.json_line({"event": "vm_operation_finished", "vm": end, "removed": True})
            else:
                printer.line(f"VM {vm_id}: removed")
            return 0
        vm = vms.get(vm_id)
        if ctx.json:
            printer.json_line({"event": "vm_operation_finished", "vm": vm.to_json()})
        else:
            printer.line(f"VM {vm.id}: {state_label(vm)}" + (f" on {vm.host}" if vm.host else ""))
        return 0

    return finish
