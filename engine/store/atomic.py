"""Placing files whole: written under a temporary name in the same directory, synced, then renamed.

A reader sees the old file or the new one, never half of one; a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Replace `path` with `data`, complete or not at all, and durable once this returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: str | Path) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
