"""The service's wire protocol: JSON lines over the home's Unix socket (the README has the full list).

A client sends requests, one JSON object a line, and gets one reply a line, in order:

    {"op": "status"}                         -> {"ok": true, "result": {...}}
    {"op": "submit", "script": TEXT, ...}    -> {"ok": false, "error": {"kind": "input", "problems": [...]}}

`{"op": "subscribe"}` turns the connection into a stream: after its reply (which carries the service's runs and
recent log so a new client starts with the whole picture), every engine event arrives as `{"event": {...}}`, the
event's fields with its type under `type`. Everything here is the standard library, so clients start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from enum import Enum
from pathlib import Path
from time import time
from typing import Any, get_type_hints

from engine.errors import HeadnodeError, InputError, OperationError, Problem
from engine.home import Home

RUN_DIR = "run"  # in the home, mode 0700: the socket, the lock, the run history
SOCKET_NAME = "engine.sock"
LOCK_NAME = "engine.lock"
MAX_LINE = 16 << 20  # a request or reply longer than this is refused (scripts are small)
SUN_PATH_MAX = 107  # bytes a Unix socket address may have on Linux


class ProtocolError(OperationError):
    """The other side broke the protocol or went away."""


@dataclass(frozen=True)
class ServicePaths:
    """Where a home's service keeps its socket, lock and history."""

    home: Home

    @property
    def directory(self) -> Path:
        return self.home.root / RUN_DIR

    @property
    def socket(self) -> Path:
        return self.directory / SOCKET_NAME

    @property
    def lock(self) -> Path:
        return self.directory / LOCK_NAME

    @property
    def history(self) -> Path:
        return self.directory / "history.json"

    @property
    def log(self) -> Path:
        return self.home.logs / "service.log"

    def ensure_directory(self) -> None:
        """The run directory, 0700 whatever the umask or an earlier chmod said: only the owner reaches the socket."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for `path` that fits a Unix socket's 107 bytes: the path itself, or, for a deep home, the path
    through /proc/self/fd of its directory held open meanwhile."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


@dataclass(frozen=True)
class VmOperationFinished:
    """Event: a VM operation the service ran has ended (its script's end is ScriptFinished; this one is after the
    VM's record was written, so a follower can report the VM's new state)."""

    kind = "vm_operation_finished"
    vm: int
    op: str
    run: str | None
    ok: bool
    state: str
    host: str | None = None
    error: str | None = None
    at: float = field(default_factory=time)


@dataclass(frozen=True)
class WarmFinished:
    """Event: a `cache warm` the service ran has ended; `outcomes` as `cache warm --json` prints them (each host's
    `host`, `state`, `key`, `size`, `sent`, `detail`), `error` when it could not run at all."""

    kind = "warm_finished"
    run: str
    outcomes: list[dict[str, Any]]
    error: str | None = None
    at: float = field(default_factory=time)


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


class LineReader:
    """Reads JSON lines from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = sock.makefile("rb", buffering=1 << 16)

    def read(self) -> dict[str, Any] | None:
        """The next message, or None when the other side closed."""
        line = self._file.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise ProtocolError("message too long or cut short")
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("a message must be a JSON object")
        return message

    def close(self) -> None:
        self._file.close()


# -- errors ----------------------------------------------------------------------------------------------------


def error_to_wire(exc: HeadnodeError) -> dict[str, Any]:
    if isinstance(exc, InputError):
        return {"kind": "input", "problems": [asdict(p) for p in exc.problems]}
    return {"kind": "operation", "message": str(exc)}


def error_from_wire(error: dict[str, Any]) -> HeadnodeError:
    if error.get("kind") == "input":
        return InputError([Problem(**p) for p in error.get("problems", [])] or [Problem("bad request")])
    return OperationError(str(error.get("message", "the service failed")))


# -- events ----------------------------------------------------------------------------------------------------


def _event_types() -> dict[str, type]:
    from engine.events import LogEvent
    from engine.service.audit import AuditEntry
    from engine.transfers import progress
    from engine.vms.records import VmChanged

    types: list[type] = [
        LogEvent,
        VmChanged,
        VmOperationFinished,
        WarmFinished,
        AuditEntry,
        progress.ScriptStarted,
        progress.ActionStarted,
        progress.ActionProgress,
        progress.ActionRetry,
        progress.ActionLog,
        progress.ActionFinished,
        progress.ScriptProgress,
        progress.ScriptFinished,
    ]
    return {t.__name__: t for t in types}


_TYPES: dict[str, type] = {}
_ENUM_FIELDS: dict[type, dict[str, type[Enum]]] = {}


def _enum_fields(kind: type) -> dict[str, type[Enum]]:
    """The fields of an event type that hold enums (VmState, RunOutcome), which JSON carries as their values."""
    if kind not in _ENUM_FIELDS:
        hints = get_type_hints(kind)
        _ENUM_FIELDS[kind] = {k: h for k, h in hints.items() if isinstance(h, type) and issubclass(h, Enum)}
    return _ENUM_FIELDS[kind]


def event_to_wire(event: Any) -> dict[str, Any] | None:
    """An engine event as JSON (None for an object that is no event the protocol carries)."""
    if not is_dataclass(event) or isinstance(event, type):
        return None
    return {"type": type(event).__name__, **asdict(event)}


def event_from_wire(data: dict[str, Any]) -> Any:
    """The event object again (the same dataclasses the engine publishes), or None for an unknown type (a newer
    service may send more)."""
    if not _TYPES:
        _TYPES.update(_event_types())
    kind = _TYPES.get(str(data.get("type")))
    if kind is None:
        return None
    fields = {k: v for k, v in data.items() if k != "type"}
    try:
        for name, enum in _enum_fields(kind).items():
            if name in fields:
                fields[name] = enum(fields[name])
        return kind(**fields)
    except (TypeError, ValueError):  # fields or values of another version
        return None
