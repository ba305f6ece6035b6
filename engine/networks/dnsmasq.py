"""The files a network's dnsmasq runs from, and keeping them in step with the leases from any process.

In the home (dnsmasq reads these as root, when it starts, before it drops its privileges; the home stays 0700):

    dhcp/<key>.conf     its configuration, generated at each start and checked first with `dnsmasq --test`
    dhcp/<key>.leases   its own lease database (opened at start; it keeps writing through that descriptor)
    dhcp/<key>.pid      its pid while it runs
    dhcp/<key>.state    what the service last did with it (serving, failed and why, restarts), for `vnet show`
    logs/dhcp-<key>.log what it says

Outside the home, in `DHCP_RUN_DIR` (headnode.conf; default /run/headnode), `<home tag>-<key>/` holds what dnsmasq
re-reads while it runs as its unprivileged user (`dnsmasq`, else `nobody`): `hosts/` (`--dhcp-hostsdir`, the
reservations) and `names/` (`--hostsdir`, the names for DNS). The directories belong to that user, mode 0500, the
files to root, so dnsmasq (and root) read them and no other user does; the home is never opened to it.

Both directories hold a file per /24 of leases, `a.b.c`, and additions `a.b.c+N`. dnsmasq reads a new file in
them at once (inotify) and adds its records, but a file it has read and that then changes only adds, and
reservations (dhcp-host) it already has are refused as duplicates; only a SIGHUP forgets them, and dnsmasq's
reload is quadratic in its reservations (measured with 2.90: 4,064 reservations 0.04 s, 16,256 0.67 s, 65,024
18.7 s). So a lease never rewrites much and never signals: it writes its new lines as the next `a.b.c+N` of its
/24 (O(1) in the network's size). A release (or a repair) rewrites its /24's `a.b.c` whole, removes that /24's
additions and sends the SIGHUP, then tells dnsmasq to drop its grant of the address (`dhcp_release`, a DHCPRELEASE
from the interface: 7 ms, where rewriting dnsmasq's lease file needs a restart, which reloads every reservation).
A /24 with FOLD additions is folded the same way. All of it happens under the network's lease lock, right after
the lease is journaled, so two processes never write a /24's files from different views; a failure there is logged
and never undoes an acknowledged lease (the service rebuilds every file when it starts dnsmasq).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import OperationError
from engine.home import Home
from engine.networks.addresses import format_ipv4
from engine.networks.definition import RANGED, Network
from engine.networks.exports import check_unique, hosts_lines, hostsfile_line

if TYPE_CHECKING:
    from engine.networks.lease_book import Lease, LeaseBook
    from engine.networks.lease_file import Transaction

FOLD = 32  # additions a /24 may have before they are folded into its file (a SIGHUP)
DEFAULT_RUN_DIR = "/run/headnode"
LEASE_TIME = "1h"
TESTED_RESERVATIONS = 4096  # `dnsmasq --test` is quadratic in them too: the first 4,096 are enough to check the form


def dnsmasq_user() -> pwd.struct_passwd | None:
    """The user dnsmasq drops to when started as root (its Debian package's, else nobody); None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("dnsmasq", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


@dataclass
class ServedFiles:
    """Where one network's dnsmasq files are (see the module's docstring)."""

    home: Home
    key: str  # the network's store key: a recreated network never inherits a dead one's grants
    _pid_seen: tuple[int, int, int] | None = field(default=None, repr=False)  # pid file (inode, mtime), its pid
    _next: dict[str, int] = field(default_factory=dict, repr=False)  # a /24's next addition number, as a hint
    names_served: bool = field(default=False, repr=False)  # its dnsmasq answers DNS (names/ exists), as of pid()

    @property
    def conf(self) -> Path:
        return self.home.root / "dhcp" / f"{self.key}.conf"

    @property
    def leases(self) -> Path:
        return self.home.root / "dhcp" / f"{self.key}.leases"

    @cached_property
    def pid_file(self) -> Path:
        return self.home.root / "dhcp" / f"{self.key}.pid"

    @property
    def state_file(self) -> Path:
        return self.home.root / "dhcp" / f"{self.key}.state"

    @property
    def log(self) -> Path:
        return self.home.logs / f"dhcp-{self.key}.log"

    @cached_property
    def run(self) -> Path:
        configured = self.home.config.template.get("DHCP_RUN_DIR")
        root = Path(configured) if configured else (Path(DEFAULT_RUN_DIR) if os.geteuid() == 0 else None)
        if root is None:  # not root: dnsmasq keeps this user, who reads the home anyway
            return self.home.root / "dhcp" / "run" / self.key
        tag = hashlib.sha256(str(self.home.root).encode()).hexdigest()[:12]
        return root / f"{tag}-{self.key}"

    @cached_property
    def hosts(self) -> Path:
        return self.run / "hosts"

    @cached_property
    def names(self) -> Path:
        return self.run / "names"

    def pid(self) -> int | None:
        """The pid of this network's running dnsmasq, or None (no pid file, or its process is gone or another).
        The file is read again only when it changed: a lease pays one stat and a signal 0 for this."""
        try:
            st = os.stat(self.pid_file)
            seen = self._pid_seen
            if seen is not None and seen[:2] == (st.st_ino, st.st_mtime_ns):
                os.kill(seen[2], 0)
                return seen[2]
            pid = int(self.pid_file.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            self._pid_seen = None
            return None
        if comm != "dnsmasq":
            return None
        self._pid_seen = (st.st_ino, st.st_mtime_ns, pid)
        self.names_served = self.names.is_dir()
        return pid

    def state(self) -> dict[str, Any]:
        """What the service last wrote about this dnsmasq: {"state", "interface", "pid", "restarts", "error"}."""
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    # -- building -----------------------------------------------------------------------------------------------

    def prepare(self, dns: bool) -> None:
        """Make the run directories empty and readable to dnsmasq's user alone (names/ only when it answers DNS);
        refuse a place it cannot reach."""
        user = dnsmasq_user()
        shutil.rmtree(self.run, ignore_errors=True)
        self.run.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        directories = (self.run, self.hosts, self.names) if dns else (self.run, self.hosts)
        for directory in directories:
            directory.mkdir(mode=0o700)
        self.names_served = dns
        if user is not None:
            blocked = _unreachable(self.run.parent, user)
            if blocked is not None:
                raise OperationError(
                    f"dnsmasq runs as {user.pw_name} and cannot reach {self.run} ({blocked} is closed to it): "
                    "set DHCP_RUN_DIR in headnode.conf to a directory it can reach"
                )
            for directory in directories:
                os.chown(directory, user.pw_uid, user.pw_gid)
                os.chmod(directory, 0o500)  # root writes anyway; only dnsmasq's user reads

    def write_all(self, book: LeaseBook, domain: str | None) -> list[Lease]:
        """Every lease of the network into fresh files (before dnsmasq starts); the leases, checked unique."""
        leases = book.leases()
        check_unique(leases)
        by_block: dict[str, list[Lease]] = {}
        for lease in leases:
            by_block.setdefault(lease.ip.rpartition(".")[0], []).append(lease)
        for block, mine in by_block.items():
            self._place(self.hosts / block, "".join(hostsfile_line(x) for x in mine))
            if self.names_served:
                self._place(self.names / block, "".join(hosts_lines(x, domain) for x in mine))
        return leases

    def remove(self) -> None:
        """What a stopped dnsmasq leaves: its lease database and state stay for its next start."""
        shutil.rmtree(self.run, ignore_errors=True)
        for path in (self.pid_file, self.conf):
            path.unlink(missing_ok=True)

    def forget(self) -> None:
        """A deleted network's: its grants and state too."""
        self.remove()
        for path in (self.leases, self.state_file):
            path.unlink(missing_ok=True)

    # -- following the leases -----------------------------------------------------------------------------------

    def committed(self, book: LeaseBook, tx: Transaction, meta: str, report: Callable[[str], None]) -> None:
        """After a lease transaction was journaled, under its lock: bring a running dnsmasq's files up to it."""
        pid = self.pid()  # not served: one failed stat per lease
        if pid is None:
            return
        try:
            self._follow(book, tx, meta, pid)
        except (OSError, OperationError) as exc:
            report(f"dnsmasq not updated ({exc}); the service rewrites its files when it next starts it")

    def _follow(self, book: LeaseBook, tx: Transaction, meta: str, pid: int) -> None:
        domain = book.network.domain
        reload = False
        released: list[int] = []
        for table, docs in tx.delta().items():
            if table == meta:
                continue
            existed = tx.replaced.get(table, set())
            released += [int(key) for key in existed if docs.get(key) is None]
            if existed or not self._add(book, table, docs, domain):
                self._rewrite_block(book, table, domain)
                reload = True
        if reload:
            os.kill(pid, signal.SIGHUP)
        interface = self.state().get("interface") if released else None  # as served, however old `book` is
        for number in released:
            if interface is not None:
                release_grant(pid, interface, format_ipv4(number), book.network.mac_for(number))

    def _add(self, book: LeaseBook, table: str, docs: dict[str, Any], domain: str | None) -> bool:
        """Write the new leases of a /24 as its next addition (or as its first file); False: fold it instead."""
        leases = [book.lease_of(doc) for doc in docs.values() if doc is not None]
        if not os.path.exists(self.hosts / table):  # a /24 dnsmasq has no reservation of yet
            self._rewrite_block(book, table, domain)
            return True
        number = self._next.get(table, 1)  # this process's hint; another may have written since
        hosts = "".join(hostsfile_line(x) for x in leases).encode()
        while number <= FOLD and not _create(self.hosts / f"{table}+{number}", hosts):
            number += 1
        if number > FOLD:
            return False
        if self.names_served:
            _create(self.names / f"{table}+{number}", "".join(hosts_lines(x, domain) for x in leases).encode())
        self._next[table] = number + 1
        return True

    def _rewrite_block(self, book: LeaseBook, table: str, domain: str | None) -> None:
        stored = book.file.table(table) or {}
        leases = [book.lease_of(stored[key]) for key in sorted(stored, key=int)]
        self._place(self.hosts / table, "".join(hostsfile_line(x) for x in leases))
        if self.names_served:
            self._place(self.names / table, "".join(hosts_lines(x, domain) for x in leases))
        directories = (self.hosts, self.names) if self.names_served else (self.hosts,)
        for directory in directories:  # by number: listing a directory of a /16's additions costs more
            for number in range(1, FOLD + 1):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / f"{table}+{number}")
        self._next.pop(table, None)

    @staticmethod
    def _place(path: Path, text: str) -> None:
        """Whole or not at all (dnsmasq skips names starting with a dot); derived data, so not synced."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)


@dataclass(frozen=True)
class DhcpStatus:
    """How a served network's dnsmasq is, read from its files (no service asked): for `vnet show` and the
    console."""

    interface: str
    dns: bool
    state: str  # serving, restarting (it died or cannot start), stopped, or down (no service runs it now)
    pid: int | None
    restarts: int
    error: str | None

    @classmethod
    def of(cls, files: ServedFiles, interface: str, dns: bool) -> DhcpStatus:
        recorded = files.state()
        pid = files.pid()
        state = recorded.get("state")
        if pid is not None:
            state = "serving"
        elif state in (None, "serving"):
            state = "down"
        return cls(interface, dns, state, pid, int(recorded.get("restarts") or 0), recorded.get("error"))

    def to_json(self) -> dict[str, Any]:
        keys = ("interface", "dns", "state", "pid", "restarts", "error")
        return {key: getattr(self, key) for key in keys}

    @property
    def text(self) -> str:
        text = f"{self.state} on {self.interface}" + ("" if self.dns else " (no DNS)")
        if self.pid is not None:
            text += f", dnsmasq pid {self.pid}"
        if self.restarts:
            text += f", {self.restarts} restart(s)"
        if self.error and self.pid is None:
            text += f": {self.error}"
        return text


def _create(path: Path, data: bytes) -> bool:
    """Make `path` whole in one write (False: it exists). dnsmasq reads a new file when it is closed
    (IN_CLOSE_WRITE), and O_EXCL finds the next free name in the same call: no rename, no stat, a lease's share."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return True


def release_grant(pid: int, interface: str, ip: str, mac: str) -> None:
    """Make dnsmasq (`pid`) forget its grant of `ip` to `mac` at once: a DHCPRELEASE sent by `dhcp_release` from
    `interface`, in dnsmasq's network namespace (entered with nsenter when it is not this process's)."""
    argv = ["dhcp_release", interface, ip, mac]
    with contextlib.suppress(OSError):
        if os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino:
            argv = ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationError(f"dhcp_release {ip}: {exc}") from None
    if done.returncode != 0:
        raise OperationError(f"dhcp_release {ip}: {done.stderr.strip() or f'exit {done.returncode}'}")


def _unreachable(directory: Path, user: pwd.struct_passwd) -> Path | None:
    """The first directory from / to `directory` that `user` may not pass through, or None."""
    for path in [*reversed(directory.parents), directory]:
        st = path.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == user.pw_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return path
    return None


# -- the configuration ------------------------------------------------------------------------------------------


def configuration(files: ServedFiles, network: Network) -> str:
    """dnsmasq's configuration for serving `network` (static leases only: a MAC headnode did not lease gets
    nothing), one option a line, every value one headnode checked when the network or its DHCP was set."""
    assert network.dhcp is not None
    interface = network.dhcp.interface
    user = dnsmasq_user()
    lines = [
        f"# dnsmasq for headnode network {network.name!r}: generated at each start, do not edit",
        f"interface={interface}",
        "bind-interfaces",  # one dnsmasq per network: each binds its own interface only
        "except-interface=lo",
        f"pid-file={files.pid_file}",
        f"dhcp-leasefile={files.leases}",
        f"dhcp-hostsdir={files.hosts}",
        "dhcp-authoritative",  # a request for an address it did not grant is answered NAK at once
        f"dhcp-lease-max={max(network.size, 1)}",
        "dhcp-option=option:router" + (f",{format_ipv4(network.gateway)}" if network.gateway is not None else ""),
        "log-facility=-",
    ]
    if user is not None:
        lines.append(f"user={user.pw_name}")
    for start, netmask in _ranges(network):
        lines.append(f"dhcp-range={start},static,{netmask},{LEASE_TIME}")
    if network.domain:
        lines.append(f"domain={network.domain}")
    if network.dhcp.dns:
        lines += [f"hostsdir={files.names}", "no-hosts"]
        if network.dns_servers:  # forwarded to; the guests are told to ask dnsmasq
            lines += ["no-resolv", *(f"server={server}" for server in network.dns_servers)]
        if network.domain:
            lines.append(f"local=/{network.domain}/")
    else:
        lines.append("port=0")
        if network.dns_servers:
            lines.append(f"dhcp-option=option:dns-server,{','.join(network.dns_servers)}")
    if network.global_prefix:
        # Router advertisements for SLAAC: a guest takes the EUI-64 address of its MAC, the lease's IP6_GLOBAL.
        lines += ["enable-ra", f"dhcp-range={network.global_prefix},ra-only,64,{LEASE_TIME}"]
    return "".join(f"{line}\n" for line in lines)


def _ranges(network: Network) -> list[tuple[str, str]]:
    if network.type == RANGED and network.address is not None and network.prefix_length is not None:
        netmask = format_ipv4(0xFFFFFFFF << (32 - network.prefix_length) & 0xFFFFFFFF)
        return [(format_ipv4(network.address), netmask)]
    blocks = sorted({ip >> 8 for ip, _ in network.fixed})  # a FIXED network: each /24 its addresses are in
    return [(format_ipv4(block << 8), "255.255.255.0") for block in blocks]


def check_configuration(files: ServedFiles, name: str, text: str, leases: Iterable[Lease]) -> None:
    """`dnsmasq --test` on the configuration and (as dhcp-host options: the same parser) the reservations; an
    OperationError with what dnsmasq said if it would refuse them. Nothing reaches a running dnsmasq before."""
    trial = files.conf.with_name(f".{files.conf.name}.test")
    hosts = [f"dhcp-host={hostsfile_line(x)}" for _, x in zip(range(TESTED_RESERVATIONS), leases, strict=False)]
    trial.parent.mkdir(mode=0o700, exist_ok=True)
    tested = text.replace(f"dhcp-hostsdir={files.hosts}\n", "") + "".join(hosts)
    trial.write_text(tested)
    try:
        done = subprocess.run(["dnsmasq", "--test", f"--conf-file={trial}"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise OperationError(f"cannot run dnsmasq ({exc.strerror}): install dnsmasq-base") from None
    finally:
        trial.unlink(missing_ok=True)
    if done.returncode != 0:
        said = " ".join(done.stderr.split()).removeprefix("dnsmasq: ") or f"exit {done.returncode}"
        found = re.search(r" at line (\d+) of \S+", said)
        if found:  # the trial file is gone: name the line itself
            lines = tested.splitlines()
            number = int(found.group(1))
            line = lines[number - 1] if 0 < number <= len(lines) else ""
            said = said[: found.start()] + f" in `{line}`"
        raise OperationError(f"dnsmasq refuses the configuration for network {name!r}: {said} (nothing was started)")


def write_state(files: ServedFiles, **state: Any) -> None:
    files.state_file.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = files.state_file.with_name(f".{files.state_file.name}.tmp")
    tmp.write_text(json.dumps({**state, "at": time.time()}))
    os.replace(tmp, files.state_file)
