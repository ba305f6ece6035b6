"""The `headnode` entry point: the headless CLI, or the console when no command is given.

Textual is imported only on the console path, so CLI commands stay fast.
"""

from __future__ import annotations

import sys

from engine.cli import main as cli_main
from engine.cli.context import CliContext


def run_console(ctx: CliContext) -> int:
    from tui.app import HeadnodeApp

    ctx.defer_sample_image = True  # the first paint does not wait for mkfs
    app = HeadnodeApp(ctx.home, read_only=ctx.args.read_only, service=True, defer_sample_image=True)
    app.run()
    return app.return_code or 0


def main() -> None:
    sys.exit(cli_main(sys.argv[1:], run_console=run_console))
