"""The head's own connections to a fan-out's hosts: one OpenSSH ControlMaster per host, opened all at once.

Every session of a fan-out (looking at a host, opening its link to the next host, a chain's stream, a probe after a
drop) goes through its host's master, so it costs one round trip instead of a login; the masters reach each host
exactly as the OpenSSH accelerator does (engine.transfers.openssh.ssh_argv: the host record and ~/.ssh/config
resolved, `-F none`, StrictHostKeyChecking, BatchMode). A master forwards the agent the run chose
(engine.transfers.fanout.agent), which only the link sessions ask for (`-A`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from engine.transfers.hosts import Host
from engine.transfers.openssh import one_line, ssh_argv
from engine.transfers.ssh import quote_argv

PERSIST = 300  # seconds a master left by a head that died lives on, idle


@dataclass(frozen=True)
class Reply:
    status: int
    out: str
    err: str


class HeadLinks:
    """Masters to hosts, in a private directory; `close` ends them all."""

    def __init__(self, agent_socket: str | None) -> None:
        self._env = {**os.environ, **({"SSH_AUTH_SOCK": agent_socket} if agent_socket else {})}
        self._dir = tempfile.mkdtemp(prefix="headnode-fanout-")  # mode 0700
        self._sockets: dict[str, str] = {}
        self._argv: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def open(self, host: Host, argv: Sequence[str], agent: bool = False, timeout: float = 60) -> Reply:
        """Open a master to the host that runs argv (quoted) as its first session, then stays in the background
        (ControlPersist), so the first command costs no round trip of its own. Status 255: ssh could not connect,
        and `err` says why in one line."""
        ssh = ssh_argv(host)
        with self._lock:
            socket = os.path.join(self._dir, str(len(self._argv)))
            self._argv[host.name] = ssh
        options = ["-M", "-S", socket, "-o", f"ControlPersist={PERSIST}", *(["-A"] if agent else [])]
        # Once the first session ends the master detaches, its standard streams on /dev/null: ours reach the end.
        process = subprocess.Popen(
            [*ssh[:-2], *options, *ssh[-2:], quote_argv(argv)],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        reply = _communicate(process, timeout)
        if reply.status == 255 and not os.path.exists(socket):
            return Reply(255, reply.out, f"host {host.name}: ssh: {one_line(reply.err) or 'status 255'}")
        with self._lock:
            self._sockets[host.name] = socket
        return reply

    def session_argv(self, host: Host, remote: str, agent: bool = False) -> list[str]:
        """`ssh` running `remote` (one shell command line) on the host through its master."""
        argv = self._argv[host.name]
        options = ["-S", self._sockets[host.name], "-o", "ControlMaster=no", *(["-A"] if agent else [])]
        return [*argv[:-2], *options, *argv[-2:], remote]

    def start(self, host: Host, remote: str, agent: bool = False, stdin: int | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.session_argv(host, remote, agent),
            env=self._env,
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )

    def run(self, host: Host, argv: Sequence[str], agent: bool = False, timeout: float = 60) -> Reply:
        """Run argv (quoted) on the host; status 255 is ssh's own failure."""
        return _communicate(self.start(host, quote_argv(argv), agent), timeout)

    def connected(self, name: str) -> bool:
        return name in self._sockets

    def close(self) -> None:
        """End every master, all at once."""

        def end(name: str) -> None:
            argv = self._argv[name]
            with contextlib.suppress(OSError):
                subprocess.call(
                    [*argv[:-2], "-S", self._sockets[name], "-O", "exit", *argv[-2:]],
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

        with ThreadPoolExecutor(max_workers=max(1, len(self._sockets))) as pool:
            list(pool.map(end, list(self._sockets)))
        self._sockets.clear()
        shutil.rmtree(self._dir, ignore_errors=True)


def _communicate(process: subprocess.Popen, timeout: float) -> Reply:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return Reply(255, out.decode(errors="replace"), f"no answer within {timeout:g} s")
    return Reply(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
