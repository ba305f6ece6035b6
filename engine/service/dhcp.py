"""The engine service's DHCP servers: a dnsmasq per served network (DHCP = yes, or `vnet dhcp`), started and
stopped with the service, restarted if it dies, its files in engine.networks.dnsmasq.

One dnsmasq per network rather than one for all: a network's dnsmasq reloads (SIGHUP, on a release) only its own
reservations, a bad interface stops one network, not all, and each costs ~2 MiB of memory (RSS measured with
dnsmasq 2.90: 2.3 MiB idle with 254 reservations). Two served networks on one interface would need one dnsmasq
(two cannot bind one interface's port 67): that is refused with a clear error.

Everything here runs in the service: `reconcile()` from its loop, `serve()`/`stop()` from a client's request,
one at a time (a lock), so a network being started is never stopped by a reconcile that has not seen it yet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import InputError, OperationError
from engine.events import EventBus, Level, LogEvent
from engine.networks.definition import DhcpService, Network, check_interface
from engine.networks.dnsmasq import ServedFiles, check_configuration, configuration, write_state
from engine.networks.manager import Networks

START_SECONDS = 10.0  # a dnsmasq that has not written its pid file by then is taken as failed
STOP_SECONDS = 5.0
BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # between restarts of a dnsmasq that keeps dying


class DhcpState(StrEnum):
    SERVING = "serving"
    RESTARTING = "restarting"  # it died (or could not start); the next try is due at `retry_at`
    STOPPED = "stopped"


@dataclass
class _Served:
    network: Network
    files: ServedFiles
    process: subprocess.Popen[bytes] | None = None
    log: BinaryIO | None = None
    restarts: int = 0
    retry_at: float = 0.0
    error: str | None = None
    started: float = field(default_factory=time.time)

    @property
    def dhcp(self) -> DhcpService:
        assert self.network.dhcp is not None
        return self.network.dhcp

    def to_json(self) -> dict[str, Any]:
        alive = self.process is not None and self.process.poll() is None
        return {
            "network": self.network.name,
            "interface": self.dhcp.interface,
            "dns": self.dhcp.dns,
            "state": DhcpState.SERVING if alive else DhcpState.RESTARTING,
            "pid": self.process.pid if alive and self.process else None,
            "restarts": self.restarts,
            "error": self.error,
            "log": str(self.files.log),
        }


class DhcpSupervisor:
    def __init__(self, networks: Networks, bus: EventBus) -> None:
        self.networks = networks
        self.bus = bus
        self._served: dict[int, _Served] = {}
        self._lock = threading.Lock()

    # -- requests -----------------------------------------------------------------------------------------------

    def serve(self, name: str, interface: str, dns: bool) -> dict[str, Any]:
        """Start (or restart with the new setting) the dnsmasq of network `name`, then record the setting; an
        error leaves the setting as it was."""
        check_interface(interface)
        with self._lock:
            network = replace(self.networks.get(name), dhcp=DhcpService(interface, dns))
            self._refuse_shared_interface(network)
            self._stop(network.id)
            served = self._served[network.id] = _Served(network, self.networks.served_files(network))
            try:
                self._start(served)
            except OperationError:
                self._stop(network.id)
                raise
            self.networks.set_dhcp(name, network.dhcp)
            return served.to_json()

    def stop(self, name: str) -> dict[str, Any]:
        with self._lock:
            network = self.networks.get(name)
            self._stop(network.id)
            self.networks.set_dhcp(name, None)
            return {"network": network.name, "state": DhcpState.STOPPED}

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [served.to_json() for served in self._served.values()]

    def serving(self) -> bool:
        return bool(self._served)

    # -- the service's loop -------------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Serve every network whose record says so, stop the others; restart a dnsmasq that died (backing off)."""
        with self._lock:
            wanted = {n.id: n for n in self.networks.list() if n.dhcp is not None}
            for network_id in [i for i in self._served if i not in wanted]:
                self._stop(network_id)
            now = time.monotonic()
            for network_id, network in wanted.items():
                served = self._served.get(network_id)
                if served is None or served.network.dhcp != network.dhcp:
                    if served is not None:
                        self._stop(network_id)
                    served = self._served[network_id] = _Served(network, self.networks.served_files(network))
                elif served.process is not None and served.process.poll() is None:
                    continue
                elif served.process is not None:  # it died
                    code = served.process.returncode
                    served.process = None
                    served.error = f"dnsmasq exited ({_exit_text(code)}): {_last_line(served.files.log)}"
                    served.retry_at = now + BACKOFF_SECONDS[min(served.restarts, len(BACKOFF_SECONDS) - 1)]
                    self._say(network, f"{served.error}; restarting", Level.ERROR)
                    self._write_state(served, DhcpState.RESTARTING)
                    continue
                if now < served.retry_at:
                    continue
                try:
                    if served.error is not None:
                        served.restarts += 1
                    self._start(served)
                except (OperationError, InputError) as exc:
                    served.error = str(exc)
                    served.retry_at = now + BACKOFF_SECONDS[min(served.restarts, len(BACKOFF_SECONDS) - 1)]
                    self._say(network, f"cannot serve DHCP: {exc}", Level.ERROR)
                    self._write_state(served, DhcpState.RESTARTING)

    def stop_all(self) -> None:
        with self._lock:
            for network_id in list(self._served):
                self._stop(network_id)

    # -- one dnsmasq --------------------------------------------------------------------------------------------

    def _refuse_shared_interface(self, network: Network) -> None:
        assert network.dhcp is not None
        existing = {n.id for n in self.networks.list()}
        for gone in [i for i in self._served if i not in existing]:  # deleted since the last reconcile
            self._stop(gone)
        for other in self._served.values():
            if other.network.id != network.id and other.dhcp.interface == network.dhcp.interface:
                raise OperationError(
                    f"network {other.network.name!r} is already served on {network.dhcp.interface}: one interface "
                    "has one DHCP server"
                )

    def _start(self, served: _Served) -> None:
        """Write its files, check them with `dnsmasq --test`, start it and wait until it runs."""
        network, files = served.network, served.files
        interface = served.dhcp.interface
        if not Path("/sys/class/net", interface).exists():
            raise OperationError(f"there is no interface {interface} here (ip link shows the interfaces)")
        _end_stale(files)
        files.prepare(served.dhcp.dns)
        book = self.networks.book(network.name)
        leases = files.write_all(book, network.domain)
        text = configuration(files, network)
        check_configuration(files, network.name, text, leases)
        tmp = files.conf.with_name(f".{files.conf.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, files.conf)
        files.pid_file.unlink(missing_ok=True)
        files.log.parent.mkdir(parents=True, exist_ok=True)
        log = open(files.log, "ab")  # noqa: SIM115 (kept open for dnsmasq's life)
        process = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", f"--conf-file={files.conf}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a Ctrl-C in the service's terminal is for the service
        )
        deadline = time.monotonic() + START_SECONDS
        while files.pid() != process.pid:
            if process.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
                log.close()
                raise OperationError(f"dnsmasq did not start on {interface}: {_last_line(files.log)}")
            time.sleep(0.02)
        served.process, served.log, served.error = process, log, None
        served.started = time.time()
        self._say(network, f"dnsmasq serving on {interface} (pid {process.pid}, {len(leases)} reservations)")
        self._write_state(served, DhcpState.SERVING)

    def _stop(self, network_id: int) -> None:
        served = self._served.pop(network_id, None)
        if served is None:
            return
        process = served.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if served.log is not None:
            served.log.close()
        served.files.remove()
        served.process = None
        self._write_state(served, DhcpState.STOPPED)
        if process is not None:
            self._say(served.network, f"dnsmasq on {served.dhcp.interface} stopped")

    def _write_state(self, served: _Served, state: DhcpState) -> None:
        with contextlib.suppress(OSError):
            write_state(
                served.files,
                state=state.value,
                interface=served.dhcp.interface,
                dns=served.dhcp.dns,
                pid=served.process.pid if served.process is not None else None,
                restarts=served.restarts,
                error=served.error,
            )

    def _say(self, network: Network, text: str, level: Level = Level.INFO) -> None:
        self.bus.publish(LogEvent(f"network {network.name!r}: {text}", level, "dhcp"))


def _end_stale(files: ServedFiles) -> None:
    """A dnsmasq a killed service left running on these files (its pid file names it): stopped first."""
    pid = files.pid()
    if pid is None:
        return
    with contextlib.suppress(OSError):
        if str(files.conf) not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return
        os.kill(pid, signal.SIGTERM)
        for _ in range(int(STOP_SECONDS / 0.05)):
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _last_line(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "nothing logged"


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"signal {-code}" if code < 0 else f"status {code}"
