"""Hosts: where VMs run and how their files get there (table `hosts` of the home's database).

A host has an address, port, user and identity file for SSH, a transfer driver (`shared`, `ssh`, `dummy` or one
configured in a `tm/<driver>.conf`), its VM directory (every destination on the host must lie inside it), a cap on
concurrent transfers, for its image cache (engine.transfers.cache) a directory (default `.headnode-cache/` in
the VM directory) and a budget in MiB (default: the configuration's CACHE_MAX_MB or CACHE_FREE_PERCENT), and
whether streams on its link are compressed (`zstd` or `no`; unset, its driver's COMPRESS says:
engine.transfers.compression). The front end is the host named by the configuration's FRONTEND_NAME: a path
on it is a local file whether or not it has a record; without one its VM directory is the home's `vms/`.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.errors import InputError, Problem
from engine.home import Home
from engine.language.numbers import whole_number
from engine.language.script import CONTROL_CHARACTER, HOST_NAME
from engine.store.database import Store
from engine.transfers.compression import COMPRESS_CHOICES

TABLE = "hosts"
DEFAULT_MAX_TRANSFERS = 4
INPUT_FIELDS = (  # parse_host's
    "name",
    "driver",
    "vm_dir",
    "address",
    "port",
    "user",
    "identity",
    "max_transfers",
    "cache_dir",
    "cache_max_mb",
    "compress",
)
# A host name or an IPv4/IPv6 address (with a zone): never a leading '-', which ssh would read as an option.
_ADDRESS = re.compile(r"[A-Za-z0-9:][A-Za-z0-9_.:%-]*")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Host:
    """A host record. `local` marks the front end (its paths are this machine's files); it is never stored."""

    name: str
    driver: str
    vm_dir: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    identity: str | None = None
    max_transfers: int = DEFAULT_MAX_TRANSFERS
    cache_dir: str | None = None  # None: .headnode-cache/ in the VM directory
    cache_max_mb: int | None = None  # None: the configuration's budget
    compress: str | None = None  # one of COMPRESS_CHOICES; None: the driver's COMPRESS
    local: bool = False

    @property
    def ssh_name(self) -> str:
        """The name looked up in ~/.ssh/config and connected to: the address, else the host's name."""
        return self.address or self.name

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        del data["local"]
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Host:
        return cls(
            data["name"],
            data["driver"],
            data["vm_dir"],
            data.get("address"),
            data.get("port"),
            data.get("user"),
            data.get("identity"),
            int(data.get("max_transfers") or DEFAULT_MAX_TRANSFERS),
            data.get("cache_dir"),
            data.get("cache_max_mb"),
            data.get("compress"),
        )


def normalize_dir(path: str) -> str:
    return posixpath.normpath(path)


def inside_vm_dir(host: Host, path: str) -> bool:
    """Whether `path`, with `..` resolved, lies strictly inside the host's VM directory."""
    root = normalize_dir(host.vm_dir)
    target = posixpath.normpath(path)
    return target != root and target.startswith(root.rstrip("/") + "/")


def parse_host(values: Mapping[str, str | None], known_drivers: Sequence[str]) -> Host:
    """A host from what a person typed, as text by field name (INPUT_FIELDS), the same for the CLI's options and
    the console's form: blank or missing optional fields are not given, `max_transfers` defaults to
    DEFAULT_MAX_TRANSFERS, the identity file is made absolute. InputError listing every problem, the record's own
    checks included."""
    problems: list[Problem] = []

    def text(key: str) -> str | None:
        return (values.get(key) or "").strip() or None

    def number(key: str, flag: str) -> int | None:
        raw = text(key)
        value = None if raw is None else whole_number(raw)
        if raw is not None and value is None:
            problems.append(Problem(f"{flag} must be a whole number, not {raw!r}"))
        return value

    port = number("port", "--port")
    max_transfers = number("max_transfers", "--max-transfers")
    cache_max_mb = number("cache_max_mb", "--cache-max-mb")
    identity, compress = text("identity"), text("compress")
    host = Host(
        text("name") or "",
        text("driver") or "",
        text("vm_dir") or "",
        text("address"),
        port,
        text("user"),
        None if identity is None else os.path.abspath(os.path.expanduser(identity)),
        DEFAULT_MAX_TRANSFERS if max_transfers is None else max_transfers,
        text("cache_dir"),
        cache_max_mb,
        None if compress is None else compress.lower(),
    )
    problems += validate_host(host, known_drivers)
    if problems:
        raise InputError(problems)
    return host


def validate_host(host: Host, known_drivers: Sequence[str]) -> list[Problem]:
    """Every problem with a host record, as messages naming the field."""
    problems = []
    if not HOST_NAME.fullmatch(host.name):
        problems.append(Problem(f"bad host name {host.name!r}: letters, digits, '.', '_' and '-' only"))
    if host.driver not in known_drivers:
        problems.append(Problem(f"unknown driver {host.driver!r}: expected one of {', '.join(known_drivers)}"))
    if not host.vm_dir.startswith("/") or CONTROL_CHARACTER.search(host.vm_dir):
        # White space is fine (a script line quotes it); a control character no script line can carry.
        problems.append(Problem(f"--vm-dir must be an absolute path without control characters, not {host.vm_dir!r}"))
    elif normalize_dir(host.vm_dir) == "/":
        problems.append(Problem("--vm-dir must not be / (every file on the host would be at risk)"))
    if host.cache_dir is not None:
        if not host.cache_dir.startswith("/") or any(c.isspace() for c in host.cache_dir):
            problems.append(
                Problem(f"--cache-dir must be an absolute path without white space, not {host.cache_dir!r}")
            )
        elif normalize_dir(host.cache_dir) == "/" or normalize_dir(host.cache_dir) == normalize_dir(host.vm_dir):
            # Evicting removes what lies in the cache directory: never the host's root or its VMs' files.
            problems.append(Problem("--cache-dir must be a directory of its own, not / or the VM directory"))
    if host.cache_max_mb is not None and host.cache_max_mb < 0:
        problems.append(Problem(f"--cache-max-mb must be 0 (no cache) or more, not {host.cache_max_mb}"))
    if host.port is not None and not 0 < host.port < 65536:
        problems.append(Problem(f"--port must be 1-65535, not {host.port}"))
    if host.max_transfers < 1:
        problems.append(Problem(f"--max-transfers must be at least 1, not {host.max_transfers}"))
    if host.compress is not None and host.compress not in COMPRESS_CHOICES:
        choices = " or ".join(COMPRESS_CHOICES)
        problems.append(Problem(f"--compress must be {choices}, not {host.compress!r}"))
    if host.address is not None and not _ADDRESS.fullmatch(host.address):
        problems.append(
            Problem(
                f"bad --address {host.address!r}: a host name or IP address (letters, digits, '.', '-', '_', ':', "
                "'%'), not starting with '-'"
            )
        )
    if host.user is not None and not _USER.fullmatch(host.user):
        problems.append(Problem(f"bad --user {host.user!r}: letters, digits, '.', '_', '-', not starting with '-'"))
    if host.identity is not None and not os.path.isfile(os.path.expanduser(host.identity)):
        problems.append(Problem(f"--identity {host.identity}: no such file"))
    return problems


class Hosts:
    """The host records of one home."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.store = Store(home.db_path)

    @property
    def frontend_name(self) -> str:
        return self.home.config.frontend_name

    def parse(self, values: Mapping[str, str | None]) -> Host:
        """A host from typed text (parse_host), checked against this home's drivers; nothing is stored."""
        from engine.transfers.drivers import driver_names

        return parse_host(values, driver_names(self.home))

    def create(self, host: Host) -> Host:
        host = self._checked(host)
        with self.store.write() as db:
            table = db.table(TABLE)
            if table.contains(lambda d: d["name"] == host.name):
                raise InputError(Problem(f"host {host.name!r} already exists"))
            table.insert(host.record())
        return host

    def _checked(self, host: Host) -> Host:
        """The record as it will be stored (VM directory normalized); InputError listing every problem."""
        from engine.transfers.drivers import driver_names

        host = replace(host, vm_dir=normalize_dir(host.vm_dir) if host.vm_dir.startswith("/") else host.vm_dir)
        if host.cache_dir is not None and host.cache_dir.startswith("/"):
            host = replace(host, cache_dir=normalize_dir(host.cache_dir))
        problems = validate_host(host, driver_names(self.home))
        if problems:
            raise InputError(problems)
        return host

    def update(self, name: str, host: Host) -> Host:
        """Replace host `name`'s record with `host` (which may rename it), checked as `create` checks."""
        host = self._checked(host)
        with self.store.write() as db:
            table = db.table(TABLE)
            if not table.contains(lambda d: d["name"] == name):
                raise InputError(Problem(f"no host named {name!r} (see 'headnode host list')"))
            if host.name != name and table.contains(lambda d: d["name"] == host.name):
                raise InputError(Problem(f"host {host.name!r} already exists"))
            table.remove(lambda d: d["name"] == name)
            table.insert(host.record())
        return host

    def list(self) -> list[Host]:
        with self.store.read() as db:
            records = db.table(TABLE).all()
        return sorted((Host.from_record(r) for r in records), key=lambda h: h.name)

    def find(self, name: str) -> Host | None:
        with self.store.read() as db:
            found = db.table(TABLE).get(lambda d: d["name"] == name)
        return Host.from_record(found) if isinstance(found, dict) else None

    def get(self, name: str) -> Host:
        host = self.find(name)
        if host is None:
            raise InputError(Problem(f"no host named {name!r} (see 'headnode host list')"))
        return host

    def delete(self, name: str) -> None:
        with self.store.write() as db:
            if not db.table(TABLE).remove(lambda d: d["name"] == name):
                raise InputError(Problem(f"no host named {name!r} (see 'headnode host list')"))

    def resolve(self, name: str) -> Host:
        """The host a `name:path` refers to; the front end is always local, with or without a record."""
        host = self.find(name)
        if name == self.frontend_name:
            if host is None:
                return Host(name, "shared", str(self.home.vms), local=True)
            return replace(host, local=True)
        if host is None:
            raise InputError(Problem(f"no host named {name!r} (see 'headnode host list')"))
        return host
