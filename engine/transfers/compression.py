"""Compression on a host's link: `COMPRESS = zstd|no` (a driver conf's, or a host's own), for slow links.

Where it is on, every stream that crosses the host's link is compressed by the `zstd` tool, on this machine and on
the host: a stream of a file's bytes, and a sparse copy's stream of extents (its data and headers; the holes never
cross anyway). The checksums stay those of the bytes before compression, so a copy verifies as it does without.
Where either end has no `zstd`, the copy goes uncompressed and says so in the VM's log (RemoteEndpoint). zstd at
its default level compresses several hundred MB/s on one core and gives up quickly on data that does not compress,
so a link of 1 Gbit/s or less is the bottleneck either way (README, Benchmarks).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence

from engine.errors import OperationError
from engine.transfers.pipes import enlarge_pipe, write_all
from engine.transfers.streams import ABORT_WAIT, CHUNK, Reader, Writer

COMPRESS_CHOICES = ("zstd", "no")  # COMPRESS = of a driver conf or a host
_COMPRESS = ["zstd", "-q", "-c"]
_DECOMPRESS = ["zstd", "-q", "-d", "-c"]


@functools.cache
def zstd_here() -> bool:
    return shutil.which("zstd") is not None


def decompressing(argv: Sequence[str]) -> list[str]:
    """A host's command that reads a stream, fed through the host's zstd (its exit status stays the command's)."""
    return ["sh", "-c", 'zstd -q -d -c | "$@"', "sh", *argv]


def compressing(argv: Sequence[str]) -> list[str]:
    """A host's command that writes a stream on stdout, compressed by the host's zstd; its stderr (the checksum of
    what it sent) passes as it is."""
    return ["sh", "-c", '"$@" | zstd -q -c', "sh", *argv]


def _start(argv: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    enlarge_pipe(proc.stdin.fileno(), CHUNK)  # type: ignore[union-attr]
    return proc


def _failure(proc: subprocess.Popen, what: str) -> OperationError:
    err = proc.stderr.read().decode(errors="replace").strip()  # type: ignore[union-attr]
    return OperationError(f"zstd could not {what}: {err or f'status {proc.returncode}'}")


class CompressedWriter(Writer):
    """Writes through this machine's zstd into a Writer whose host command decompresses (`decompressing`): a
    thread forwards zstd's output, and whatever stops it (a dropped connection) is raised by the next call."""

    def __init__(self, inner: Writer) -> None:
        self._inner = inner
        self.carrier = f"{inner.carrier}+zstd"
        self._proc = _start(_COMPRESS)
        self._error: BaseException | None = None
        self._pump = threading.Thread(target=self._forward, daemon=True)
        self._pump.start()

    def _forward(self) -> None:
        stdout = self._proc.stdout
        try:
            while data := stdout.read(CHUNK):  # type: ignore[union-attr]
                self._inner.write(data)
        except BaseException as exc:  # raised in the caller's thread, by its next write or by finish
            self._error = exc
            self._proc.kill()  # so a write blocked on a full pipe ends

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> None:
        self._raise()
        try:
            write_all(self._proc.stdin.fileno(), data)  # type: ignore[union-attr]
        except BrokenPipeError:
            self._pump.join()
            self._raise()
            raise _failure(self._proc, "compress") from None

    def finish(self) -> int:
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        self._pump.join()
        self._raise()
        if self._proc.wait() != 0:
            raise _failure(self._proc, "compress")
        stored = self._inner.finish()
        self.output = self._inner.output
        return stored

    def abort(self) -> None:
        self._proc.kill()
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        self._inner.abort()
        self._pump.join(ABORT_WAIT)
        self._proc.wait()


class DecompressedReader(Reader):
    """Reads a Reader of a host command's compressed output (`compressing`) through this machine's zstd: a thread
    feeds zstd what arrives, and what stops it (a dropped connection) is raised at the end of the chunks."""

    def __init__(self, inner: Reader) -> None:
        self._inner = inner
        self.carrier = f"{inner.carrier}+zstd"
        self.offset, self.total = inner.offset, inner.total
        self._proc = _start(_DECOMPRESS)
        self._error: BaseException | None = None
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        stdin = self._proc.stdin
        try:
            for chunk in self._inner.chunks():
                write_all(stdin.fileno(), chunk)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # zstd stopped: its status says why
        except BaseException as exc:
            self._error = exc
        finally:
            with contextlib.suppress(OSError):
                stdin.close()  # type: ignore[union-attr]

    def chunks(self) -> Iterator[bytes]:
        stdout = self._proc.stdout
        while data := stdout.read(CHUNK):  # type: ignore[union-attr]
            while len(data) < CHUNK and (more := stdout.read(CHUNK - len(data))):  # type: ignore[union-attr]
                data += more
            yield data
        self._feeder.join()
        if self._error is not None:
            raise self._error
        if self._proc.wait() != 0:
            raise _failure(self._proc, "decompress what the host sent")
        self.checksum = self._inner.checksum

    def close(self) -> None:
        self._proc.kill()
        with contextlib.suppress(Exception):  # the connection may be gone already
            self._inner.close()
        self._feeder.join(ABORT_WAIT)
        self._proc.wait()
