"""The home's TinyDB database, shared safely by threads and by several headnode processes.

Every access is a transaction: an exclusive (write) or shared (read) `flock` on `<db>.lock` plus a thread lock,
a TinyDB over an in-memory snapshot of the file, and, for a write that changed something, one atomic replace of
the file (temporary name, fsync, rename, fsync of the directory) before the lock is released. So a change is on
disk when `write()` returns, an interrupted write leaves the previous file whole, and two processes never
interleave. The snapshot is reused while the file's identity (inode, size, mtime) is unchanged, so a read costs
a `stat` when nothing changed.

This suits the small tables (hosts, VMs, networks, journals). Bulk lease state has its own layout (leases.py).

Damage is reported, never worked around: a file that is empty (this module never writes one), does not parse or
is not tables of documents raises DamagedDatabase naming it, and nothing is changed, so a damaged home is never
re-initialised over (a 0-byte headnode.db used to come back as a fresh home holding only the default network).
Before each write the previous version is kept as `<db>.bak` (a hard link, no copy), and the error says how to
restore it. A temporary file left by a writer killed mid-write is removed by the next transaction, read or write.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from engine.errors import InputError, Problem
from engine.store.atomic import write_atomically

BACKUP_SUFFIX = ".bak"


class DamagedDatabase(InputError):
    """A database file that does not load; nothing was changed."""


class _SnapshotStorage(Storage):
    """TinyDB storage over a dict held in memory for the length of one transaction."""

    def __init__(self, data: dict[str, Any], writable: bool) -> None:
        self.data = data
        self.writable = writable
        self.changed = False

    def read(self) -> dict[str, Any]:
        return self.data

    def write(self, data: dict[str, Any]) -> None:
        if not self.writable:
            raise RuntimeError("write inside a read transaction")
        json.dumps(data)  # refuse what cannot be stored before it enters the snapshot
        self.data = data
        self.changed = True


def write_json_atomically(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON: complete or not at all, and durable once this returns."""
    write_atomically(path, json.dumps(data, separators=(",", ":")))


class _PathLock:
    """The one thread lock of a database file in this process, and which transaction this thread holds on it."""

    def __init__(self) -> None:
        self.thread_lock = threading.Lock()
        self.holder = threading.local()

    def held_mode(self) -> int | None:
        return getattr(self.holder, "mode", None)


_PATH_LOCKS: dict[Path, _PathLock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _path_lock(path: Path) -> _PathLock:
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(path, _PathLock())


class Store:
    """A TinyDB file with transactional access."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = _path_lock(self.path)
        self.backup_path = self.path.with_name(self.path.name + BACKUP_SUFFIX)
        self._snapshot: dict[str, Any] = {}
        self._identity: tuple[int, int, int] | None = None
        self._swept = False  # stray temporary files removed (once per Store, under the exclusive lock)

    @contextmanager
    def write(self) -> Iterator[TinyDB]:
        """An exclusive transaction; what it changed is on disk when the block ends without an exception."""
        with self._locked(fcntl.LOCK_EX):
            storage = _SnapshotStorage(self._load_copy(), writable=True)
            db = TinyDB(storage=lambda: storage)
            yield db
            if storage.changed:
                self._sweep()
                self._keep_backup()
                write_json_atomically(self.path, storage.data)
                self._snapshot = storage.data
                self._identity = self._stat()

    @contextmanager
    def read(self) -> Iterator[TinyDB]:
        """A shared transaction: a consistent view; writes inside it raise."""
        with self._locked(fcntl.LOCK_SH):
            self._sweep()
            storage = _SnapshotStorage(self._load(), writable=False)
            yield TinyDB(storage=lambda: storage)

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        held = self._lock.held_mode()
        if held is not None:
            # flock is per open file: taking it again from this thread would wait for ourselves forever, and a
            # write nested in another transaction would lose one of the two. A read inside a write is fine.
            if mode == fcntl.LOCK_EX:
                raise RuntimeError(f"write transaction on {self.path} nested in another transaction")
            yield
            return
        with self._lock.thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, mode)
                self._lock.holder.mode = mode
                yield
            finally:
                self._lock.holder.mode = None
                os.close(fd)  # closing releases the flock

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> dict[str, Any]:
        identity = self._stat()
        if identity is None:
            self._snapshot, self._identity = {}, None
        elif identity != self._identity:
            with open(self.path, "rb") as f:
                raw = f.read()
            self._snapshot = self._parse(raw)
            self._identity = identity
        return self._snapshot

    def _parse(self, raw: bytes) -> dict[str, Any]:
        if not raw:
            raise self._damaged("it is empty (0 bytes)")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._damaged(f"it does not load: {exc}") from None
        shaped = isinstance(data, dict) and all(
            isinstance(table, dict) and all(isinstance(doc, dict) for doc in table.values()) for table in data.values()
        )
        if not shaped:
            raise self._damaged("it is JSON but not tables of documents")
        return data

    def _damaged(self, why: str) -> DamagedDatabase:
        try:
            kept = os.stat(self.backup_path)
        except FileNotFoundError:
            restore = "there is no backup of it"
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(kept.st_mtime))
            restore = (
                f"the last good version, as of {when}, is {self.backup_path}: "
                f"restore it with `cp -p {self.backup_path} {self.path}`"
            )
        message = f"database is damaged: {why}; nothing was changed ({restore})"
        return DamagedDatabase(Problem(message, str(self.path)))

    def _keep_backup(self) -> None:
        """Keep the version about to be replaced (loaded whole a moment ago, under this lock) as the backup."""
        link = self.backup_path.with_name(f".{self.backup_path.name}.{os.getpid()}.tmp")
        try:
            link.unlink(missing_ok=True)
            os.link(self.path, link)
        except FileNotFoundError:
            return  # the first write of a new database
        os.replace(link, self.backup_path)

    def _sweep(self) -> None:
        """Remove temporary files of writers killed mid-write, at the first transaction (under either lock: a
        writer holds the exclusive one, so none is running)."""
        if self._swept:
            return
        for stray in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):
            stray.unlink(missing_ok=True)
        self._swept = True

    def _load_copy(self) -> dict[str, Any]:
        # A write transaction works on a copy, so an exception inside it leaves the cached snapshot untouched.
        return {name: dict(table) for name, table in self._load().items()}
