"""The headless CLI: `headnode <noun> <verb>`, like OpenNebula's onevm, onevnet and onehost.

Exit status: 0 success, 1 the operation failed, 2 bad input or usage. Errors go to stderr, one line per problem
(`FILE:LINE[:COL]: message` for files), never a traceback. This path never imports textual: the console is
handed in by the entry point (`tui.main`) as a callable.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.cli.context import CliContext
from engine.errors import HeadnodeError
from engine.home import default_home

# Each module registers its sub-commands with `register(subparsers, common)`; they import heavy modules lazily.
COMMAND_MODULES = ("plan", "script", "vnet", "host", "cache", "run", "vm", "service")

ConsoleRunner = Callable[[CliContext], int]


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def format_help(self) -> str:
        # Where the home is by default is looked up only when help is shown (platformdirs costs start-up time).
        for action in self._actions:
            if action.dest == "home":
                action.help = f"home directory (default: $HEADNODE_HOME, else {_tilde(default_home())})"
        return super().format_help()


def _tilde(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts, before or after the sub-command."""
    common = Parser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help="home directory (default: $HEADNODE_HOME)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return common


def build_parser() -> Parser:
    common = common_options()
    parser = Parser(
        prog="headnode",
        parents=[common],
        description="The console of a cluster head node: image scripts and virtual networks. "
        "With no command it opens the console.",
    )
    parser.add_argument("--read-only", action="store_true", help="open the console with every change disabled")
    parser.add_argument("--version", action=VersionAction, help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"engine.cli.{name}").register(subparsers, common)
    parser.set_defaults(nouns=subparsers.choices)
    return parser


class VersionAction(argparse.Action):
    """--version, looked up only when asked (importlib.metadata costs start-up time)."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"headnode {version('headnode')}")
        except PackageNotFoundError:  # a source tree that was never installed
            print("headnode (not installed)")
        parser.exit(0)


def main(argv: Sequence[str] | None = None, run_console: ConsoleRunner | None = None) -> int:
    """Run one CLI command (or the console when none is given) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = CliContext(args)
    try:
        if args.command is None:
            if run_console is None:
                parser.print_help()
                return 0
            if not (sys.stdin.isatty() and sys.stdout.isatty()):
                # Textual would write escape codes into the pipe and wait for keys that never come.
                print(
                    "headnode: the console needs a terminal on stdin and stdout; "
                    "in scripts use a command such as 'headnode vm list' (see 'headnode --help')",
                    file=sys.stderr,
                )
                return 2
            return run_console(ctx)
        if not hasattr(args, "handler"):
            noun = args.nouns[args.command]
            verbs = next(a for a in noun._actions if isinstance(a, argparse._SubParsersAction))
            noun.error(f"a verb is needed: {', '.join(verbs.choices)}")
        return args.handler(args, ctx)
    except HeadnodeError as exc:
        ctx.report(exc)
        return exc.exit_status
    except KeyboardInterrupt:
        print("headnode: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug: say so in one line, keep the traceback in the home's logs
        where = ctx.save_crash(traceback.format_exc())
        print(f"headnode: internal error: {exc!r}" + (f" (details in {where})" if where else ""), file=sys.stderr)
        return 1
