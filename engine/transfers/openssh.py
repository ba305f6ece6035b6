"""The OpenSSH accelerator: bulk bytes to or from a host through the `ssh` client, where it is installed.

paramiko is slower than OpenSSH because Python does the ciphers (README, Benchmarks). So for a
stream to or from a host of at least SSH_ACCELERATOR_MIN_MB, the driver may hand the bytes to an `ssh` process
running the same remote command, with the same host, port, user, identity files, known_hosts and proxies
that paramiko resolved (`-F none`, strict host key checking, batch mode: it never prompts, never learns a key).
paramiko still carries the connection, host keys, commands and control, and smaller streams (starting ssh costs a
login). `SSH_ACCELERATOR = yes|no` in headnode.conf (default yes); without an `ssh` binary paramiko carries everything.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from engine.errors import ConnectionLost, InputError, OperationError, Problem
from engine.language.numbers import whole_number
from engine.transfers.endpoints import parse_stored, sent_checksum
from engine.transfers.pipes import enlarge_pipe, write_all
from engine.transfers.ssh import SshTarget, quote_argv, ssh_dir, ssh_target
from engine.transfers.streams import ABORT_WAIT, CHUNK, Reader, Writer

if TYPE_CHECKING:
    from engine.home import Home
    from engine.transfers.hosts import Host

# AES-GCM is the fastest cipher with AES-NI; OpenSSH's default chacha20 is slower.
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr"


def ssh_argv(host: Host) -> list[str]:
    """The `ssh` command line reaching `host` exactly as paramiko does, up to the remote command; `--` ends the
    options, so no destination is ever read as one."""
    return target_argv(ssh_target(host))


def target_argv(target: SshTarget) -> list[str]:
    """`ssh_argv` for a resolved target. `-F none`: ~/.ssh/config was read already (Include, ProxyJump and
    ProxyCommand too); a ProxyJump hop is reached by an `ssh -W` built the same way, so its key is checked as
    strictly (OpenSSH's own ProxyJump would start a child with the user's config and default known_hosts)."""
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
    if target.jump is not None:
        hop = [arg.replace("%", "%%") for arg in target_argv(target.jump)]  # ssh expands % in a ProxyCommand
        hop[-2:-2] = ["-W", "[%h]:%p"]
        argv += ["-o", f"ProxyCommand={quote_argv(hop)}"]  # ssh runs it with exec
    elif target.proxy_command is not None:
        argv += ["-o", f"ProxyCommand={target.proxy_command.replace('%', '%%')}"]
    return [*argv, "--", target.hostname]


def default_keys() -> list[str]:
    names = ("id_ed25519", "id_ecdsa", "id_rsa")
    return [str(ssh_dir() / name) for name in names if (ssh_dir() / name).is_file()]


def _ssh_failure(host: Host, err: bytes) -> Exception:
    """ssh's own failure (status 255): a refused key or login is final, anything else is the connection."""
    text = err.decode(errors="replace").strip()
    final = any(s in text for s in ("Permission denied", "Host key verification failed", "REMOTE HOST IDENTIFICATION"))
    return (OperationError if final else ConnectionLost)(f"host {host.name}: ssh: {one_line(text)}")


def one_line(text: str) -> str:
    """What ssh said, in one line: its warning banners (a box of `@`, then a page of advice) give way to the last
    two lines, which say what happened; a changed key is called CHANGED, as paramiko's path says."""
    lines = [line.strip() for line in text.replace("\r", "").splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("@")]
    summary = " / ".join(said[-2:])
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        now = next((line for line in said if line.startswith("SHA256:")), "")
        return f"the host key CHANGED{f' (now {now})' if now else ''}: {summary}"
    if "REVOKED HOST KEY" in text:
        return f"the host key is marked @revoked in known_hosts: {summary}"
    return summary


def configured_accelerator(home: Home) -> OpenSsh | None:
    """The accelerator headnode.conf asks for, if the `ssh` client is installed."""
    template = home.config.template
    if (template.get("SSH_ACCELERATOR") or "yes").lower() != "yes" or shutil.which("ssh") is None:
        return None
    text = template.get("SSH_ACCELERATOR_MIN_MB") or "32"
    minimum = whole_number(text)
    if minimum is None:
        line = template.all("SSH_ACCELERATOR_MIN_MB")[0].line
        message = f"SSH_ACCELERATOR_MIN_MB {text!r} is not a whole number of MiB"
        raise InputError(Problem(message, str(home.config_path), line))
    return OpenSsh(minimum << 20)


class OpenSsh:
    """The accelerator a RemoteEndpoint uses for streams of at least `min_bytes`."""

    def __init__(self, min_bytes: int = 32 << 20) -> None:
        self.min_bytes = min_bytes

    def writer(self, host: Host, argv: Sequence[str]) -> Writer:
        return OpenSshWriter(host, argv)

    def reader(self, host: Host, argv: Sequence[str], offset: int, total: int, algorithm: str) -> Reader:
        return OpenSshReader(host, argv, offset, total, algorithm)


def _start(host: Host, remote_argv: Sequence[str], writing: bool) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*ssh_argv(host), quote_argv(remote_argv)],
        stdin=subprocess.PIPE if writing else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    enlarge_pipe((proc.stdin if writing else proc.stdout).fileno(), CHUNK)  # type: ignore[union-attr]
    return proc


class OpenSshReader(Reader):
    """Streams a remote `_SEND` through an `ssh` process's stdout."""

    carrier = "openssh"

    def __init__(self, host: Host, remote_argv: Sequence[str], offset: int, total: int, algorithm: str) -> None:
        self.host = host
        self.offset = offset
        self.total = total
        self._algorithm = algorithm
        self._proc = _start(host, remote_argv, writing=False)

    def chunks(self) -> Iterator[bytes]:
        stdout = self._proc.stdout
        while data := stdout.read(CHUNK):  # type: ignore[union-attr]
            while len(data) < CHUNK and (more := stdout.read(CHUNK - len(data))):  # type: ignore[union-attr]
                data += more  # whole MiB chunks, as RemoteReader gives
            yield data
        err = self._proc.stderr.read()  # type: ignore[union-attr]
        if self._proc.wait() == 255:
            raise _ssh_failure(self.host, err)
        self.checksum = sent_checksum(self._proc.returncode, err, self._algorithm)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


class OpenSshWriter(Writer):
    """Streams into a remote command through an `ssh` process's stdin."""

    carrier = "openssh"

    def __init__(self, host: Host, remote_argv: Sequence[str]) -> None:
        self.host = host
        self._proc = _start(host, remote_argv, writing=True)

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
            write_all(self._proc.stdin.fileno(), data)  # type: ignore[union-attr]
        except BrokenPipeError:
            raise self._failure() from None

    def finish(self) -> int:
        out, err = self._collect()
        if self._proc.returncode == 255:
            raise _ssh_failure(self.host, err)
        self.output = out.decode(errors="replace")
        return parse_stored(self.output, self._proc.returncode, err=err.decode(errors="replace"))

    def abort(self) -> None:
        # As ChannelWriter.abort: end the stream, give the host's command time to finish, then stop ssh.
        stdin, self._proc.stdin = self._proc.stdin, None
        with contextlib.suppress(BrokenPipeError):
            stdin.close()  # type: ignore[union-attr]
        try:
            self._proc.wait(ABORT_WAIT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._proc.communicate()
