"""Real OpenSSH sshd processes on loopback, for tests and benchmarks: each its own host key, key-only auth, a
free port and a VM directory, run as the current user (as root: PermitRootLogin and StrictModes set so tmp
dirs pass; the privilege-separation directory is created). Each host's sessions get a HOME of their own (its
directory, no dotfiles), as a cluster host's account is its own: without it every session ran this machine's
~/.bashrc (pyenv's init here, ~0.13 s of CPU each), on the cores the head and every other host share."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from engine.transfers.hosts import Host

SSHD = "/usr/sbin/sshd"
SSHD_CONFIG = """\
Port {port}
ListenAddress {address}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin yes
Subsystem sftp internal-sftp
MaxStartups 50
LogLevel ERROR
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class SshHost:
    name: str
    port: int
    vm_dir: Path
    dir: Path
    process: subprocess.Popen
    host_key_line: str
    address: str = "127.0.0.1"

    def record(self, driver: str = "ssh", **changes) -> Host:
        fields = {"address": self.address, "port": self.port, "driver": driver, "vm_dir": str(self.vm_dir)}
        return Host(self.name, **{**fields, **changes})

    def sessions(self) -> list[int]:
        """The pids of this sshd's per-connection children."""
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in found.split()]

    def drop_connections(self) -> int:
        """Kill every session child: the clients' connections drop mid-stream."""
        pids = self.sessions()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


def with_home(extra: str, home: Path) -> str:
    """`extra` with the host's own HOME set: sshd honours only its first SetEnv line, so the HOME joins any SetEnv
    of `extra` in one."""
    lines = extra.splitlines()
    setenv = [f"HOME={home}"]
    for line in [line for line in lines if line.split()[:1] == ["SetEnv"]]:
        setenv += line.split()[1:]
        lines.remove(line)
    return "".join(f"{line}\n" for line in [*lines, "SetEnv " + " ".join(setenv)])


def start_sshd(
    root: Path, name: str, authorized: Path, address: str = "127.0.0.1", netns: str | None = None, extra: str = ""
) -> SshHost:
    """Start sshd `name` with its files under root/name, accepting the keys in `authorized`; on loopback at a
    free port, or in network namespace `netns` on `address`, port 22; `extra` lines end its configuration."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    d = root / name
    d.mkdir()
    keygen(d / "ssh_host_ed25519_key")
    vm_dir = d / "vms"
    vm_dir.mkdir()
    for _ in range(5):
        port = 22 if netns else free_port()
        config = SSHD_CONFIG.format(port=port, address=address, dir=d, authorized=authorized)
        config += with_home(extra, d)
        (d / "sshd_config").write_text(config)
        log = open(d / "sshd.log", "wb")  # noqa: SIM115 - kept open for the process's lifetime
        inside = ["ip", "netns", "exec", netns] if netns else []  # it execs sshd: the pid is sshd's
        process = subprocess.Popen([*inside, SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=log)
        # sshd writes its pid file once it listens: a connection alone could reach another test run's sshd that
        # took the port first.
        pid_file = d / "sshd.pid"
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip() == str(process.pid):
                socket.create_connection((address, port), 5).close()
                key = (d / "ssh_host_ed25519_key.pub").read_text().split()
                known = address if port == 22 else f"[{address}]:{port}"
                return SshHost(name, port, vm_dir, d, process, f"{known} {key[0]} {key[1]}", address)
            time.sleep(0.05)
        process.kill()
        process.wait()
        pid_file.unlink(missing_ok=True)
    raise RuntimeError(f"sshd did not start: {(d / 'sshd.log').read_text()}")
