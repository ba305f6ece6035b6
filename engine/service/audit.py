"""The audit history: who changed what on this head node (`<home>/logs/audit.jsonl`, one JSON object a line).

Every process that changes the home appends its own lines (what a CLI command or the console changes itself goes
through engine.service.changes; the service records VM operations and runs), each in one O_APPEND write so
lines from different processes never mix; the service watches the file and streams new lines to its clients,
so the Log screen shows changes made anywhere.

    audit = AuditLog(home)
    audit.record("lease", "default 192.168.122.5", client="cli")
    audit.entries(limit=100)     # oldest first
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import time
from typing import Any

from engine.home import Home

KEEP_BYTES = 4 << 20  # past this the file is rotated to audit.jsonl.1 (one generation kept)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@dataclass(frozen=True)
class AuditEntry:
    """One change: what was done (`action`, e.g. "lease", "vm deploy") to what (`target`), by whom, from where."""

    action: str
    target: str
    user: str = field(default_factory=current_user)
    client: str = ""  # "cli", "console" or "service", with the pid: "cli 4242"
    detail: str = ""
    at: float = field(default_factory=time)

    def text(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.user} ({self.client}) {self.action} {self.target}{detail}"


class AuditLog:
    def __init__(self, home: Home) -> None:
        self.path = home.logs / "audit.jsonl"

    def record(self, action: str, target: str, client: str, detail: str = "", user: str | None = None) -> AuditEntry:
        entry = AuditEntry(action, target, user or current_user(), client, detail)
        self.append(entry)
        return entry

    def append(self, entry: AuditEntry) -> None:
        line = (json.dumps(asdict(entry), separators=(",", ":")) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size > KEEP_BYTES:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def entries(self, limit: int | None = None) -> list[AuditEntry]:
        """The recorded changes, oldest first (the last `limit` of them)."""
        entries = [*self._read(self.path.with_name(self.path.name + ".1")), *self._read(self.path)]
        return entries[-limit:] if limit else entries

    def read_from(self, offset: int) -> tuple[list[AuditEntry], int]:
        """Entries appended after byte `offset` of the current file, and the offset to read from next time (a
        rotated file starts over)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return [], 0
        if size < offset:
            offset = 0
        if size == offset:
            return [], offset
        with self.path.open("rb") as f:
            f.seek(offset)
            data = f.read(size - offset)
        complete = data[: data.rfind(b"\n") + 1]
        return self._parse(complete.decode("utf-8", "replace")), offset + len(complete)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _read(self, path: Path) -> list[AuditEntry]:
        try:
            return self._parse(path.read_text(encoding="utf-8", errors="replace"))
        except FileNotFoundError:
            return []

    @staticmethod
    def _parse(text: str) -> list[AuditEntry]:
        entries = []
        for line in text.splitlines():
            try:
                data: Any = json.loads(line)
                entries.append(AuditEntry(**data))
            except (ValueError, TypeError):
                continue  # a damaged line is skipped, the rest still shows
        return entries
