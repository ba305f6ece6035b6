"""The OpenSSH accelerator: bulk bytes to a host through the `ssh` client, where it is installed.

paramiko tops out at 35-60% of OpenSSH's speed because Python does the ciphers (research/perf.md §1). So for
writes to a host, the driver may hand the stream to an `ssh` process running the same remote command, with the
same host, port, user, identity files and known_hosts that paramiko resolved (`-F none`, strict host key
checking, batch mode: it never prompts, never learns a key). paramiko still carries the connection, host keys,
commands and control. The choice is `SSH_ACCELERATOR = yes|no` in headnode.conf (default yes); without an `ssh`
binary the paramiko channel is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.endpoints import CHUNK, Writer, parse_stored
from engine.errors import OperationError
from engine.ssh import ConnectionLost, quote_argv, ssh_dir, ssh_target

if TYPE_CHECKING:
    from engine.home import Home
    from engine.hosts import Host

# AES-GCM is the fastest cipher with AES-NI; OpenSSH's default chacha20 is slower (research/perf.md §1.1).
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr"


def ssh_argv(host: Host) -> list[str]:
    """The `ssh` command line reaching `host` exactly as paramiko does, up to the remote command."""
    target = ssh_target(host)
    argv = ["ssh", "-F", "none", "-p", str(target.port), "-l", target.user]
    for option in (
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={target.known_hosts}",
        "GlobalKnownHostsFile=/dev/null",
        f"Ciphers={CIPHERS}",
        "Compression=no",
        "ServerAliveInterval=30",
        "ConnectTimeout=15",
    ):
        argv += ["-o", option]
    for identity in target.identity_files:
        argv += ["-i", identity, "-o", "IdentitiesOnly=yes"]
    if not target.identity_files:  # ssh finds ~ from the password database, paramiko (and we) from $HOME
        argv += [arg for key in default_keys() for arg in ("-i", key)]
    return [*argv, target.hostname]


def default_keys() -> list[str]:
    names = ("id_ed25519", "id_ecdsa", "id_rsa")
    return [str(ssh_dir() / name) for name in names if (ssh_dir() / name).is_file()]


def _ssh_failure(host: Host, err: bytes) -> Exception:
    """ssh's own failure (status 255): a refused key or login is final, anything else is the connection."""
    text = err.decode(errors="replace").strip()
    final = any(s in text for s in ("Permission denied", "Host key verification failed", "REMOTE HOST IDENTIFICATION"))
    return (OperationError if final else ConnectionLost)(f"host {host.name}: ssh: {text}")


def accelerator_enabled(home: Home) -> bool:
    setting = (home.config.template.get("SSH_ACCELERATOR") or "yes").lower()
    return setting == "yes" and shutil.which("ssh") is not None


class OpenSshWriter(Writer):
    """Streams into a remote command through an `ssh` process's stdin."""

    def __init__(self, host: Host, remote_argv: Sequence[str]) -> None:
        self.host = host
        self._proc = subprocess.Popen(
            [*ssh_argv(host), "--", quote_argv(remote_argv)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        with contextlib.suppress(OSError):  # fewer, larger pipe writes: ssh wakes once per MiB, not per 64 KiB
            fcntl.fcntl(self._proc.stdin.fileno(), F_SETPIPE_SZ, CHUNK)  # type: ignore[union-attr]

    def _collect(self) -> tuple[bytes, bytes]:
        """Close stdin, then read what the remote command and ssh said, and wait for ssh to exit."""
        stdin, self._proc.stdin = self._proc.stdin, None
        with contextlib.suppress(BrokenPipeError):
            stdin.close()  # type: ignore[union-attr]
        return self._proc.communicate()

    def _failure(self) -> Exception:
        out, err = self._collect()
        if self._proc.returncode == 255:
            return _ssh_failure(self.host, err)
        try:
            parse_stored(out.decode(), self._proc.returncode, err=err.decode(errors="replace"))
        except Exception as exc:
            return exc
        return ConnectionLost(f"host {self.host.name}: ssh ended early")

    def write(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)  # type: ignore[union-attr]
        except BrokenPipeError:
            raise self._failure() from None

    def finish(self) -> int:
        out, err = self._collect()
        if self._proc.returncode == 255:
            raise _ssh_failure(self.host, err)
        return parse_stored(out.decode(), self._proc.returncode, err=err.decode(errors="replace"))

    def abort(self) -> None:
        self._proc.kill()
        self._collect()
