"""What the front end remembers of images' checksums, so a cache hit costs no read of the image here.

A front-end file's checksum is remembered with the file's identity: device, inode, size, mtime and ctime in
nanoseconds. Any change means it is read again. ctime is in it because a file rewritten in place and given its old
mtime back (`touch -d`, os.utime) keeps its size and mtime but not its ctime, which no program can set. The limit:
a rewrite that keeps the size and lands within the same ctime tick as the checksum was taken (the kernel's clock
tick, a few milliseconds) is not noticed; the copy into the cache still checksums what it read, so such a change
is caught when the image is next fetched, not when an entry is copied out.

An HTTP source's checksum is remembered with the validators its server sent (ETag, Last-Modified,
Content-Length); a server that sends none of them is fetched every time.

Stored in `<home>/cache/checksums.json`, written whole (engine.store.atomic), under a lock file beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

from engine.errors import OperationError
from engine.home import Home
from engine.store.atomic import write_atomically
from engine.transfers.cache.layout import Validators
from engine.transfers.checksums import new_checksum

MEMO_NAME = "checksums.json"
MAX_RECORDS = 4096  # the oldest are forgotten past this: a front end has a few hundred images at most


def file_identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class ChecksumMemo:
    """The checksums of front-end files and HTTP sources this home has seen."""

    def __init__(self, home: Home) -> None:
        self.path = Path(home.cache) / MEMO_NAME

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, list]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                records = json.loads(self.path.read_text())
                if not isinstance(records, dict):
                    records = {}
            except (OSError, ValueError):
                records = {}  # a memo lost or damaged is only read again: it holds nothing that is not derived
            before = dict(records)
            yield records
            if records != before:
                while len(records) > MAX_RECORDS:
                    records.pop(next(iter(records)))
                write_atomically(self.path, json.dumps(records, sort_keys=False))

    def file_checksum(self, path: str, algorithm: str) -> tuple[str, int]:
        """The checksum and size of the front-end file `path`, read only when it is not remembered with the
        file's present identity."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise OperationError(f"cannot read {path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            identity = file_identity(st)
            name = f"file:{algorithm}:{os.path.abspath(path)}"
            with self._locked() as records:
                known = records.get(name)
            if isinstance(known, list) and len(known) == 2 and known[0] == identity:
                return str(known[1]), st.st_size
            checksum = new_checksum(algorithm)
            try:
                checksum.feed(fd, 0, st.st_size)
                value = checksum.value()
            except OSError as exc:
                raise OperationError(f"cannot read {path}: {exc.strerror}") from None
            finally:
                checksum.close()
            if file_identity(os.fstat(fd)) == identity:  # written while read: not worth remembering
                with self._locked() as records:
                    records.pop(name, None)
                    records[name] = [identity, value]
            return value, st.st_size
        finally:
            os.close(fd)

    def known_file_checksum(self, path: str, algorithm: str) -> str | None:
        """The checksum remembered for the front-end file `path` as it is now, without reading it (a dry run)."""
        try:
            identity = file_identity(os.stat(path))
        except OSError:
            return None
        with self._locked() as records:
            known = records.get(f"file:{algorithm}:{os.path.abspath(path)}")
        return str(known[1]) if isinstance(known, list) and len(known) == 2 and known[0] == identity else None

    def forget_file(self, path: str, algorithm: str) -> None:
        with self._locked() as records:
            records.pop(f"file:{algorithm}:{os.path.abspath(path)}", None)

    def url_checksum(self, url: str, validators: Validators, algorithm: str) -> str | None:
        """The checksum remembered for `url` served with these validators, if any."""
        if not validators.known():
            return None
        with self._locked() as records:
            known = records.get(f"url:{algorithm}:{url}")
        if isinstance(known, list) and len(known) == 2 and known[0] == list(astuple(validators)):
            return str(known[1])
        return None

    def remember_url(self, url: str, validators: Validators, checksum: str) -> None:
        if not validators.known():
            return
        name = f"url:{checksum.partition(':')[0]}:{url}"
        with self._locked() as records:
            records.pop(name, None)
            records[name] = [list(astuple(validators)), checksum]
