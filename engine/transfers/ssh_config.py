"""~/.ssh/config read as OpenSSH reads it, `Include` too (paramiko's parser has none), and ProxyJump hops.

An `Include` is replaced by the files it names (globs, sorted; relative to ~/.ssh; nested up to 16 deep, as
OpenSSH allows), and the Host or Match block it appeared in is opened again after them, so the lines that follow
stay where OpenSSH puts them (`Host *` for the top level, which applies to every host as top-level lines do).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError, Problem
from engine.language.numbers import whole_number

MAX_INCLUDE_DEPTH = 16
_KEYWORD = re.compile(r"\s*(\w+)(?:\s*=\s*|\s+)(.*)")


def config_text(path: Path, ssh_dir: Path, depth: int = 0) -> str:
    """The text of config file `path` with every Include inlined."""
    out: list[str] = []
    block = "Host *"
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        found = _KEYWORD.match(line)
        keyword = found.group(1).lower() if found else ""
        if keyword in ("host", "match"):
            block = line
        if keyword != "include":
            out.append(line)
            continue
        if depth >= MAX_INCLUDE_DEPTH:
            raise InputError(Problem(f"Include nested more than {MAX_INCLUDE_DEPTH} deep", str(path)))
        for pattern in shlex.split(found.group(2)):  # type: ignore[union-attr]
            pattern = os.path.expanduser(pattern)
            for name in sorted(glob.glob(pattern if os.path.isabs(pattern) else str(ssh_dir / pattern))):
                out.append(config_text(Path(name), ssh_dir, depth + 1))
        out.append(block)
    return "\n".join(out)


@dataclass(frozen=True)
class Hop:
    """One ProxyJump hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`."""

    host: str
    user: str | None = None
    port: int | None = None


def parse_hop(item: str, source: str) -> Hop:
    """One hop of a ProxyJump value; InputError naming the file for one that is not a host."""
    text = item.strip().removeprefix("ssh://")
    user, _, rest = text.rpartition("@")
    host, colon, port = rest[1:].partition("]:") if rest.startswith("[") else rest.partition(":")
    number = whole_number(port) if colon else None
    if not host or host.startswith("-") or user.startswith("-") or (colon and number is None):
        raise InputError(Problem(f"ProxyJump hop {item!r} is not [user@]host[:port]", source))
    return Hop(host.rstrip("]"), user or None, number)
