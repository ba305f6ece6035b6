"""Image scripts: OpenNebula 1.4's transfer-file grammar, one action per line.

    CLONE   source  host:path [size_mb]
    LN      source  host:path [size_mb]
    MKSWAP  size_mb host:path
    MKIMAGE size_mb fstype host:path
    CONTEXT context_file [file_or_url ...] host:path
    MV      host:path host:path
    DELETE  host:path

A source is `host:path` (split at the first ':') or an http://, https:// or file:// URL. Paths are absolute,
sizes positive whole MiB, action names case-insensitive, `#` starts a comment line. A script is validated whole:
every problem is reported as `FILE:LINE: message` and nothing runs unless all lines are good.

Arguments are separated by white space, as in OpenNebula. Unlike OpenNebula, an argument holding white space is
written in double quotes (`"local:/home/ann/my cluster/vms/7/images/disk.0"`, `\"` and `\\` inside them), so a
home or VM directory whose path holds a space works; outside quotes every character is literal, so OpenNebula's
own scripts read unchanged. Programs get each argument whole (argv, never a shell).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from engine.errors import InputError, Problem
from engine.language.input_file import read_input_file
from engine.language.numbers import whole_number

URL_SCHEMES = ("http", "https", "file")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)")
# What a host may be called: in a script line and in a host record alike.
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
_FSTYPE = re.compile(r"[a-z0-9][a-z0-9._-]*")
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")  # what no script line can carry


@dataclass(frozen=True)
class Location:
    """A path on a named host."""

    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}:{self.path}"

    def child(self, name: str) -> Location:
        return Location(self.host, join_path(self.path, name))


@dataclass(frozen=True)
class Url:
    """A source fetched by URL (http, https or file)."""

    url: str

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower()

    def __str__(self) -> str:
        return self.url


Source = Location | Url


@dataclass(frozen=True)
class _Copy:
    source: Source
    dest: Location
    size_mb: int | None = None

    def arguments(self) -> list[str]:
        return [str(self.source), str(self.dest), *([str(self.size_mb)] if self.size_mb else [])]


@dataclass(frozen=True)
class Clone(_Copy):
    """Copy source to destination."""

    name: ClassVar[str] = "CLONE"


@dataclass(frozen=True)
class Link(_Copy):
    """Link destination to source (a copy where the two do not share a file system)."""

    name: ClassVar[str] = "LN"


@dataclass(frozen=True)
class MakeSwap:
    """Make a swap area of size_mb MiB."""

    size_mb: int
    dest: Location
    name: ClassVar[str] = "MKSWAP"

    def arguments(self) -> list[str]:
        return [str(self.size_mb), str(self.dest)]


@dataclass(frozen=True)
class MakeImage:
    """Make a file system image of size_mb MiB."""

    size_mb: int
    fstype: str
    dest: Location
    name: ClassVar[str] = "MKIMAGE"

    def arguments(self) -> list[str]:
        return [str(self.size_mb), self.fstype, str(self.dest)]


@dataclass(frozen=True)
class Context:
    """Build the context disk from context.sh and extra files."""

    context_file: str  # a path on the front end
    files: tuple[str, ...]  # front-end paths or URLs
    dest: Location
    name: ClassVar[str] = "CONTEXT"

    def arguments(self) -> list[str]:
        return [self.context_file, *self.files, str(self.dest)]


@dataclass(frozen=True)
class Move:
    """Move a file or directory, possibly between hosts."""

    source: Location
    dest: Location
    name: ClassVar[str] = "MV"

    def arguments(self) -> list[str]:
        return [str(self.source), str(self.dest)]


@dataclass(frozen=True)
class Delete:
    """Delete a file or directory."""

    dest: Location
    name: ClassVar[str] = "DELETE"

    def arguments(self) -> list[str]:
        return [str(self.dest)]


Action = Clone | Link | MakeSwap | MakeImage | Context | Move | Delete


def format_action(action: Action) -> str:
    """The canonical line for an action: upper-case name, single spaces, an argument holding white space (or
    starting with a quote) in double quotes."""
    return " ".join([action.name, *map(quote_argument, action.arguments())])


def quote_argument(argument: str) -> str:
    """An argument as a script line carries it (see the module's docstring)."""
    if argument and not argument.startswith('"') and not any(c.isspace() for c in argument):
        return argument
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_arguments(text: str) -> list[str]:
    """A line's words: split at white space, a word that starts with `"` running to its closing quote."""
    words: list[str] = []
    position, end = 0, len(text)
    while position < end:
        if text[position].isspace():
            position += 1
            continue
        if text[position] != '"':
            start = position
            while position < end and not text[position].isspace():
                position += 1
            words.append(text[start:position])
            continue
        word: list[str] = []
        position += 1
        while True:
            if position >= end:
                raise _LineError(f"unclosed quote in {text!r}: an argument in quotes ends with a quote")
            char = text[position]
            if char == "\\" and position + 1 < end and text[position + 1] in '"\\':
                word.append(text[position + 1])
                position += 2
            elif char == '"':
                position += 1
                break
            else:
                word.append(char)
                position += 1
        if position < end and not text[position].isspace():
            raise _LineError(f"text right after a closing quote in {text!r}: put white space between arguments")
        words.append("".join(word))
    return words


@dataclass(frozen=True)
class ScriptLine:
    """An action with the line it was read from (0 when planned)."""

    number: int
    action: Action


@dataclass(frozen=True)
class Script:
    """A validated image script."""

    lines: tuple[ScriptLine, ...]
    source: str = "<script>"

    @property
    def actions(self) -> list[Action]:
        return [line.action for line in self.lines]

    def format(self) -> str:
        return format_script(self.actions)

    @classmethod
    def of(cls, actions: Sequence[Action], source: str = "<plan>") -> Script:
        return cls(tuple(ScriptLine(i, a) for i, a in enumerate(actions, 1)), source)


def format_script(actions: list[Action]) -> str:
    return "".join(format_action(a) + "\n" for a in actions)


def join_path(directory: str, *names: str) -> str:
    """Join path parts with single slashes (OpenNebula's default VM_DIR produced `var//12`; we never do)."""
    return collapse_slashes("/".join([directory, *names]))


def collapse_slashes(path: str) -> str:
    return re.sub(r"/{2,}", "/", path)


class ScriptError(InputError):
    """A script with one or more bad lines; nothing of it runs."""


class _LineError(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def check_path(path: str, what: str) -> str:
    """A path the grammar can carry: absolute, no control characters. Returns it unchanged."""
    if not path:
        raise _LineError(f"empty path in {what}")
    if CONTROL_CHARACTER.search(path):
        raise _LineError(f"control character in path {path!r} of {what}")
    if not path.startswith("/"):
        raise _LineError(f"relative path {path!r} in {what}: paths must be absolute")
    return path


def parse_location(token: str, what: str) -> Location:
    if _URL.fullmatch(token):
        raise _LineError(f"{what} must be host:path, not a URL: {token}")
    host, colon, path = token.partition(":")
    if not colon:
        raise _LineError(f"missing host in {what} {token!r}: expected host:path")
    if not host:
        raise _LineError(f"missing host in {what} {token!r}: expected host:path")
    if not HOST_NAME.fullmatch(host):
        raise _LineError(f"bad host name {host!r} in {what}")
    return Location(host, check_path(path, f"{what} {token!r}"))


def parse_source(token: str, what: str) -> Source:
    match = _URL.fullmatch(token)
    if match:
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme not in URL_SCHEMES:
            raise _LineError(f"unsupported URL scheme {scheme!r} in {what}: use http, https or file")
        if scheme == "file":
            check_path(rest, what)
        elif not rest or rest.startswith("/"):
            raise _LineError(f"URL {token} in {what} has no host")
        if CONTROL_CHARACTER.search(token):
            raise _LineError(f"control character in URL {token!r}")
        return Url(token)
    return parse_location(token, what)


def source_argument(token: str, frontend: str, what: str = "SOURCE") -> Source:
    """An image named on a command line or in a form: host:path, a URL, or an absolute path on the front end
    (`frontend`); InputError saying what is wrong."""
    try:
        return parse_source(f"{frontend}:{token}" if token.startswith("/") else token, what)
    except _LineError as exc:
        raise InputError(Problem(exc.message)) from None


_WHITESPACE_HINT = ' (a path holding white space splits into several arguments: put it in double quotes, "h:/a b")'


def parse_size(token: str, what: str = "size") -> int:
    size = whole_number(token)
    if not size:
        hint = _WHITESPACE_HINT if "/" in token else ""
        raise _LineError(f"bad {what} {token!r}: expected a positive whole number of MiB{hint}")
    return size


def _arguments(args: list[str], most: int | None = None) -> str:
    """How many arguments a line has, and when it has too many, why that may be."""
    hint = _WHITESPACE_HINT if most is not None and len(args) > most else ""
    return f"{len(args)} argument{'' if len(args) == 1 else 's'}{hint}"


def _parse_copy(kind: type[Clone] | type[Link], args: list[str]) -> Action:
    if len(args) not in (2, 3):
        raise _LineError(f"{kind.name} takes source host:path [size_mb], got {_arguments(args, 3)}")
    size = parse_size(args[2]) if len(args) == 3 else None
    return kind(parse_source(args[0], "source"), parse_location(args[1], "destination"), size)


def _parse_mkswap(args: list[str]) -> Action:
    if len(args) != 2:
        raise _LineError(f"MKSWAP takes size_mb host:path, got {_arguments(args, 2)}")
    return MakeSwap(parse_size(args[0]), parse_location(args[1], "destination"))


def _parse_mkimage(args: list[str]) -> Action:
    if len(args) != 3:
        raise _LineError(f"MKIMAGE takes size_mb fstype host:path, got {_arguments(args, 3)}")
    if not _FSTYPE.fullmatch(args[1]):
        raise _LineError(f"bad file system type {args[1]!r}: expected an mkfs type such as ext4")
    return MakeImage(parse_size(args[0]), args[1], parse_location(args[2], "destination"))


def _parse_context(args: list[str]) -> Action:
    if len(args) < 2:
        raise _LineError(f"CONTEXT takes context_file [file_or_url ...] host:path, got {_arguments(args)}")
    files = tuple(_parse_context_file(token) for token in args[1:-1])
    return Context(check_path(args[0], "context file"), files, parse_location(args[-1], "destination"))


def _parse_context_file(token: str) -> str:
    if token.startswith("/"):
        return check_path(token, "context file")
    if not _URL.fullmatch(token):
        raise _LineError(f"context file {token!r} must be an absolute front-end path or a URL")
    parse_source(token, "context file")
    return token


def _parse_move(args: list[str]) -> Action:
    if len(args) != 2:
        raise _LineError(f"MV takes host:path host:path, got {_arguments(args, 2)}")
    return Move(parse_location(args[0], "source"), parse_location(args[1], "destination"))


def _parse_delete(args: list[str]) -> Action:
    if len(args) != 1:
        raise _LineError(f"DELETE takes host:path, got {_arguments(args, 1)}")
    return Delete(parse_location(args[0], "target"))


_PARSERS = {
    "CLONE": lambda args: _parse_copy(Clone, args),
    "LN": lambda args: _parse_copy(Link, args),
    "MKSWAP": _parse_mkswap,
    "MKIMAGE": _parse_mkimage,
    "CONTEXT": _parse_context,
    "MV": _parse_move,
    "DELETE": _parse_delete,
}
ACTION_NAMES = tuple(_PARSERS)


def _parse_line(text: str) -> Action:
    name, *args = split_arguments(text)
    parser = _PARSERS.get(name.upper())
    if parser is None:
        raise _LineError(f"unknown action {name!r}: expected one of {', '.join(ACTION_NAMES)}")
    return parser(args)


def line_problem(action: Action) -> str | None:
    """Why this grammar refuses `action`'s canonical line (None when it reads back as the same action): a planner
    checks what it would emit with the rules a script file meets."""
    line = format_action(action)
    try:
        parsed = _parse_line(line)
    except _LineError as exc:
        return exc.message
    return None if parsed == action else f"the line {line!r} reads back as another action"


def parse_script(text: str, source: str = "<script>") -> Script:
    """Parse and validate a whole script; raise ScriptError listing every bad line."""
    lines: list[ScriptLine] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            lines.append(ScriptLine(number, _parse_line(stripped)))
        except _LineError as exc:
            problems.append(Problem(exc.message, source, number))
    if problems:
        raise ScriptError(problems)
    return Script(tuple(lines), source)


def load_script(path: str | Path) -> Script:
    return parse_script(read_input_file(path, "script", ScriptError), str(path))
