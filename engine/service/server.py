"""The engine service of one home: owns the executor and everything that runs, and serves clients on a Unix
socket (engine/service/protocol.py). Started on demand by the first client that needs it (engine/service/client.py)
or in the foreground by `headnode daemon` (systemd).

One per home: `run/engine.lock` is held (flock) for the service's life, so a second one refuses to start, and a
socket left by a dead one is known stale and replaced. The socket is 0600 in a 0700 directory and every peer's
uid is checked (SO_PEERCRED): only the home's owner gets in. Never TCP.

On start it looks in the journal for runs whose process died (SIGKILL, OOM, reboot) and resumes them from their
first unfinished line (a VM's through `vm recover --retry`, so its record stays true), marking them resumed in
the history.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pwd
import queue
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from engine.core import Engine
from engine.errors import HeadnodeError, InputError, OperationError, Problem
from engine.events import EventBus, Level, LogEvent
from engine.home import Home
from engine.language.numbers import whole_number
from engine.language.script import parse_script
from engine.service.audit import AuditEntry, AuditLog
from engine.service.dhcp import DhcpSupervisor
from engine.service.history import HISTORY_KEPT, History
from engine.service.protocol import (
    LineReader,
    ProtocolError,
    ServicePaths,
    VmOperationFinished,
    WarmFinished,
    encode,
    error_to_wire,
    event_to_wire,
    socket_address,
)
from engine.service.runs import ActionState, RunState, RunStatus, TransferBoard
from engine.transfers.executor import ScriptRun
from engine.transfers.journal import JournalEntry, JournalState
from engine.transfers.progress import ActionLog, ActionProgress, ScriptFinished, ScriptStarted
from engine.vms.records import process_alive

LOG_KEPT = 1000  # log and audit events a new client is sent on subscribing
QUEUE_LIMIT = 20000  # events waiting for one slow client; past it the client is dropped (it reconnects)
# The service's work yields the CPU to interactive clients: 100 copies at nice 0 beside a console left it a key
# press in 0.19 s (p95); in the console's own process the engine's threads ran at nice 19 for the same reason.
SERVICE_NICE = 10
PROGRESS_SECONDS = 0.5  # one action's progress reaches a client at most this often (consoles redraw at 2 Hz)
POLL_SECONDS = 0.5  # how often the service looks at the audit file and its idle time
STOP_WAIT_SECONDS = 60.0
VM_OPERATIONS = ("deploy", "stop", "resume", "migrate", "shutdown", "delete", "recover")


class AlreadyRunning(OperationError):
    def __init__(self, pid: int | None, paths: ServicePaths) -> None:
        self.pid = pid
        super().__init__(f"a service already runs for {paths.home.root} (pid {pid or '?'})")


def lock_holder(paths: ServicePaths) -> int | None:
    """The pid of the service running for the home, or None when none does (its lock is free)."""
    try:
        fd = os.open(paths.lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return whole_number(text)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class _Client:
    """One connection: requests answered in order on its own thread; once subscribed, a stream of events fed by a
    queue (the engine's threads never wait for a slow client)."""

    def __init__(self, service: Service, sock: socket.socket, pid: int, uid: int) -> None:
        self.service = service
        self.sock = sock
        self.pid = pid
        self.user = _user_name(uid)
        self.name = f"pid {pid}"
        self.events: queue.Queue[bytes | None] | None = None
        self._send_lock = threading.Lock()
        self._progress_sent: dict[tuple[str, int], float] = {}

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else encode(message)
        with self._send_lock:
            self.sock.sendall(data)

    def serve(self) -> None:
        reader = LineReader(self.sock)
        try:
            while (request := reader.read()) is not None:
                self.name = str(request.get("client") or self.name)
                reply = self.service.answer(self, request)
                self.send(reply)
                if self.events is not None:
                    self._stream()
                    return
        except (OSError, ProtocolError):
            pass  # the client went away or spoke nonsense: drop it
        finally:
            reader.close()
            self.close()

    def push(self, data: bytes, progress: tuple[str, int] | None = None, final: bool = False) -> None:
        """Queue an event; `progress` (run, line) marks a progress report, which is superseded by the next one:
        sent at most every PROGRESS_SECONDS (always the last, `final`), and dropped for a client falling behind."""
        events = self.events
        if events is None:
            return
        if progress is not None and not final:
            now = time.monotonic()
            if now - self._progress_sent.get(progress, 0.0) < PROGRESS_SECONDS or events.qsize() > QUEUE_LIMIT // 2:
                return
            if len(self._progress_sent) > 10000:
                self._progress_sent.clear()
            self._progress_sent[progress] = now
        try:
            events.put_nowait(data)
        except queue.Full:
            self.close()

    def _stream(self) -> None:
        assert self.events is not None
        while (data := self.events.get()) is not None:
            self.send(data)

    def close(self) -> None:
        self.service.forget(self)
        if self.events is not None:
            with contextlib.suppress(queue.Full):
                self.events.put_nowait(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Service:
    """A home's engine service. `serve()` runs it until stopped (a `stop` request, SIGTERM, or idle_exit seconds
    with no run and no client)."""

    def __init__(self, home: Home, idle_exit: float | None = None) -> None:
        self.home = home.ensure()
        self.paths = ServicePaths(self.home)
        self.idle_exit = idle_exit
        self.pid = os.getpid()
        self.started = time.time()
        self.bus = EventBus()
        self.audit = AuditLog(self.home)
        self.history = History(self.paths.history)
        self.board = TransferBoard(recent_kept=HISTORY_KEPT)  # as many finished runs as the history keeps
        self.board.load(self.history.runs())
        self._board_lock = threading.Lock()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_KEPT)
        self._clients: set[_Client] = set()
        self._clients_lock = threading.Lock()
        self._operations: set[threading.Thread] = set()  # VM operations in progress (their runs end before them)
        self._stopping = threading.Event()
        self._lock_fd: int | None = None
        self._listener: socket.socket | None = None
        self._socket_inode: int | None = None
        self.engine: Engine
        self.dhcp: DhcpSupervisor | None = None

    # -- life ---------------------------------------------------------------------------------------------------

    def serve(self, ready: Callable[[], None] | None = None) -> None:
        self._take_lock()
        try:
            # A sample image still owed is made by the console that owes it (or the next CLI command), not here:
            # mkfs would hold up the service's start.
            self.engine = Engine(self.home, self.bus, defer_sample_image=True)
            self.bus.subscribe(self._on_event)
            self.dhcp = DhcpSupervisor(self.engine.networks, self.bus)
            if self.history.problem:
                self.bus.publish(LogEvent(self.history.problem, Level.ERROR, "service"))
            self._listen()
            self.bus.publish(LogEvent(f"service started (pid {self.pid})", Level.INFO, "service"))
            self._resume_interrupted()
            if ready is not None:
                ready()
            self._loop()
        finally:
            self._shut_down()

    def _take_lock(self) -> None:
        self.paths.ensure_directory()
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(pid, self.paths) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.pid}\n".encode(), 0)
        self._lock_fd = fd

    def _listen(self) -> None:
        path = self.paths.socket
        # The lock is ours, so a socket here is a dead service's: replace it.
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with socket_address(path) as address:
            listener.bind(address)
        os.chmod(path, 0o600)  # the 0700 directory already keeps others out while this happens
        listener.listen(64)
        self._socket_inode = path.stat().st_ino
        self._listener = listener

    def _loop(self) -> None:
        assert self._listener is not None
        audit_offset = self.audit.size()
        idle_since = time.monotonic()
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._listener], [], [], POLL_SECONDS)
            if readable:
                with contextlib.suppress(OSError):
                    sock, _ = self._listener.accept()
                    self._admit(sock)
            entries, audit_offset = self.audit.read_from(audit_offset)
            for entry in entries:
                self.bus.publish(entry)
            if self.dhcp is not None:
                self.dhcp.reconcile()
            if self.idle_exit is not None:
                if self._busy() or self._clients:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > self.idle_exit:
                    self.bus.publish(LogEvent("service idle: stopping", Level.INFO, "service"))
                    break

    def _admit(self, sock: socket.socket) -> None:
        pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != os.geteuid():
            with contextlib.suppress(OSError):
                sock.sendall(encode({"ok": False, "error": {"kind": "operation", "message": "not the owner"}}))
            sock.close()
            self.bus.publish(LogEvent(f"refused a connection from uid {uid} (pid {pid})", Level.WARNING, "service"))
            return
        client = _Client(self, sock, pid, uid)
        with self._clients_lock:
            self._clients.add(client)
        threading.Thread(target=client.serve, name=f"client-{pid}", daemon=True).start()

    def forget(self, client: _Client) -> None:
        with self._clients_lock:
            self._clients.discard(client)

    def _busy(self) -> bool:
        serving = self.dhcp is not None and self.dhcp.serving()
        return bool(self.engine.executor.active() or self._live_operations() or serving)

    def _live_operations(self) -> list[threading.Thread]:
        return [t for t in list(self._operations) if t.is_alive()]

    def request_stop(self, force: bool) -> None:
        """Stop: refused while runs are active unless forced, which cancels them cleanly first."""
        active = self.engine.executor.active()
        if (active or self._live_operations()) and not force:
            names = ", ".join(self._describe(run) for run in active) or "VM operations"
            raise OperationError(f"{len(active)} run(s) active ({names}): use --force to cancel them and stop")
        self._stopping.set()

    def _shut_down(self) -> None:
        self._stopping.set()
        engine = getattr(self, "engine", None)
        if engine is not None:
            for run in engine.executor.active():
                run.cancel()
            deadline = time.monotonic() + STOP_WAIT_SECONDS
            for thread in self._live_operations():
                thread.join(max(0.0, deadline - time.monotonic()))
        if self.dhcp is not None:
            self.dhcp.stop_all()
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                if self.paths.socket.stat().st_ino == self._socket_inode:
                    self.paths.socket.unlink()
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            client.close()
        if engine is not None:
            engine.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the lock file stays: removing it would let two services lock two files
            self._lock_fd = None

    # -- events -------------------------------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        """On the publishing thread: keep the board, the history and the log, and feed the subscribers."""
        with self._board_lock:
            if self.board.apply(event):
                self._keep_history(event)
        wire = event_to_wire(event)
        if wire is None:
            return
        if isinstance(event, LogEvent | AuditEntry):
            self._log.append(wire)
        data = encode({"event": wire})
        with self._clients_lock:
            clients = list(self._clients)
        progress = (event.run, event.line) if isinstance(event, ActionProgress) else None
        final = progress is not None and event.bytes_done == event.bytes_total
        for client in clients:
            client.push(data, progress, final)

    def _keep_history(self, event: Any) -> None:
        if isinstance(event, ScriptFinished):
            run = self.board.runs.get(event.run)
            if run is not None:
                self.history.add(run)
        elif isinstance(event, ScriptStarted) and event.resumed_from:
            previous = self.board.runs.get(event.resumed_from)
            if previous is not None:
                self.history.add(previous)  # now names the run that took over

    def snapshot(self) -> list[dict[str, Any]]:
        with self._board_lock:
            return [run.to_json() for run in self.board.runs.values()]

    # -- requests -----------------------------------------------------------------------------------------------

    def answer(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        op = str(request.get("op"))
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            return {"ok": False, "error": error_to_wire(InputError(Problem(f"unknown request {op!r}")))}
        try:
            return {"ok": True, "result": handler(client, request)}
        except HeadnodeError as exc:
            return {"ok": False, "error": error_to_wire(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            return {"ok": False, "error": error_to_wire(InputError(Problem(f"bad {op} request: {exc!r}")))}

    def _op_status(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        active = self.engine.executor.active()
        return {
            "pid": self.pid,
            "socket": str(self.paths.socket),
            "home": str(self.home.root),
            "started": self.started,
            "uptime": time.time() - self.started,
            "runs_active": len(active),
            "operations_active": len(self._live_operations()),
            "clients": len(self._clients),
            "dhcp": self.dhcp.status() if self.dhcp is not None else [],
        }

    def _op_subscribe(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        client.events = queue.Queue(QUEUE_LIMIT)
        # Taken after the queue exists: an event from now on is either in the snapshot or queued (or both).
        return {"runs": self.snapshot(), "log": list(self._log)}

    def _op_runs(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        return {"runs": self.snapshot()}

    def _op_audit(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        limit = request.get("limit")
        return {"entries": [event_to_wire(e) for e in self.audit.entries(int(limit) if limit else None)]}

    def _op_submit(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        vm = request.get("vm")
        script = parse_script(str(request["script"]), str(request.get("source") or "<script>"))
        run = self.engine.executor.submit(script, None if vm is None else int(vm), resume=bool(request.get("resume")))
        self.audit.record("run", script.source, client.name, self._describe(run), client.user)
        return {"run": run.id, "vm": run.vm}

    def _op_vm(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        op = str(request["operation"])
        if op not in VM_OPERATIONS:
            raise InputError(Problem(f"unknown VM operation {op!r}"))
        vm_id = int(request["vm"])
        host = request.get("host")
        vms = self.engine.vms
        if op == "recover":
            retry, delete = bool(request.get("retry")), bool(request.get("delete"))

            def work(on_run: Callable[[ScriptRun], None]) -> Any:
                return vms.recover(vm_id, retry=retry, delete=delete, on_run=on_run)

            detail = "--retry" if retry else "--delete"
        else:
            force = bool(request.get("force"))

            def work(on_run: Callable[[ScriptRun], None]) -> Any:
                return vms.operate(vm_id, op, host, force=force, on_run=on_run)

            detail = f"on {host}" if host else ""
        accepted = self._start_operation(vm_id, op, work)
        self.audit.record(f"vm {op}", f"VM {vm_id}", client.name, detail, client.user)
        return accepted

    def _op_vm_batch(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        """`vm deploy ID HOST [ID HOST ...]`: one operation per VM, started together (Executor.together), so the
        CLONEs of one image that their scripts share gather into one fan-out (engine.transfers.fanout.gathering)
        rather than each fetching from the head. Every VM and host is checked first (InputError listing each
        problem, nothing started); then an answer per VM as `vm` gives, or its `error` where it was refused."""
        op = str(request["operation"])
        pairs = [(int(vm), None if host is None else str(host)) for vm, host in request["vms"]]
        problems: list[Problem] = []
        hosts = self.engine.executor.transfers.hosts
        for vm_id, host in pairs:
            problems += _problems(partial(self.engine.vms.get, vm_id))
            if host is not None:
                problems += _problems(partial(hosts.resolve, host))
        if len({vm_id for vm_id, _ in pairs}) < len(pairs):
            problems.append(Problem("a VM is named twice: one operation per VM"))
        if problems:
            raise InputError(problems)
        answers = []
        with self.engine.executor.together():
            for vm_id, host in pairs:
                try:
                    answers.append(self._op_vm(client, {"operation": op, "vm": vm_id, "host": host}))
                except HeadnodeError as exc:
                    answers.append({"run": None, "vm": vm_id, "finished": None, "error": str(exc)})
        return {"vms": answers}

    def _start_operation(self, vm_id: int, op: str, work: Callable[[Callable[[ScriptRun], None]], Any]) -> dict:
        """Run a VM operation on its own thread; answer once its script started, or once it ended (an operation
        refused, or one with nothing to run)."""
        started = threading.Event()
        box: dict[str, Any] = {}

        def on_run(run: ScriptRun) -> None:
            box["run"] = run.id
            started.set()

        def operate() -> None:
            try:
                vm = work(on_run)
                box["vm"] = vm.to_json()
                finished = VmOperationFinished(vm_id, op, box.get("run"), True, vm.state.value, vm.host)
            except HeadnodeError as exc:
                box["error"] = exc
                finished = VmOperationFinished(vm_id, op, box.get("run"), False, "", None, str(exc))
            except Exception as exc:  # a bug: the client is told, the service goes on
                box["error"] = OperationError(f"internal error: {exc!r}")
                finished = VmOperationFinished(vm_id, op, box.get("run"), False, "", None, repr(exc))
            started.set()
            self.bus.publish(finished)

        thread = threading.Thread(target=operate, name=f"vm-{vm_id}-{op}", daemon=True)
        self._operations = {t for t in self._operations if t.is_alive()} | {thread}
        thread.start()
        started.wait()
        if "run" not in box and "error" in box:
            raise box["error"]
        return {"run": box.get("run"), "vm": vm_id, "finished": box.get("vm") if "run" not in box else None}

    def _op_warm(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        """`cache warm`: put an image into hosts' caches on a thread of its own (through a fan-out to two or more
        ssh hosts, whose run the board shows with a line per host); WarmFinished says how each host ended."""
        import uuid

        from engine.language.script import source_argument
        from engine.transfers.cache.warm import warm
        from engine.transfers.job import Job
        from engine.transfers.log import TransferLog

        source = source_argument(str(request["source"]), self.home.config.frontend_name)
        hosts = [str(name) for name in request["hosts"]]
        transfers = self.engine.executor.transfers
        for name in hosts:
            transfers.hosts.resolve(name)  # an unknown host is bad input: nothing runs
        run = f"warm-{uuid.uuid4().hex[:12]}"
        log = TransferLog(self.home, None)

        def job_for(host: str) -> Job:
            def line(message: str, error: bool) -> None:
                log.write(message, error)
                if error:
                    self.bus.publish(ActionLog(run, None, 0, f"{host}: {message}", True))

            return Job(log=line)

        def work() -> None:
            try:
                outcomes = warm(
                    transfers,
                    source,
                    hosts,
                    job_for,
                    head_mib=request.get("head_mib"),
                    host_mib=request.get("host_mib"),
                    events=self.bus.publish,
                    run_id=run,
                )
                found = [
                    {
                        "host": o.host,
                        "state": o.state.value,
                        "key": o.key,
                        "size": o.size,
                        "sent": o.sent,
                        "detail": o.detail,
                    }
                    for o in outcomes
                ]
                finished = WarmFinished(run, found)
                states = ", ".join(f"{o.host} {o.state.value}" for o in outcomes)
                self.audit.record("cache warm", str(source), client.name, states, client.user)
            except HeadnodeError as exc:
                finished = WarmFinished(run, [], str(exc))
            except Exception as exc:  # a bug: the client is told, the service goes on
                finished = WarmFinished(run, [], f"internal error: {exc!r}")
            self.bus.publish(finished)

        thread = threading.Thread(target=work, name=f"cache-warm-{run}", daemon=True)
        self._operations = {t for t in self._operations if t.is_alive()} | {thread}
        thread.start()
        return {"run": run}

    def _op_cancel(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        target = str(request["target"])
        executor = self.engine.executor
        run = executor.find(target)
        vm = whole_number(target)  # ASCII digits only: '²'.isdigit() holds and int('²') raises
        if run is not None:
            runs = [run]
        elif vm is not None:
            runs = [r for r in executor.active() if r.vm == vm]
        else:
            raise InputError(Problem(f"no run {target} in the service"))
        runs = [r for r in runs if not r.done]
        if not runs:
            raise InputError(Problem(f"nothing running for {target}"))
        line = request.get("line")
        for r in runs:
            if line is None:
                r.cancel()
            else:  # one action: the script then fails at that line
                r.cancel_action(int(line))
            what = self._describe(r) + ("" if line is None else f" line {line}")
            self.audit.record("cancel", f"run {r.id}", client.name, what, client.user)
        return {"cancelled": [r.id for r in runs]}

    def _op_dhcp(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        """Serve a network's leases with dnsmasq on `interface` (`dns`: answer for their names too), or `stop`."""
        assert self.dhcp is not None
        name = str(request["network"])
        if request.get("stop"):
            result = self.dhcp.stop(name)
            self.audit.record("dhcp stop", name, client.name, "", client.user)
            return result
        result = self.dhcp.serve(name, str(request["interface"]), bool(request.get("dns", True)))
        detail = f"on {result['interface']}" + ("" if result["dns"] else ", no DNS")
        self.audit.record("dhcp", name, client.name, detail, client.user)
        return result

    def _op_stop(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        self.request_stop(bool(request.get("force")))
        return {"pid": self.pid}

    @staticmethod
    def _describe(run: ScriptRun) -> str:
        return f"run {run.id} ({run.script.source}" + (f", VM {run.vm})" if run.vm is not None else ")")

    # -- crash and restart --------------------------------------------------------------------------------------

    def _resume_interrupted(self) -> None:
        """Resume the runs a dead process left running in the journal, oldest first."""
        journal = self.engine.executor.journal
        seen: set[tuple[int | None, str]] = set()
        for entry in journal.running():
            if entry.pid is None or entry.pid == self.pid or process_alive(entry.pid):
                continue  # someone else's live run, or a record from before pids were kept
            self._record_interrupted(entry)
            key = (entry.vm, entry.script)
            if key in seen:  # an older twin: the newer one is resumed, this one stays as it is
                journal.finish(entry.run, JournalState.INTERRUPTED)
                continue
            seen.add(key)
            try:
                self._resume(entry)
            except HeadnodeError as exc:
                journal.finish(entry.run, JournalState.INTERRUPTED)
                self.bus.publish(LogEvent(f"cannot resume run {entry.run}: {exc}", Level.ERROR, "service"))

    def _record_interrupted(self, entry: JournalEntry) -> None:
        texts = entry.script.splitlines()
        lines: dict[int, ActionState] = {}
        for action in entry.actions:
            if "line" not in action:  # an end with no start, as records before the journal's files wrote it
                continue
            text = texts[action["position"]] if action["position"] < len(texts) else ""
            outcome = action.get("outcome", JournalState.RUNNING)
            lines[action["line"]] = ActionState(
                action["line"],
                text.split(" ", 1)[0],
                text,
                "",
                bytes_done=action.get("bytes") or 0,
                state=RunStatus.INTERRUPTED if outcome == JournalState.RUNNING else RunStatus(outcome),
                error=action.get("error"),
            )
        run = RunState(
            entry.run,
            entry.vm,
            entry.source,
            len(texts),
            len(entry.done),
            RunStatus.INTERRUPTED,
            actions=lines,
            started=entry.started,
            ended=time.time(),
        )
        with self._board_lock:
            self.board.load([run])
        self.history.add(run)

    def _resume(self, entry: JournalEntry) -> None:
        """A VM operation's run is resumed as `vm recover --retry` (the VM's record goes on with it); a script run
        with `run` (with or without --vm) as `run --resume`."""
        vm = self._operation_of(entry)
        if vm is None:
            script = parse_script(entry.script, entry.source)
            run = self.engine.executor.submit(script, entry.vm, resume=True)
            self.audit.record("resume", f"run {entry.run}", "service", f"as run {run.id}")
            return
        op = vm.last_operation.op if vm.last_operation else "recover"
        self._start_operation(vm.id, op, lambda on_run: self.engine.vms.recover(vm.id, retry=True, on_run=on_run))
        self.audit.record("resume", f"VM {vm.id}", "service", f"{op} (run {entry.run})")

    def _operation_of(self, entry: JournalEntry) -> Any:
        """The VM whose interrupted operation ran this script, if it was one."""
        if entry.vm is None:
            return None
        try:
            vm = self.engine.vms.get(entry.vm)
        except InputError:
            return None  # `run --vm N` names a VM only for its log
        last = vm.last_operation
        if last is None or not vm.interrupted or "".join(f"{line}\n" for line in last.script) != entry.script:
            return None
        return vm


def yield_to_clients(own_session: bool) -> None:
    """Run this process at SERVICE_NICE (unless it is nicer already), before it starts a thread: Linux threads and
    the commands they start (ssh, cksum, dd) inherit it, so the copies take the CPU the consoles leave.

    With the kernel's autogroup on (most distributions), a nice weighs only against the same session's processes:
    a service in a session of its own would still get half the CPU against a console. So a service started by a
    client (`own_session`) nices its session's autogroup too; a `headnode daemon` in someone's shell leaves theirs."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), SERVICE_NICE))
    autogroup = Path("/proc/self/autogroup")
    if own_session and autogroup.exists():
        with contextlib.suppress(OSError):
            autogroup.write_text(str(SERVICE_NICE))


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.service --home DIR [--idle-exit SECONDS]`: what clients start in the background."""
    parser = argparse.ArgumentParser(prog="headnode-service")
    parser.add_argument("--home", required=True)
    parser.add_argument("--idle-exit", type=float, default=None)
    parser.add_argument("--own-session", action="store_true", help="started by a client in a session of its own")
    args = parser.parse_args(argv)
    return run_service(Home(args.home), args.idle_exit, args.own_session)


def run_service(home: Home, idle_exit: float | None = None, own_session: bool = False) -> int:
    """Run the service in this process until stopped; SIGTERM and SIGINT stop it cleanly (runs cancelled)."""
    yield_to_clients(own_session)
    service = Service(home, idle_exit)

    def stop(signum: int, frame: object) -> None:
        service._stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        service.serve()
    except AlreadyRunning as exc:
        print(f"headnode: {exc}", file=sys.stderr)
        return 1
    return 0


def _problems(check: Callable[[], object]) -> list[Problem]:
    """What `check()` found wrong (its InputError's problems), so a batch is refused with every problem at once."""
    try:
        check()
    except InputError as exc:
        return list(exc.problems)
    return []
