"""`headnode script check`: validate image scripts without running them."""

from __future__ import annotations

import argparse

from engine.cli.context import CliContext
from engine.errors import InputError, Problem
from engine.language.script import load_script


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("script", parents=[common], help="image script tools")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", parser_class=type(p))
    check = verbs.add_parser(
        "check", parents=[common], help="validate scripts; silent when all are valid", description=__doc__
    )
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace, ctx: CliContext) -> int:
    """Silent when every script is valid; with --json, one {"file", "valid", "lines", "problems"} per file."""
    problems = []
    report = []
    for name in args.files:
        try:
            lines = len(load_script(name).lines)
            found: list[Problem] = []
        except InputError as exc:
            lines, found = None, exc.problems
        problems.extend(found)
        report.append({"file": name, "valid": not found, "lines": lines, "problems": [str(p) for p in found]})
    if ctx.json:
        ctx.emit_json(report)
    if problems:
        raise InputError(problems)
    return 0
