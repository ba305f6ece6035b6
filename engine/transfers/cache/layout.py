"""The host image cache on disk: where a host's cache lives, how an entry is named, and its sidecar record.

A host's cache is one directory, `<VM directory>/.headnode-cache/` unless the host record names another
(`Host.cache_dir`). An entry is an image keyed by its checksum: the file `KEY` with the sidecar `KEY.json`, where
KEY is the checksum written `ALGORITHM-VALUE` (`cksum-3265123419`, `sha256-9f86d0...`), the value as
engine.transfers.checksums prints it (`cksum:3265123419`) with its colon made a dash (a colon reads as host:path
in image scripts and scp). Beside them, while an entry is written or copied out:

    .KEY.lock   held (flock) by whoever writes the entry (exclusive) or copies it out (shared); an eviction takes it
                exclusive without waiting, so an entry in use is never evicted. Empty; removed with the entry.
    .KEY.part   the image while it is fetched. Never trusted: a kill -9 mid-fetch leaves only this.
    .KEY.json.PID.part   the sidecar while it is written (each writer's own name, then renamed).

A fetch whose checksum is known only once it ends (an HTTP source seen for the first time) locks and writes under
a fetch key instead, `fetch-` and 40 hex digits of the source's SHA-256 (`.fetch-HEX.lock`, `.fetch-HEX.part`),
and publishes the part under its entry's key once verified (taking that key's lock too, after the fetch's).

Publishing an entry (the only way an entry becomes trusted), holding `.KEY.lock` exclusive: write `.KEY.part`,
verify it where it lies (its checksum is KEY's, its size the expected one), rename it to `KEY`, then write the
sidecar to `.KEY.json.part` and rename it to `KEY.json`. A reader trusts an entry only when `KEY` and `KEY.json`
both exist, the sidecar parses, names KEY's checksum and KEY's size; and every copy out of the cache checksums
what it copied against KEY anyway, so even a trusted entry that rotted is caught (and dropped, and fetched again).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engine.transfers.checksums import ALGORITHMS

if TYPE_CHECKING:
    from engine.transfers.hosts import Host

CACHE_DIR_NAME = ".headnode-cache"
SIDECAR_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"
PART_SUFFIX = ".part"
SIDECAR_VERSION = 1
# cksum's value is a decimal CRC, sha256's 64 hex digits: a key is never anything else, so a key is a safe file
# name and never an option.
_KEY = re.compile(r"(cksum)-([0-9]{1,10})|(sha256)-([0-9a-f]{64})")


class BadSidecar(ValueError):
    """A sidecar that does not parse or does not describe its entry: the entry is not trusted."""


def cache_dir(host: Host) -> str:
    """The host's cache directory: its own setting, else `.headnode-cache/` in its VM directory."""
    return posixpath.normpath(host.cache_dir) if host.cache_dir else posixpath.join(host.vm_dir, CACHE_DIR_NAME)


def entry_key(checksum: str) -> str:
    """The key of the image whose checksum is `checksum` (`cksum:123` -> `cksum-123`); ValueError for anything
    that is not a checksum value of a known algorithm."""
    algorithm, _, value = checksum.partition(":")
    key = f"{algorithm}-{value}"
    if algorithm not in ALGORITHMS or not _KEY.fullmatch(key):
        raise ValueError(f"not a checksum: {checksum!r}")
    return key


def is_key(name: str) -> bool:
    return _KEY.fullmatch(name) is not None


_FETCH_KEY = re.compile(r"fetch-[0-9a-f]{40}")


def fetch_key(source: str) -> str:
    """The lock key of a fetch of `source` whose checksum is not known before it ends."""
    return "fetch-" + hashlib.sha256(source.encode()).hexdigest()[:40]


def is_fetch_key(name: str) -> bool:
    return _FETCH_KEY.fullmatch(name) is not None


def key_checksum(key: str) -> str:
    """The checksum a key stands for (`cksum-123` -> `cksum:123`)."""
    if not is_key(key):
        raise ValueError(f"not a cache key: {key!r}")
    algorithm, _, value = key.partition("-")
    return f"{algorithm}:{value}"


@dataclass(frozen=True)
class EntryPaths:
    """The names of one entry in a host's cache directory (host paths, POSIX)."""

    directory: str
    key: str

    @property
    def image(self) -> str:
        return posixpath.join(self.directory, self.key)

    @property
    def sidecar(self) -> str:
        return self.image + SIDECAR_SUFFIX

    @property
    def part(self) -> str:
        return posixpath.join(self.directory, f".{self.key}{PART_SUFFIX}")

    @property
    def lock(self) -> str:
        return posixpath.join(self.directory, f".{self.key}{LOCK_SUFFIX}")


