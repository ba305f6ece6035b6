"""OpenNebula's template language, used for VM templates, network templates, driver confs and the configuration.

    NAME = value                # a single value: one token, no blanks
    NAME = "quoted value"       # escapes: \\" and \\\\
    DISK = [ SOURCE = /img/a.img,
             TARGET = "hda" ]   # a vector, may span lines; no vectors inside vectors
    DISK = [ TYPE = swap, SIZE = 1024 ]   # attributes may repeat

Names are case-insensitive and stored upper-case; values keep their case. Every error names the file, line and
column and what was expected, as `web.tmpl:4:17: unterminated quoted value`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InputError, Problem
from engine.language.input_file import read_input_file

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An unquoted value is one token: no blanks, and none of the characters the grammar itself uses.
_BARE = re.compile(r'[^\s,\[\]"#]+')
_BARE_SAFE = re.compile(r'[^\s,\[\]"#\\=]+')


@dataclass(frozen=True)
class Vector:
    """An ordered set of KEY = value pairs; keys upper-case and unique."""

    items: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        key = key.upper()
        for k, v in self.items:
            if k == key:
                return v
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def keys(self) -> list[str]:
        return [k for k, _ in self.items]

    def as_dict(self) -> dict[str, str]:
        return dict(self.items)

    def replace(self, **changes: str) -> Vector:
        """A copy with some keys set (added at the end when new)."""
        updates = {k.upper(): v for k, v in changes.items()}
        items = [(k, updates.pop(k, v)) for k, v in self.items]
        return Vector(tuple(items) + tuple(updates.items()))


Value = str | Vector


@dataclass(frozen=True)
class Attribute:
    name: str
    value: Value
    line: int = field(default=0, compare=False)  # where it was read; 0 when built in code


@dataclass
class Template:
    """A parsed template: attributes in file order, names upper-case."""

    attributes: list[Attribute] = field(default_factory=list)
    source: str = "<template>"

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first single value called NAME, or default."""
        for attr in self.all(name):
            if isinstance(attr.value, str):
                return attr.value
        return default

    def all(self, name: str) -> list[Attribute]:
        name = name.upper()
        return [a for a in self.attributes if a.name == name]

    def vectors(self, name: str) -> list[Vector]:
        return [a.value for a in self.all(name) if isinstance(a.value, Vector)]

    def __iter__(self) -> Iterator[Attribute]:
        return iter(self.attributes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and self.attributes == other.attributes

    def format(self) -> str:
        return format_template(self)


class TemplateError(InputError):
    """A template that does not parse."""


class _Scanner:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.pos = 0
        self._counted = (0, 1)  # (position, its line): line_of counts on from here, so a parse stays linear

    def error(self, message: str, pos: int | None = None) -> TemplateError:
        pos = self.pos if pos is None else pos
        line = self.line_of(pos)
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return TemplateError(Problem(message, self.source, line, column))

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_blanks(self, newlines: bool) -> None:
        """Skip spaces and tabs (and newlines and comments when `newlines`)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif newlines and ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def line_of(self, pos: int) -> int:
        start, line = self._counted
        if pos < start:
            start, line = 0, 1
        line += self.text.count("\n", start, pos)
        self._counted = (pos, line)
        return line

    def at_line_end(self) -> bool:
        """True at end of line, end of text or a comment."""
        return self.peek() in ("", "\n", "#")

    def name(self, what: str) -> str:
        match = _NAME.match(self.text, self.pos)
        if not match:
            ch = self.peek()
            if ch == "=":
                raise self.error(f"empty {what} name before '='")
            raise self.error(f"expected {what} name, found {_show(ch)}")
        self.pos = match.end()
        return match.group().upper()

    def equals(self, name: str) -> None:
        self.skip_blanks(newlines=False)
        if self.peek() != "=":
            raise self.error(f"missing '=' after {name}, found {_show(self.peek())}")
        self.pos += 1
        self.skip_blanks(newlines=False)

    def value(self, name: str) -> str:
        ch = self.peek()
        if ch == '"':
            return self.quoted()
        match = _BARE.match(self.text, self.pos)
        if not match:
            raise self.error(f"expected a value for {name}, found {_show(ch)}")
        self.pos = match.end()
        return match.group()

    def quoted(self) -> str:
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\" and self.text[self.pos + 1 : self.pos + 2] in ('"', "\\"):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        raise self.error("unterminated quoted value", start)

    def vector(self, name: str) -> Vector:
        start = self.pos
        self.pos += 1  # '['
        items: list[tuple[str, str]] = []
        seen: set[str] = set()
        while True:
            self.skip_blanks(newlines=True)
            ch = self.peek()
            if ch == "":
                raise self.error(f"unterminated vector {name}: expected ']'", start)
            if ch == "]":
                self.pos += 1
                return Vector(tuple(items))
            key_pos = self.pos
            key = self.name(f"{name} key")
            if key in seen:
                raise self.error(f"duplicate key {key} in vector {name}", key_pos)
            seen.add(key)
            self.equals(f"{name} key {key}")
            if self.peek() == "[":
                raise self.error("nested vector: a vector value cannot hold another vector")
            if self.peek() in ("", "\n", ",", "]", "#"):
                raise self.error(f"expected a value for {key}")
            items.append((key, self.value(key)))
            self.skip_blanks(newlines=True)
            ch = self.peek()
            if ch == ",":
                self.pos += 1
            elif ch == "]":
                continue
            elif ch == "":
                raise self.error(f"unterminated vector {name}: expected ']'", start)
            else:
                raise self.error(f"stray characters in vector {name}: expected ',' or ']', found {_show(ch)}")


def _show(ch: str) -> str:
    if ch == "":
        return "end of file"
    if ch == "\n":
        return "end of line"
    return repr(ch)


def parse_template(text: str, source: str = "<template>") -> Template:
    """Parse template text; raise TemplateError naming source:line:column on the first problem."""
    s = _Scanner(text, source)
    attributes: list[Attribute] = []
    while True:
        s.skip_blanks(newlines=True)
        if s.peek() == "":
            return Template(attributes, source)
        line = s.line_of(s.pos)
        name = s.name("attribute")
        s.equals(name)
        if s.peek() == "[":
            value: Value = s.vector(name)
        elif s.at_line_end():
            raise s.error(f"expected a value for {name}")
        else:
            value = s.value(name)
        s.skip_blanks(newlines=False)
        if not s.at_line_end():
            raise s.error(f"stray characters after {name}'s value: {_show(s.peek())}")
        attributes.append(Attribute(name, value, line))


def load_template(path: str | Path) -> Template:
    """Read and parse a template file; a missing or unreadable file is an InputError naming it."""
    return parse_template(read_input_file(path, "template"), str(path))


def format_value(value: str) -> str:
    """A value as it is written: bare when that reads back the same, quoted otherwise."""
    if _BARE_SAFE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_template(template: Template) -> str:
    """Canonical text: one attribute per line, vectors one key per line. parse(format(t)) == t."""
    lines: list[str] = []
    for attr in template.attributes:
        if isinstance(attr.value, str):
            lines.append(f"{attr.name} = {format_value(attr.value)}")
        elif not attr.value.items:
            lines.append(f"{attr.name} = [ ]")
        else:
            inner = ",\n".join(f"  {k} = {format_value(v)}" for k, v in attr.value.items)
            lines.append(f"{attr.name} = [\n{inner} ]")
    return "\n".join(lines) + ("\n" if lines else "")
