"""A client of the home's engine service: connects, or starts the service in the background first the way tmux
starts its server (double fork and setsid, then wait for the socket). Two clients starting at once start one
service: they take turns at a start lock, and the second finds the first one's service running.

    client = ServiceClient(home, "cli")
    run = client.call("submit", script=text, source="job.script")["run"]
    with client.subscribe() as stream:        # stream.runs, stream.log: the picture so far
        for event in stream:                  # engine events (dataclasses), as they happen
            ...
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import OperationError
from engine.home import Home
from engine.service.protocol import (
    LineReader,
    ProtocolError,
    ServicePaths,
    encode,
    error_from_wire,
    event_from_wire,
    socket_address,
)

START_LOCK_NAME = "start.lock"
START_TIMEOUT = 30.0  # seconds a client waits for the service it started to listen
REQUEST_TIMEOUT = 120.0
IDLE_EXIT = 900.0  # a service started on demand stops after this long with no run and no client
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class NotRunning(OperationError):
    """No service runs for the home (and the client was told not to start one)."""


class Connection:
    """One socket to the service: requests and their replies in order."""

    def __init__(self, sock: socket.socket, client: str) -> None:
        self.sock = sock
        self.client = client
        self.reader = LineReader(sock)

    def call(self, op: str, **args: Any) -> Any:
        self.sock.sendall(encode({"op": op, "client": self.client, **args}))
        reply = self.reader.read()
        if reply is None:
            raise ProtocolError("the service closed the connection")
        if not reply.get("ok"):
            raise error_from_wire(reply.get("error") or {})
        return reply.get("result")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stream:
    """A subscription: the service's runs and recent log at subscribing, then every event."""

    def __init__(self, connection: Connection, snapshot: dict[str, Any]) -> None:
        self.connection = connection
        self.runs: list[dict[str, Any]] = snapshot.get("runs", [])
        self.log = [event for event in map(event_from_wire, snapshot.get("log", [])) if event is not None]

    def __iter__(self) -> Iterator[Any]:
        while (message := self.connection.reader.read()) is not None:
            event = event_from_wire(message.get("event") or {})
            if event is not None:
                yield event

    def close(self) -> None:
        # shutdown wakes a thread blocked reading this stream (close alone would not)
        with contextlib.suppress(OSError):
            self.connection.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServiceClient:
    def __init__(self, home: Home, client: str = "cli") -> None:
        self.home = home
        self.paths = ServicePaths(home)
        self.client = f"{client} {os.getpid()}"

    def connect(self, start: bool = True) -> Connection:
        """A connection to the home's service; one is started first if none runs (unless start is False)."""
        sock = self._try_connect()
        if sock is None:
            if not start:
                raise NotRunning(f"no service runs for {self.home.root}")
            sock = self._start_and_connect()
        return Connection(sock, self.client)

    def call(self, op: str, start: bool = True, **args: Any) -> Any:
        with self.connect(start) as connection:
            connection.sock.settimeout(REQUEST_TIMEOUT)
            return connection.call(op, **args)

    def subscribe(self, start: bool = True) -> Stream:
        connection = self.connect(start)
        try:
            return Stream(connection, connection.call("subscribe"))
        except BaseException:
            connection.close()
            raise

    def running(self) -> bool:
        sock = self._try_connect()
        if sock is None:
            return False
        sock.close()
        return True

    def _try_connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_address(self.paths.socket) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()  # no service, or a dead one's socket (the next service replaces it)
            return None
        except OSError as exc:
            sock.close()
            raise OperationError(f"cannot connect to the service at {self.paths.socket}: {exc.strerror}") from None
        return sock

    def _start_and_connect(self) -> socket.socket:
        self.paths.ensure_directory()
        # One client at a time starts the service; the others wait here and then connect to the one it started
        # (each spawning its own, the extra ones lived until they found the service's lock taken).
        fd = os.open(self.paths.directory / START_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            sock = self._try_connect()
            if sock is not None:
                return sock
            spawn_service(self.home)
            deadline = time.monotonic() + START_TIMEOUT
            delay = 0.005
            while time.monotonic() < deadline:
                sock = self._try_connect()
                if sock is not None:
                    return sock
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            os.close(fd)
        raise OperationError(f"the service did not start within {START_TIMEOUT:g} s: see {self.paths.log}")


def spawn_service(home: Home) -> None:
    """Start `python -m engine.service` for the home, detached: its own session, no terminal, not our child
    (double fork), output to logs/service.log. Returns at once."""
    paths = ServicePaths(home)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "engine.service", "--home", str(home.root), "--idle-exit", str(IDLE_EXIT)]
    argv.append("--own-session")  # its session's autogroup is its own to nice (server.yield_to_clients)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    log = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        pid = os.fork()
        if pid == 0:  # the child: a new session, then the grandchild runs the service and the child exits
            try:
                os.setsid()
                if os.fork() == 0:
                    os.chdir("/")
                    os.dup2(null, 0)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    os.execve(sys.executable, argv, env)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    finally:
        os.close(log)
        os.close(null)
