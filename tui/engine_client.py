"""The console's engine when the home's service runs the work: the same interface the screens use of an in-process
Engine (`vms`, `hosts`, `networks`, `executor`, `bus`), with everything that runs handed to the service.

Reads and quick changes (lists, leases, hosts) stay in this process, on the database, as the CLI's do. VM
operations are sent to the service and waited for (on the console's worker threads, as before). The service's
events (from every client, and its history and recent log at connecting) are published on `bus`, so the event
bridge, the transfer board and the Log screen see them as they saw an in-process engine's.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

from engine.errors import OperationError
from engine.events import EventBus, Level, LogEvent
from engine.home import Home
from engine.networks.manager import Networks
from engine.service.client import ServiceClient, Stream
from engine.service.protocol import ProtocolError, VmOperationFinished
from engine.service.runs import RunState, TransferBoard
from engine.transfers.executor import Executor
from engine.transfers.hosts import Hosts
from engine.vms.lifecycle import Vms
from engine.vms.records import Vm

RECONNECT_SECONDS = 1.0  # after the service went away: the next connection starts a new one


class RemoteRun:
    """A run in the service, as the Transfers screen handles one: cancel it or one of its lines."""

    def __init__(self, client: ServiceClient, run: RunState) -> None:
        self.client = client
        self.id = run.run
        self.vm = run.vm
        self.source = run.source

    def cancel(self) -> None:
        self.client.call("cancel", target=self.id)

    def cancel_action(self, line: int) -> None:
        self.client.call("cancel", target=self.id, line=line)


class RemoteRuns:
    """The executor's `find` and `active`, answered from the console's board of the service's runs (read on the
    console's thread, as the screens do)."""

    def __init__(self, client: ServiceClient, board: TransferBoard) -> None:
        self.client = client
        self.board = board

    def find(self, run_id: str) -> RemoteRun | None:
        run = self.board.runs.get(run_id)
        return RemoteRun(self.client, run) if run is not None else None

    def active(self) -> list[RemoteRun]:
        return [RemoteRun(self.client, run) for run in self.board.running()]


@dataclass(frozen=True)
class ServiceSnapshot:
    """Published when the console (re)connects: the service's runs and its recent log and audit events."""

    runs: list[RunState]
    log: list[Any]


class ServiceVms(Vms):
    """Vms whose operations run in the service; reading, creating and previews stay here."""

    def __init__(self, engine: ServiceEngine, executor: Executor) -> None:
        super().__init__(engine.home, engine.networks, engine.hosts, executor, engine.bus)
        self.engine = engine

    def operate(self, vm_id: int, op: str, host: str | None = None, *, force: bool = False, on_run: Any = None) -> Vm:
        return self.engine.operate({"operation": op, "vm": vm_id, "host": host, "force": force})

    def deploy(self, vm_id: int, host: str) -> Vm:
        return self.operate(vm_id, "deploy", host)

    def resume(self, vm_id: int, host: str) -> Vm:
        return self.operate(vm_id, "resume", host)

    def migrate(self, vm_id: int, host: str) -> Vm:
        return self.operate(vm_id, "migrate", host)

    def stop(self, vm_id: int) -> Vm:
        return self.operate(vm_id, "stop")

    def shutdown(self, vm_id: int) -> Vm:
        return self.operate(vm_id, "shutdown")

    def delete(self, vm_id: int, force: bool = False) -> Vm:
        return self.operate(vm_id, "delete", force=force)

    def recover(self, vm_id: int, retry: bool = False, delete: bool = False, on_run: Any = None) -> Vm:
        return self.engine.operate({"operation": "recover", "vm": vm_id, "retry": retry, "delete": delete})


class ServiceEngine:
    """Connects to (or starts) the home's service and mirrors its events onto `bus` until closed; `board` is the
    console's picture of the runs (kept on its thread from the events) that `executor` answers from."""

    def __init__(self, home: Home, bus: EventBus, board: TransferBoard) -> None:
        self.home = home.ensure()
        self.bus = bus
        self.client = ServiceClient(self.home, "console")
        self.hosts = Hosts(self.home)
        self.networks = Networks(self.home, events=self.bus)
        # Never runs anything here: it plans, validates and sizes previews as the service's own would.
        self._planner = Executor(self.home, self.bus)
        self.vms = ServiceVms(self, self._planner)
        self.executor = RemoteRuns(self.client, board)
        self._waiters: dict[int, tuple[threading.Event, list[VmOperationFinished]]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._stream: Stream | None = None
        self._thread = threading.Thread(target=self._follow, name="service-events", daemon=True)

    def start(self) -> None:
        """Connect (starting the service if needed) and mirror its events, on a thread of its own."""
        self._thread.start()

    def _follow(self) -> None:
        while not self._closed.is_set():
            try:
                stream = self._stream = self.client.subscribe()
                if self._closed.is_set():
                    return
                self.bus.publish(ServiceSnapshot([RunState.from_json(run) for run in stream.runs], stream.log))
                for event in stream:
                    self._dispatch(event)
                problem = "the engine service went away"
            except (OSError, ProtocolError, OperationError) as exc:
                problem = f"engine service: {exc}"
            if self._closed.wait(RECONNECT_SECONDS):
                return
            self.bus.publish(LogEvent(f"{problem}; reconnecting", Level.WARNING, "console"))

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, VmOperationFinished):
            with self._lock:
                waiter = self._waiters.get(event.vm)
            if waiter is not None:
                waiter[1].append(event)
                waiter[0].set()
        self.bus.publish(event)

    def operate(self, request: dict[str, Any]) -> Vm:
        """Send a VM operation to the service and wait for its end: the VM as it ended, or OperationError."""
        vm_id = int(request["vm"])
        done = threading.Event()
        ended: list[VmOperationFinished] = []
        with self._lock:
            self._waiters[vm_id] = (done, ended)
        try:
            accepted = self.client.call("vm", **request)
            if accepted.get("run") is not None:
                while not done.wait(0.5):
                    if self._closed.is_set():
                        raise OperationError(f"VM {vm_id}: the console closed; the operation goes on in the service")
                if not ended[0].ok:
                    raise OperationError(ended[0].error or f"VM {vm_id}: {request['operation']} failed")
        finally:
            with self._lock:
                self._waiters.pop(vm_id, None)
        return self.vms.get(vm_id)

    def close(self) -> None:
        self._closed.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
        if self._thread.is_alive():
            self._thread.join(5)
        self._planner.close()
        self.networks.close()
