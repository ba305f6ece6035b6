"""`headnode run SCRIPT`: validate an image script whole, then have the home's service run it through the hosts'
transfer drivers, and follow it (engine/cli/follow.py).

Exit 0 when every line ran, 1 when one failed, 2 when the script is invalid (nothing ran), 130 after Ctrl-C (which
stops following only: the run goes on; `headnode cancel RUN` stops it).
"""

from __future__ import annotations

import argparse

from engine.cli.arguments import whole_number_argument
from engine.cli.context import CliContext
from engine.cli.follow import add_follow_options, submit_and_follow


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "run", parents=[common], help="run an image script", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("script", metavar="SCRIPT", help="image script file")
    p.add_argument(
        "--vm",
        type=whole_number_argument,
        metavar="ID",
        help="the VM the script is for (its log: <home>/logs/vm-ID.log)",
    )
    p.add_argument("--resume", action="store_true", help="continue the last interrupted run of this script")
    add_follow_options(p)
    p.set_defaults(handler=run_script)


def run_script(args: argparse.Namespace, ctx: CliContext) -> int:
    from engine.errors import InputError, Problem
    from engine.language.input_file import read_input_file
    from engine.language.script import ScriptError, parse_script

    if args.vm is not None and args.vm < 0:
        raise InputError(Problem(f"--vm must be a VM id (0 or more), not {args.vm}"))
    text = read_input_file(args.script, "script", ScriptError)
    parse_script(text, args.script)  # bad lines are reported here, before the service is involved
    request = {"script": text, "source": args.script, "vm": args.vm, "resume": args.resume}
    return submit_and_follow(ctx, "submit", request, args.detach, None)
