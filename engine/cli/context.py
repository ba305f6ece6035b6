"""What every CLI command gets: the parsed arguments, the home (created on first use) and output helpers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from engine.errors import HeadnodeError, InputError, Problem
from engine.home import Home
from engine.presentation import time_text

if TYPE_CHECKING:
    from engine.service.changes import Changes


class CliContext:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = getattr(args, "json", False)
        # The console paints first and makes a fresh home's sample image afterwards, on an engine thread.
        self.defer_sample_image = False

    @cached_property
    def home(self) -> Home:
        """The home, created on first use with its embedded default (host local, network default, sample image),
        whichever command comes first."""
        from engine.defaults import default_state, ensure_embedded_default, ensure_sample_image

        home = Home.locate(getattr(self.args, "home", None)).ensure()
        made, image_owed = default_state(home)
        image = not self.defer_sample_image
        if not made:  # once per home: the networks code loads only then
            from engine.networks.manager import Networks
            from engine.transfers.hosts import Hosts

            networks = Networks(home)
            try:
                ensure_embedded_default(home, Hosts(home), networks, image=image)
            finally:
                networks.close()
        elif image_owed and image:  # a console that made the default was closed before its image was done
            ensure_sample_image(home)
        return home

    def report(self, exc: HeadnodeError) -> None:
        """One line per problem on stderr."""
        problems = exc.problems if isinstance(exc, InputError) else [Problem(str(exc))]
        for problem in problems:
            print(problem if problem.file else f"headnode: {problem.message}", file=sys.stderr)

    @property
    def changes(self) -> Changes:
        """Where this command makes its changes to the home's records, each recorded in the audit history."""
        from engine.service.changes import Changes, client_name

        return Changes(self.home, client_name("cli"))

    def save_crash(self, text: str) -> str | None:
        try:
            path = self.home.logs / "crash.log"
            with path.open("a", encoding="utf-8") as log:
                log.write(f"--- {time_text(time.time())}\n{text}")
            return str(path)
        except Exception:
            return None

    def emit_json(self, value: Any) -> None:
        json.dump(value, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[str] = ()) -> str:
    """A plain-text table like onevnet's: padded columns, numbers right-aligned where asked."""
    # Column by column and one %-format for every line: `vnet lease --count` prints 65,534 leases.
    columns = [list(map(str, column)) for column in zip(*rows, strict=True)] or [[] for _ in headers]
    widths = [max(len(h), max(map(len, column), default=0)) for h, column in zip(headers, columns, strict=True)]
    template = "  ".join(f"%{'' if h in right else '-'}{w}s" for h, w in zip(headers, widths, strict=True))
    return "\n".join((template % line).rstrip() for line in [tuple(headers), *zip(*columns, strict=True)]) + "\n"
