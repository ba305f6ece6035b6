"""Pipes to helper processes (ssh, checksum tools) made larger than Linux's 64 KiB default."""

from __future__ import annotations

import contextlib
import fcntl

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Make the pipe `fd` hold `size` bytes, where the system allows: with a MiB in flight, writer and reader
    wake once per MiB rather than per 64 KiB."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)
