"""SSH to hosts the way admins already set it up: ~/.ssh/config, known_hosts, ssh-agent and identity files.

A host key that is not in known_hosts is refused, and a changed one always is; `host test --accept-new-key`
records a new key (never a changed one), like OpenSSH's `StrictHostKeyChecking=accept-new`. Connections are
pooled, one per host, shared by that host's transfers: each transfer opens its own channel (paramiko's Transport
multiplexes channels across threads; an SFTPClient must not be shared). Remote commands are argv lists, each
argument quoted with shlex.quote; nothing is ever interpolated into a shell string.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import shlex
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import Cancelled, ConnectionLost, InputError, OperationError, Problem
from engine.language.numbers import whole_number
from engine.transfers.known_hosts import KnownHosts

if TYPE_CHECKING:
    import paramiko

    from engine.transfers.hosts import Host

CONNECT_TIMEOUT = 15.0
KEEPALIVE_SECONDS = 30
# sbin directories are missing from a non-root user's PATH on many systems; mkswap and mkfs live there.
_WITH_SBIN = 'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; exec "$@"'


class HostKeyError(OperationError):
    """The host's key is unknown or changed: never connect silently. `unknown`: no key was known for the host
    (an admin may accept it after checking its fingerprint); otherwise the key changed."""

    def __init__(self, message: str, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


@dataclass(frozen=True)
class SshTarget:
    """Everything needed to reach one host, after ~/.ssh/config and the host record are combined."""

    host: str  # the headnode host name
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts: str
    jump: SshTarget | None = None  # ProxyJump: the hop this host is reached through (it may have its own)
    proxy_command: str | None = None  # ProxyCommand, its tokens expanded, run by sh as OpenSSH runs it

    @property
    def key_name(self) -> str:
        """The name of this server in known_hosts."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def ssh_dir() -> Path:
    return Path.home() / ".ssh"


def _config_port(text: str, config_path: Path) -> int:
    port = whole_number(text)
    if port is None or not 0 < port < 65536:
        raise InputError(Problem(f"Port {text!r} is not a port number from 1 to 65535", str(config_path)))
    return port


def ssh_target(host: Host) -> SshTarget:
    """Combine the host record with ~/.ssh/config (record fields win)."""
    return _target(host.name, host.ssh_name, host.port, host.user, host.identity, _ssh_config())


def _ssh_config():
    import paramiko

    from engine.transfers.ssh_config import config_text

    path = ssh_dir() / "config"
    return paramiko.SSHConfig.from_text(config_text(path, ssh_dir())) if path.exists() else None


MAX_HOPS = 8


