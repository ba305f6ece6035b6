"""Writing to helper processes (ssh, checksum tools) through pipes: larger than Linux's 64 KiB default, and
written whole."""

from __future__ import annotations

import contextlib
import fcntl
import os

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Make the pipe `fd` hold `size` bytes, where the system allows: with a MiB in flight, writer and reader
    wake once per MiB rather than per 64 KiB."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data`: a write that a signal interrupts after some bytes returns short (a terminal resize in
    the console did, and the rest of the chunk was lost)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
