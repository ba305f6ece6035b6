"""A TinyDB database kept as a snapshot plus an append-only journal, for lease tables of up to ~65k documents.

Plain TinyDB rewrites the whole file on every write (O(database) per lease). Here, as in ISC dhcpd and Kea's
memfile, a write appends one line to a journal and a compaction now and then folds the journal into a snapshot:

    <key>.db        the snapshot: an ordinary TinyDB JSON file ({"table": {"doc_id": {...}}}); plain
                    `TinyDB(path)` opens it. Replaced atomically (temporary name, fsync, rename). Written one
                    table a line, so a load parses only the tables it uses (a lease: one /24), and a
                    compaction re-serialises only the tables it changed; any other TinyDB file loads whole.
    <key>.journal   one JSON line per committed transaction: {"t": {"table": {"doc_id": doc or null}}}, each
                    document's full new state (null = removed), so replaying a line twice changes nothing.
    <key>.lock      flock: exclusive for a write transaction, shared for a read.

In memory the data is TinyDB's own layout (table name -> str(doc_id) -> document), edited in place by
transactions: TinyDB's Table API rebuilds a table's dict on every write (~13 µs a document in a batch), which
was a third of the cost of leasing a /16 at once.

Guarantees:
- A committed transaction is one `write(2)` with O_APPEND under the exclusive lock before `write()` returns, so it
  survives `kill -9` of the process right after. It is fdatasync'ed only with `sync=True`: without it, a power loss
  can lose the transactions of the last few seconds (the kernel's writeback interval), never the file.
- A torn last line (a killed process in the middle of a large write, or a power cut) has no newline: it is never
  applied, and the next writer cuts it off before appending: the one silent repair, since a crash makes it.
- Any other damage is reported, never silently dropped: a journal line that does not parse or is not a
  transaction, an empty snapshot (compaction never writes one), or one that does not load (a table of it, found
  when that table is first used: then the transaction using it is refused). What loaded is kept
  and readable, `damage` says which file and line and what was lost, and the file takes no new leases and is never
  compacted over (an address a lost line held could be handed out twice) until `set_aside_damage()` (`vnet
  doctor --fix`) moves the damaged files aside and keeps what loaded.
- A temporary file of a compaction killed midway is removed by the next write transaction.
- Compaction writes the new snapshot first, then an empty journal: a crash between the two replays lines the
  snapshot already holds, which is harmless because lines carry absolute states.
- Another process's commits are picked up at the start of each transaction: an unchanged journal costs one
  `stat`; an appended one costs reading the new lines only; a compacted one (new inode) a full reload.
  `stamp()` is the lock-free "has anything changed" check for pollers.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import OperationError
from engine.store.atomic import fsync_directory, write_atomically

Data = dict[str, dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Damage:
    """What in a lease file did not load, and what that lost."""

    file: str
    line: int | None  # a journal line, or None for the whole snapshot
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


COMPACT_MIN_BYTES = 4 << 20  # compact once the journal is past this and past the snapshot's size


class Transaction:
    """Changes inside `LeaseFile.write()`; each change is journaled when the block ends."""

    def __init__(self, file: LeaseFile) -> None:
        self.file = file
        self.touched: dict[str, dict[str, None]] = {}  # table -> the ids changed (an ordered set)
        self.replaced: dict[str, set[str]] = {}  # table -> the ids of documents that were there before the change

    def get(self, table: str, doc_id: int) -> dict[str, Any] | None:
        stored = self.file.table(table)
        return stored.get(str(doc_id)) if stored is not None else None

    def put(self, table: str, doc_id: int, doc: dict[str, Any]) -> None:
        """Store `doc` as document `doc_id` of `table`, replacing what was there."""
        stored = self._changing(table)
        if str(doc_id) in stored:
            self.replaced.setdefault(table, set()).add(str(doc_id))
        stored[str(doc_id)] = dict(doc)
        self.touched.setdefault(table, {})[str(doc_id)] = None

    def insert_many(self, table: str, docs: dict[int, dict[str, Any]]) -> None:
        """Insert new documents (ValueError if one exists, and then nothing is inserted). The documents are
        kept as given: build them of JSON values only (a dict of str, numbers and None is not tracked by the
        cyclic GC, whose full collections would otherwise walk every lease)."""
        stored = self._changing(table)
        keyed = {str(doc_id): doc for doc_id, doc in docs.items()}
        if not stored.keys().isdisjoint(keyed):
            raise ValueError(f"document {next(k for k in keyed if k in stored)} of {table} exists")
        stored.update(keyed)
        self.touched.setdefault(table, {}).update(dict.fromkeys(keyed))

    def delete(self, table: str, doc_id: int) -> None:
        if self._changing(table).pop(str(doc_id), None) is not None:
            self.replaced.setdefault(table, set()).add(str(doc_id))
        self.touched.setdefault(table, {})[str(doc_id)] = None

    def delta(self) -> dict[str, dict[str, Any]]:
        """Each changed table's changed documents, as they are now (None: removed)."""
        delta = {}
        for name, ids in self.touched.items():
            stored = self.file.table(name) or {}
            delta[name] = {key: stored.get(key) for key in ids}
        return delta

    def _changing(self, table: str) -> dict[str, dict[str, Any]]:
        stored = self.file.table(table, create=True)
        assert stored is not None
        self.file.texts.pop(table, None)  # after table(), which may parse it and keep its text
        return stored