def _target(
    name: str,
    ssh_name: str,
    port: int | None,
    user: str | None,
    identity: str | None,
    config,
    chain: str | None = None,
    depth: int = 0,
) -> SshTarget:
    """The target `ssh_name` as ~/.ssh/config describes it. `chain`: the ProxyJump hops before it when it is a
    hop of a chain `a,b` (then they win over its own ProxyJump, as OpenSSH's `ssh -J a b` does)."""
    from engine.transfers.ssh_config import parse_hop

    config_path = ssh_dir() / "config"
    options: dict = config.lookup(ssh_name) if config is not None else {}
    identities = [identity] if identity else [os.path.expanduser(p) for p in options.get("identityfile", [])]
    known = options.get("userknownhostsfile", "").split()
    jump, proxy = None, None
    chain = chain if chain is not None else options.get("proxyjump")
    if chain and chain.lower() != "none":
        if depth >= MAX_HOPS:
            raise InputError(Problem(f"ProxyJump to {ssh_name}: more than {MAX_HOPS} hops (a loop?)", str(config_path)))
        *earlier, last = chain.split(",")
        hop = parse_hop(last, str(config_path))
        jump = _target(name, hop.host, hop.port, hop.user, None, config, ",".join(earlier) or None, depth + 1)
    elif options.get("proxycommand"):
        proxy = options["proxycommand"]
    return SshTarget(
        host=name,
        hostname=options.get("hostname", ssh_name),
        port=port or _config_port(options.get("port", "22"), config_path),
        user=user or options.get("user") or _local_user(),
        identity_files=tuple(identities),
        known_hosts=os.path.expanduser(known[0]) if known else str(ssh_dir() / "known_hosts"),
        jump=jump,
        proxy_command=proxy,
    )


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def quote_argv(argv: Sequence[str]) -> str:
    """The one way a remote command line is built: every argument quoted."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def with_sbin(argv: Sequence[str]) -> list[str]:
    """argv run with the sbin directories on PATH (the script is constant; arguments stay arguments)."""
    return ["sh", "-c", _WITH_SBIN, "sh", *argv]


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint if hasattr(key, "fingerprint") else key.get_base64()


def _key_policy(target: SshTarget, known: KnownHosts, accept_new_key: bool):
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key) -> None:
            _refuse_revoked(target, known, key)
            if not accept_new_key:
                vouched = (
                    " (a @cert-authority line vouches for it, but host certificates are not checked here)"
                    if known.has_authority(target.key_name)
                    else ""
                )
                raise HostKeyError(
                    f"host {target.host}: the key of {target.key_name} ({key.get_name()} {fingerprint(key)}) is not "
                    f"in {target.known_hosts}{vouched}; if that fingerprint is right, record it with "
                    f"'headnode host test {target.host} --accept-new-key'",
                    unknown=True,
                )
            record_host_key(target, key)

    return Policy()


def _refuse_revoked(target: SshTarget, known: KnownHosts, key: paramiko.PKey) -> None:
    if known.revoked(target.key_name, key):
        raise HostKeyError(
            f"host {target.host}: the key of {target.key_name} ({key.get_name()} {fingerprint(key)}) is marked "
            f"@revoked in {target.known_hosts}; refusing to connect"
        )


def record_host_key(target: SshTarget, key: paramiko.PKey) -> None:
    """Append the key to known_hosts (created 0600 in a 0700 directory when missing)."""
    path = Path(target.known_hosts)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as out:
        out.write(f"{target.key_name} {key.get_name()} {key.get_base64()}\n")


def _quiet_paramiko() -> None:
    """paramiko logs what it also raises (a closed socket's "Socket exception: Bad file descriptor (9)" on every
    refused key); with no handler of the application's, Python printed that on stderr, over the console too."""
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())


@functools.cache
def _client_class() -> type[paramiko.SSHClient]:
    import paramiko

    class Client(paramiko.SSHClient):
        """A client that closes the connection to its ProxyJump hop with itself."""

        jump: paramiko.SSHClient | None = None

        def close(self) -> None:
            super().close()
            if self.jump is not None:
                self.jump.close()

    return Client


