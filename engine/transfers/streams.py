"""The byte streams a copy moves: what every endpoint reads from and writes to, whatever carries the bytes."""

from __future__ import annotations

from collections.abc import Iterator

CHUNK = 1 << 20
ABORT_WAIT = 5.0  # seconds an aborted write waits for the host's command to end


class Reader:
    """A byte stream from `offset` to the end; `checksum` (of what was sent) is known after the last chunk if the
    far side computes it."""

    offset = 0
    total: int | None = None
    checksum: str | None = None
    carrier = "local"  # what carries the bytes: local, paramiko, openssh or http

    def chunks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Writer:
    carrier = "local"
    output = ""  # what the receiving command printed, once finished

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> int:
        """Complete the write; the file's size."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError
