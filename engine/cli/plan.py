"""`headnode plan`: print the image script of one VM operation."""

from __future__ import annotations

import argparse
import sys

from engine.cli.arguments import whole_number_argument
from engine.cli.context import CliContext
from engine.errors import InputError, Problem
from engine.language.template import load_template
from engine.store.atomic import write_atomically
from engine.vms.context_vars import resolve_context_unleased
from engine.vms.planner import Operation, Placement, plan
from engine.vms.vm_template import check_vm_template


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "plan",
        parents=[common],
        help="print the image script of a VM operation",
        description="Plan the image script of one VM operation from a VM template and a placement.",
    )
    p.add_argument("template", help="VM template file")
    p.add_argument("--vm", type=whole_number_argument, required=True, metavar="ID", help="VM id")
    p.add_argument("--host", required=True, help="host the VM is placed on")
    p.add_argument("--vm-dir", required=True, metavar="DIR", help="the host's VM directory")
    p.add_argument("--frontend", metavar="NAME", help="front-end name (default: the configuration's, else hostname)")
    p.add_argument("--frontend-dir", metavar="DIR", help="front-end VM directory (default: the home's vms/)")
    p.add_argument("--op", choices=[o.value for o in Operation], default="prolog", help="operation (default prolog)")
    p.add_argument("--from", dest="previous_host", metavar="HOST", help="previous host, for --op migrate")
    p.add_argument("--write-context", action="store_true", help="also write context.sh into the front-end VM directory")
    p.set_defaults(handler=run_plan)


def run_plan(args: argparse.Namespace, ctx: CliContext) -> int:
    for name, value in (("--vm-dir", args.vm_dir), ("--frontend-dir", args.frontend_dir)):
        if value is not None and not value.startswith("/"):
            raise InputError(Problem(f"{name} must be an absolute path, not {value!r}"))
    if args.vm < 0:
        raise InputError(Problem(f"--vm must be a VM id (0 or more), not {args.vm}"))
    # Read as `vm create` reads it: bare image names, CONTEXT variables (the NICs' leases excepted), every problem.
    # FILES are not looked for: the plan may be for another front end (--frontend).
    template = check_vm_template(load_template(args.template), ctx.home.images, files_here=False)
    template, kept = resolve_context_unleased(template, args.vm)
    if kept:
        print(
            f"headnode: plan leases no addresses, so context.sh keeps {', '.join(dict.fromkeys(kept))} as written "
            "('vm create' fills them from the leases)",
            file=sys.stderr,
        )
    placement = Placement(
        frontend=args.frontend or ctx.home.config.frontend_name,
        frontend_dir=args.frontend_dir or str(ctx.home.vms),
        host=args.host,
        host_dir=args.vm_dir,
        previous_host=args.previous_host,
    )
    result = plan(template, args.vm, placement, args.op)
    if args.write_context and result.context_path and result.context_sh is not None:
        write_atomically(result.context_path, result.context_sh)
    if ctx.json:
        ctx.emit_json(
            {
                "operation": result.operation.value,
                "script": result.script.format().splitlines(),
                "context_path": result.context_path,
                "context_sh": result.context_sh,
            }
        )
    else:
        sys.stdout.write(result.script.format())
    return 0