def entry_paths(host: Host, key: str) -> EntryPaths:
    """The names of `key` (an entry's or a fetch's key) in the host's cache directory."""
    if not is_key(key) and not is_fetch_key(key):
        raise ValueError(f"not a cache key: {key!r}")
    return EntryPaths(cache_dir(host), key)


@dataclass(frozen=True)
class Validators:
    """What an HTTP server said identifies the body it served (any may be missing)."""

    etag: str | None = None
    last_modified: str | None = None
    content_length: int | None = None

    def known(self) -> bool:
        """Whether the server said enough to know the body again without fetching it: a strong or weak ETag, or a
        Last-Modified with a Content-Length."""
        return self.etag is not None or (self.last_modified is not None and self.content_length is not None)


@dataclass(frozen=True)
class Sidecar:
    """The record beside an entry. Times are seconds since the epoch (UTC)."""

    checksum: str  # ALGORITHM:VALUE, the entry's key
    size: int
    source: str  # where it was fetched from: host:path or a URL, as the image script named it
    fetched: float
    last_used: float
    pinned: bool = False
    validators: Validators | None = None  # an HTTP source's, when it came from one
    version: int = SIDECAR_VERSION

    @property
    def algorithm(self) -> str:
        return self.checksum.partition(":")[0]

    @property
    def key(self) -> str:
        return entry_key(self.checksum)

    @classmethod
    def new(cls, checksum: str, size: int, source: str, validators: Validators | None = None) -> Sidecar:
        now = time.time()
        return cls(checksum, size, source, now, now, False, validators)

    def used(self, when: float | None = None) -> Sidecar:
        return replace(self, last_used=time.time() if when is None else when)

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["algorithm"] = self.algorithm
        return json.dumps(data, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, key: str | None = None) -> Sidecar:
        """The sidecar in `text`; BadSidecar saying what is wrong (and, with `key`, when it is another entry's)."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadSidecar(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadSidecar("not a JSON object")
        problems = []
        checksum = data.get("checksum")
        try:
            entry_key(checksum if isinstance(checksum, str) else "")
        except ValueError:
            problems.append(f"checksum {checksum!r} is not a checksum value")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            problems.append(f"size {size!r} is not a byte count")
        if not isinstance(data.get("source"), str):
            problems.append("source is missing")
        for name in ("fetched", "last_used"):
            if not isinstance(data.get(name), int | float) or isinstance(data.get(name), bool):
                problems.append(f"{name} is not a time")
        if not isinstance(data.get("pinned", False), bool):
            problems.append("pinned is not true or false")
        raw = data.get("validators")
        validators = None
        if isinstance(raw, dict):
            length = raw.get("content_length")
            validators = Validators(
                raw.get("etag") if isinstance(raw.get("etag"), str) else None,
                raw.get("last_modified") if isinstance(raw.get("last_modified"), str) else None,
                length if isinstance(length, int) and not isinstance(length, bool) else None,
            )
        elif raw is not None:
            problems.append("validators is not an object")
        if problems:
            raise BadSidecar("; ".join(problems))
        sidecar = cls(
            str(checksum),
            int(size),  # type: ignore[arg-type]  # checked above
            data["source"],
            float(data["fetched"]),
            float(data["last_used"]),
            data.get("pinned", False),
            validators,
            int(data.get("version", SIDECAR_VERSION)),
        )
        if key is not None and sidecar.key != key:
            raise BadSidecar(f"it describes {sidecar.key}, not {key}")
        return sidecar


@dataclass(frozen=True)
class Entry:
    """A trusted entry as listed: its host, key, path on the host and sidecar."""

    host: str
    path: str
    sidecar: Sidecar
    busy: bool = False  # being copied out or written right now (its lock is held)

    @property
    def key(self) -> str:
        return self.sidecar.key


@dataclass(frozen=True)
class Listing:
    """One host's cache: its trusted entries, what else lies there (parts, damaged entries), its budget."""

    host: str
    directory: str
    entries: list[Entry] = field(default_factory=list)
    untrusted: list[str] = field(default_factory=list)  # names in the directory that are no trusted entry
    budget: int = 0  # bytes
    free: int = 0  # bytes free on the cache's file system

    @property
    def usage(self) -> int:
        return sum(entry.sidecar.size for entry in self.entries)