class LeaseFile:
    """One journaled TinyDB database; safe for threads (one lock) and processes (flock)."""

    def __init__(self, directory: str | Path, key: str, sync: bool = False) -> None:
        self.directory = Path(directory)
        self.snapshot_path = self.directory / f"{key}.db"
        self.journal_path = self.directory / f"{key}.journal"
        self.lock_path = self.directory / f"{key}.lock"
        self.sync = sync
        self.data: Data = {}  # the tables parsed so far
        self._unparsed: dict[str, memoryview] = {}  # the snapshot's other tables, as their text in it
        self.texts: dict[str, bytes | memoryview] = {}  # the JSON text of parsed tables unchanged since read or written
        self._refusing_damage = False  # inside a write transaction that damage must stop
        self.loads = 0  # counts loads of other processes' changes (full reloads and appended lines read)
        self.skipped_lines = 0  # lines that did not parse at the last full load
        self.damage: list[Damage] = []  # since the last full load
        self._lines = 0  # complete journal lines read
        self._swept = False
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._journal_fd: int | None = None
        self._offset = 0  # bytes of the journal applied (always the end of a complete line)
        self._snapshot_bytes = 0

    @contextmanager
    def write(
        self, despite_damage: bool = False, committed: Callable[[Transaction], None] | None = None
    ) -> Iterator[Transaction]:
        """An exclusive transaction: what it changed is appended to the journal when the block ends, then
        `committed` sees it, still under the lock. Refused while the file is damaged, unless `despite_damage`
        (deleting the network)."""
        with self._locked(fcntl.LOCK_EX):
            self._refresh()
            self._sweep()
            if self.damage and not despite_damage:
                raise OperationError(
                    f"{self.damage[0]} ({len(self.damage)} damaged part(s)): no lease can change until it is repaired "
                    "(`headnode vnet doctor` lists the damage; `vnet doctor --fix` keeps what loaded and moves the "
                    "damaged files aside)"
                )
            tx = Transaction(self)
            self._refusing_damage = not despite_damage
            try:
                yield tx
                if tx.touched:
                    self._append(self._journal_line(tx))
            except BaseException:
                if tx.touched:
                    self._forget()  # memory may hold changes the journal does not: reload next time
                raise
            finally:
                self._refusing_damage = False
            if tx.touched and committed is not None:
                committed(tx)
            if self._offset > max(COMPACT_MIN_BYTES, self._snapshot_bytes) and not self.damage:
                self._compact()

    @contextmanager
    def read(self, tables: Iterable[str] | None = None) -> Iterator[Data]:
        """A shared transaction: the current data, read-only, consistent for the block; only `tables` of it
        (those that exist) when given, so the rest need not be parsed."""
        with self._locked(fcntl.LOCK_SH):
            self._refresh()
            self._sweep()
            if tables is None:
                yield self.all()
            else:
                for name in tables:
                    self.table(name)
                yield self.data

    def table(self, name: str, create: bool = False) -> dict[str, dict[str, Any]] | None:
        """One table of the current data (inside a transaction), parsed on first use; None if there is none
        (an empty one when `create`). A table that does not load is damage: empty for a read, and a write
        transaction that uses it is refused."""
        stored = self.data.get(name)
        if stored is None:
            raw = self._unparsed.pop(name, None)
            if raw is not None:
                stored = self._parse_table(name, raw)
                if stored is None:
                    self.data[name] = {}
                    if self._refusing_damage:
                        raise OperationError(f"{self.damage[-1]}: no lease can change until it is repaired")
                    return self.data[name]
                self.data[name] = stored
                self.texts[name] = raw
            elif create:
                stored = self.data[name] = {}
        return stored

    def all(self) -> Data:
        """Every table of the current data (inside a transaction), parsed."""
        for name in list(self._unparsed):
            self.table(name)
        return self.data

    def _journal_line(self, tx: Transaction) -> bytes:
        """{"t": delta} as one line; a table the delta holds whole (filled in this transaction, as a batch of
        leases fills /24 after /24) keeps its text, so the compaction that follows need not serialise it again."""
        parts = []
        for name, docs in tx.delta().items():
            text = json.dumps(docs, separators=(",", ":")).encode()
            parts.append(json.dumps(name).encode() + b":" + text)
            stored = self.data.get(name)
            if stored is not None and len(stored) == len(docs) and None not in docs.values():
                self.texts[name] = text
        return b'{"t":{' + b",".join(parts) + b"}}\n"

    def _parse_table(self, name: str, raw: memoryview) -> dict[str, dict[str, Any]] | None:
        try:
            table = json.loads(bytes(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            table, why = None, f"does not load ({exc})"
        else:
            why = "is not lease documents"
        if not _tables({name: table}):
            lost = "the leases of that table are lost; the journal's are kept"
            self.damage.append(
                Damage(str(self.snapshot_path), None, f"table {name} of the lease snapshot {why}: {lost}")
            )
            return None
        return table

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever any process commits or compacts; costs one stat and takes no lock."""
        try:
            st = os.stat(self.journal_path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_size)

    def set_aside_damage(self) -> list[Path]:
        """Accept the damage: copy the damaged files to `<name>.damaged-<time>`, then compact what loaded."""
        with self._locked(fcntl.LOCK_EX):
            self._refresh()
            if not self.damage:
                return []
            stamp = time.strftime("%Y%m%d-%H%M%S")
            kept = []
            for path in {Path(d.file) for d in self.damage}:
                aside = path.with_name(f"{path.name}.damaged-{stamp}")
                shutil.copy2(path, aside)
                kept.append(aside)
            self.damage = []
            self._compact()
            return sorted(kept)

    def remove_files(self) -> None:
        """Delete the database (the caller holds `write()`); later transactions start empty."""
        for path in (self.snapshot_path, self.journal_path):
            path.unlink(missing_ok=True)
        self._forget()

    def close(self) -> None:
        with self._thread_lock:
            for fd in (self._journal_fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._journal_fd = self._lock_fd = None

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        with self._thread_lock:
            if self._lock_fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._lock_fd, mode)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _forget(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
        self._journal_fd = None
        self._offset = 0
        self.data = {}
        self._unparsed = {}
        self.texts = {}

    def _refresh(self) -> None:
        """Bring memory up to date with the files (under the lock)."""
        try:
            st = os.stat(self.journal_path)
        except FileNotFoundError:
            st = None
        if self._journal_fd is not None and st is not None:
            mine = os.fstat(self._journal_fd)
            # Our open descriptor pins the inode, so an equal inode number is the very same file.
            if (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino):
                if st.st_size > self._offset:
                    self.loads += 1
                    self._apply_journal(os.pread(self._journal_fd, st.st_size - self._offset, self._offset))
                return
        self._reload()

    def _reload(self) -> None:
        self._forget()
        self.loads += 1
        self.skipped_lines = 0
        self.damage = []
        self._lines = 0
        try:
            raw = self.snapshot_path.read_bytes()
        except FileNotFoundError:
            raw = None
        lost = "every lease compacted into it is lost; the journal's are kept"
        if raw == b"":
            self.damage.append(Damage(str(self.snapshot_path), None, f"the lease snapshot is empty (0 bytes): {lost}"))
        by_line = _tables_by_line(raw) if raw else None
        if by_line is not None:  # written by _compact: each table is parsed (and checked) when first used
            self._unparsed = by_line
        else:  # any other TinyDB file
            try:
                self.data = json.loads(raw) if raw else {}
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self.damage.append(
                    Damage(str(self.snapshot_path), None, f"the lease snapshot does not load ({exc}): {lost}")
                )
                self.data = {}
            if not _tables(self.data):
                self.damage.append(
                    Damage(str(self.snapshot_path), None, f"the lease snapshot is not lease tables: {lost}")
                )
                self.data = {}
        raw = raw or b""
        self._snapshot_bytes = len(raw)
        try:
            self._journal_fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        size = os.fstat(self._journal_fd).st_size
        self._apply_journal(os.pread(self._journal_fd, size, 0) if size else b"")

    def _apply_journal(self, chunk: bytes) -> None:
        """Apply the complete lines of `chunk` (journal bytes from `self._offset` on)."""
        end = chunk.rfind(b"\n") + 1
        if not end:
            return
        lines = chunk[:end].split(b"\n")[:-1]
        first = self._lines + 1
        self._lines += len(lines)
        try:
            records = json.loads(b"[" + b",".join(lines) + b"]")  # one C-level parse for the common case
            numbered = list(enumerate(records, first))
        except (json.JSONDecodeError, UnicodeDecodeError):
            numbered = []
            for number, line in enumerate(lines, first):
                try:
                    numbered.append((number, json.loads(line)))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self._skip(number, line, "does not parse")
        data = self.data
        for number, record in numbered:
            tables = record.get("t") if isinstance(record, dict) else None
            if not isinstance(tables, dict) or not _tables(tables, documents=False):
                self._skip(number, json.dumps(record).encode(), "is not a lease transaction")
                continue
            for name, docs in tables.items():
                table = data.get(name)
                if table is None:
                    table = self.table(name, create=True)
                    assert table is not None
                self.texts.pop(name, None)
                for doc_id, doc in docs.items():
                    if doc is None:
                        table.pop(doc_id, None)
                    else:
                        table[doc_id] = doc
        self._offset += end

    def _skip(self, number: int, line: bytes, why: str) -> None:
        self.skipped_lines += 1
        message = f"journal line {why} ({len(line)} bytes): the lease changes it held are lost, the other lines kept"
        self.damage.append(Damage(str(self.journal_path), number, message))

    def _sweep(self) -> None:
        """Remove temporary files of compactions killed midway, at the first transaction (under either lock: a
        compaction holds the exclusive one, so none is running)."""
        if self._swept:
            return
        for name in (self.journal_path.name, self.snapshot_path.name):
            for stray in self.directory.glob(f".{glob.escape(name)}.*.tmp"):
                stray.unlink(missing_ok=True)
        self._swept = True

    def _append(self, line: bytes) -> None:
        if self._journal_fd is None:
            self._journal_fd = os.open(self.journal_path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._offset = 0
            if self.sync:
                fsync_directory(self.directory)  # the new file's name must survive a power cut too
        fd = self._journal_fd
        if os.fstat(fd).st_size != self._offset:
            os.ftruncate(fd, self._offset)  # cut a torn line left by a writer that died mid-write
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            if self.sync:
                os.fdatasync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # else the next writer cuts the torn tail
                os.ftruncate(fd, self._offset)
            raise OperationError(f"cannot write the lease journal {self.journal_path}: {exc.strerror}") from None
        self._offset += len(line)
        self._lines += 1

    def _compact(self) -> None:
        """Write the snapshot one table a line: a table never parsed keeps its text as it was."""
        lines = []
        for name in sorted(self.data.keys() | self._unparsed.keys()):
            raw = self._unparsed.get(name) or self.texts.get(name)
            if raw is None:
                raw = self.texts[name] = json.dumps(self.data[name], separators=(",", ":")).encode()
            lines.append(json.dumps(name).encode() + b":" + raw)
        snapshot = b"{\n" + b",\n".join(lines) + b"\n}\n"
        write_atomically(self.snapshot_path, snapshot)
        self._snapshot_bytes = len(snapshot)
        tmp = self.journal_path.with_name(f".{self.journal_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.replace(tmp, self.journal_path)
        fsync_directory(self.directory)
        if self._journal_fd is not None:
            os.close(self._journal_fd)
        self._journal_fd, self._offset, self._lines = fd, 0, 0


def _tables(data: Any, documents: bool = True) -> bool:
    """Whether `data` is {table: {doc_id: document}} (a document may be None in a journal line: removed)."""
    return isinstance(data, dict) and all(
        isinstance(docs, dict)
        and all(isinstance(doc, dict) or (doc is None and not documents) for doc in docs.values())
        for docs in data.values()
    )


def _tables_by_line(raw: bytes) -> dict[str, memoryview] | None:
    """The text of each table of a snapshot written one table a line by `_compact` (views into `raw`, nothing
    copied), or None for any other JSON. json.dumps escapes every newline inside a string, so only the layout's
    own newlines end lines."""
    if not (raw.startswith(b"{\n") and raw.endswith(b"\n}\n")):
        return None
    view = memoryview(raw)
    tables = {}
    start, end = 2, len(raw) - 3
    while start < end:
        stop = raw.find(b"\n", start, end)
        if stop < 0:  # the last table: no comma
            stop = line_end = end
        elif raw[stop - 1] == ord(","):
            line_end = stop - 1
        else:
            return None
        name_end = raw.find(b'":', start, line_end)
        if raw[start] != ord('"') or name_end < 0 or raw[name_end + 2] != ord("{") or raw[line_end - 1] != ord("}"):
            return None
        name = raw[start + 1 : name_end]
        if b"\\" in name:
            return None
        tables[name.decode()] = view[name_end + 2 : line_end]
        start = stop + 1
    return tables