def _open_socket(target: SshTarget, client, accept_new_key: bool):
    """What the SSH connection runs over: a channel through the ProxyJump hop (itself connected and its key
    checked like any host's), a ProxyCommand's pipes (run by sh, as OpenSSH runs it), or a TCP socket."""
    import paramiko

    if target.jump is not None:
        client.jump = connect(target.jump, accept_new_key)
        try:
            return client.jump.get_transport().open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            raise ConnectionLost(
                f"host {target.host}: the jump host {target.jump.key_name} cannot reach {target.key_name}: {exc}"
            ) from None
    if target.proxy_command is not None:
        try:
            return paramiko.ProxyCommand(shlex.join(["sh", "-c", f"exec {target.proxy_command}"]))
        except (paramiko.SSHException, OSError) as exc:
            raise ConnectionLost(f"host {target.host}: ProxyCommand failed: {exc}") from None
    try:
        sock = socket.create_connection((target.hostname, target.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise ConnectionLost(f"host {target.host}: cannot reach {target.key_name}: {exc.strerror or exc}") from None
    # Without TCP_NODELAY small SSH packets wait on delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _abandon(client: paramiko.SSHClient, sock: socket.socket) -> None:
    """Close a connection that failed: the client first, so its transport thread stops before the socket goes."""
    client.close()
    sock.close()


def connect(target: SshTarget, accept_new_key: bool = False) -> paramiko.SSHClient:
    """An authenticated connection, or HostKeyError / ConnectionLost / OperationError saying why not."""
    import paramiko

    _quiet_paramiko()
    client = _client_class()()
    known = KnownHosts.load(target.known_hosts)
    for key in known.trusted(target.key_name):
        client.get_host_keys().add(target.key_name, key.get_name(), key)
    client.set_missing_host_key_policy(_key_policy(target, known, accept_new_key))
    sock = _open_socket(target, client, accept_new_key)
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            # SSHClient.connect takes a list of key files too (its docs; the stubs say one str)
            key_filename=list(target.identity_files) or None,  # type: ignore[arg-type]
            look_for_keys=not target.identity_files,
            allow_agent=True,
            sock=sock,
            timeout=CONNECT_TIMEOUT,
            banner_timeout=CONNECT_TIMEOUT,
            auth_timeout=CONNECT_TIMEOUT,
            channel_timeout=CONNECT_TIMEOUT,
        )
    except HostKeyError:
        _abandon(client, sock)
        raise
    except paramiko.BadHostKeyException as exc:
        _abandon(client, sock)
        _refuse_revoked(target, known, exc.key)
        raise HostKeyError(
            f"host {target.host}: the key of {target.key_name} CHANGED (now {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, {target.known_hosts} has {fingerprint(exc.expected_key)}); refusing to "
            f"connect. If the host was reinstalled, remove the old line from {target.known_hosts}"
        ) from None
    except paramiko.AuthenticationException as exc:
        _abandon(client, sock)
        raise OperationError(f"host {target.host}: authentication as {target.user} failed: {exc}") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        _abandon(client, sock)
        raise ConnectionLost(f"host {target.host}: SSH connection to {target.key_name} failed: {exc}") from None
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(KEEPALIVE_SECONDS)
    return client


class SshPool:
    """One live connection per host, shared by threads; a dead one is replaced on the next request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._clients: dict[str, paramiko.SSHClient] = {}

    def transport(self, host: Host) -> paramiko.Transport:
        with self._lock:
            host_lock = self._host_locks.setdefault(host.name, threading.Lock())
        with host_lock:
            client = self._clients.get(host.name)
            transport = client.get_transport() if client else None
            if transport is None or not transport.is_active():
                if client is not None:
                    client.close()
                client = connect(ssh_target(host))
                self._clients[host.name] = client
                transport = client.get_transport()
            assert transport is not None
            return transport

    def discard(self, host: Host) -> None:
        """Forget a host's connection (after it dropped) so the next request reconnects."""
        with self._lock:
            client = self._clients.pop(host.name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


@dataclass(frozen=True)
class CommandResult:
    status: int
    stdout: str
    stderr: str


def open_channel(transport: paramiko.Transport, argv: Sequence[str]) -> paramiko.Channel:
    import paramiko

    try:
        channel = transport.open_session(timeout=CONNECT_TIMEOUT)
        channel.exec_command(quote_argv(argv))
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectionLost(f"cannot start a remote command: {exc}") from None
    return channel


def run_remote(
    transport: paramiko.Transport,
    argv: Sequence[str],
    cancel: Callable[[], bool] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> CommandResult:
    """Run argv on the host, reading stdout and stderr as they come (so a full window never stalls it)."""
    import paramiko

    channel = open_channel(transport, argv)
    try:
        return _collect(transport, channel, cancel, on_line)
    except (OSError, EOFError, paramiko.SSHException) as exc:  # window updates fail with EOFError, too
        raise ConnectionLost(f"the connection dropped while a remote command ran: {exc!r}") from None
    finally:
        channel.close()


def _collect(
    transport: paramiko.Transport,
    channel: paramiko.Channel,
    cancel: Callable[[], bool] | None,
    on_line: Callable[[str], None] | None,
) -> CommandResult:
    """The output and status of a started command; cancel() closes it early."""
    channel.shutdown_write()
    out, err = bytearray(), bytearray()
    pending = b""
    while True:
        if cancel and cancel():
            raise Cancelled("cancelled")
        # The channel's fileno is readable when stdout or stderr has data, and for good once it closes.
        select.select([channel], [], [], 0.2)
        while channel.recv_ready():
            data = channel.recv(65536)
            out += data
            if on_line:
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace"))
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        if not transport.is_active() or (channel.closed and not channel.exit_status_ready()):
            raise ConnectionLost("the connection dropped while a remote command ran")
    if on_line and pending:
        on_line(pending.decode(errors="replace"))
    return CommandResult(channel.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace"))
