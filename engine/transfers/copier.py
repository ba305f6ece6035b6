"""Copying one file, verified while it copies, retried and resumed when the connection drops.

`copy_stream` moves bytes from a Reader to a Writer (any endpoints, HTTP included), checksumming them once on the
way (engine.transfers.checksums: the driver's CHECKSUM); a remote source checksums what it sent, a host checksums the
copy it stored, and all must agree. After a drop it reconnects with backoff and resumes from the size of the partial
file, which its writer checks is still the file measured and holds locked while writing (engine.transfers.endpoints:
a receiver a killed client left behind never writes it too); a resumed copy is then checked whole against the
source (an HTTP source, which keeps no checksum, is read again from its first byte, only the rest written).
`kernel_copy` is the shared file system's fast path: a reflink, else copy_file_range over the source's data
extents (holes stay holes), with a thread per side checksumming source and copy right behind it (unless the
driver says VERIFY_LOCAL_COPIES = no).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from engine.errors import ConnectionLost, GaveUp, OperationError
from engine.transfers.checksums import Checksum, InProcessChecksum, hole_checksum, new_checksum
from engine.transfers.endpoints import Endpoint, ExtentReader, ExtentWriter, LocalExtentWriter
from engine.transfers.extents import Extent, data_bytes, data_extents, from_offset, merged
from engine.transfers.job import Job
from engine.transfers.streams import CHUNK, Reader, Writer
from engine.transfers.zero_runs import StreamExtents

T = TypeVar("T")
Progress = Callable[[int, "int | None"], None]
FICLONE = 0x40049409
PIECE = 16 << 20
CORES = os.cpu_count() or 2


@dataclass(frozen=True)
class Copied:
    size: int
    checksum: str | None  # None for a reflink, which shares the source's blocks
    resumed_from: int = 0
    method: str = "stream"
    check_stored: bool = False  # the destination still checksums the file where it lies (at publish)
    data_sent: int | None = None  # of a sparse copy: the bytes of data that crossed (holes were skipped)


def local_extents(path: str) -> tuple[int, list[Extent] | None]:
    """A local file's size and its data extents, merged across small holes (None: its file system cannot say)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc.strerror}") from None
    try:
        size = os.fstat(fd).st_size
        extents = data_extents(fd, size)
    finally:
        os.close(fd)
    return size, None if extents is None else merged(extents)


class LocalExtents:
    """A sparse local file as a source of extents (ExtentReader's interface): from `offset`, an Extent before
    each extent's bytes. (Whether the file changed meanwhile is checked around every copy, in actions.)"""

    carrier = "local"

    def __init__(self, path: str, size: int, extents: list[Extent], offset: int) -> None:
        self.total, self.extents = size, extents
        self.offset = offset
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise OperationError(f"cannot read {path}: {exc.strerror}") from None

    def head(self, sent: Checksum, logical: InProcessChecksum) -> bool:
        """Feed what lies before the resume offset into the checksums: its data into `sent`, its data and its
        holes (as zeros) into `logical`."""
        fd, position = self._file.fileno(), 0
        for extent in self.extents:
            if extent.offset >= self.offset:
                break
            logical.zeros(extent.offset - position)
            for checksum in (sent, logical):
                checksum.feed(fd, extent.offset, min(extent.end, self.offset) - extent.offset)
            position = min(extent.end, self.offset)
        logical.zeros(self.offset - position)
        return True

    def pieces(self) -> Iterator[Extent | bytes]:
        fd = self._file.fileno()
        for extent in from_offset(self.extents, self.offset):
            yield extent
            position = extent.offset
            while position < extent.end:
                data = os.pread(fd, min(CHUNK, extent.end - position), position)
                if not data:
                    raise OperationError(f"the source shrank while copying (at byte {position})")
                yield data
                position += len(data)

    def close(self) -> None:
        self._file.close()


def copy_extents(
    job: Job,
    open_source: Callable[[int], LocalExtents | ExtentReader | StreamExtents | None],
    dest: Endpoint,
    tmp: str,
    progress: Progress,
    algorithm: str,
    source_checksum: Callable[[], str | None] | None,
    reset_source: Callable[[], None] = lambda: None,
    resume_partial: bool = False,
) -> Copied | None:
    """Copy a sparse file's data extents into `tmp` on dest, holes skipped, verified end to end: dest checksums
    the extents it stored, read back, against what was sent, and the copy's checksum is the file's logical
    content's (holes as zeros, computed without reading them). After a dropped connection it resumes from the
    size the copy had reached (so does the first attempt with `resume_partial`: a run resumed after the service
    stopped); a resumed copy from a host or a stream, whose earlier extents are not known here, is then checked
    whole against the source (`source_checksum` None: it keeps none, so its head is read again, as copy_stream
    does). None when the source cannot send extents or dest cannot take them."""

    def once(attempt: int) -> Copied | None:
        source: LocalExtents | ExtentReader | StreamExtents | None = None
        writer: ExtentWriter | LocalExtentWriter | None = None
        sent, logical = new_checksum(algorithm), hole_checksum(algorithm)
        try:
            part = dest.partial(tmp) if (attempt > 1 or resume_partial) else None
            offset = part.size if part else 0
            source = open_source(offset if source_checksum is not None else 0)
            if source is not None:
                writer = dest.open_extent_writer(tmp, part if offset else None, source.total - offset, algorithm)
            if source is None or writer is None:
                return None
            carriers = f"{source.carrier} to {writer.carrier}"
            if offset:
                job.log(f"resuming at byte {offset}")
            # What lies before `offset` is the partial file's: a local source feeds it to both checksums from the
            # file; a source read from an earlier byte (a head read again; an HTTP server that would not resume)
            # feeds it to `logical` as it passes, and only the rest is sent.
            head = isinstance(source, LocalExtents) and source.head(sent, logical)
            position = source.offset
            for piece in source.pieces():
                job.check_cancel()
                if isinstance(piece, Extent):
                    logical.zeros(piece.offset - position)
                    if piece.length and piece.end > offset:  # an empty one only says how far a stream has come
                        start = max(piece.offset, offset)
                        writer.extent(start, piece.end - start)
                    position = piece.offset
                    progress(max(position, offset), source.total)
                    continue
                logical.update(piece)
                if position + len(piece) > offset:
                    new = piece if position >= offset else piece[offset - position :]
                    sent.update(new)
                    writer.write(new)
                position += len(piece)
                progress(max(position, offset), source.total)
            logical.zeros(source.total - position)
            whole = head or offset == 0
            checked = source.extents if whole else from_offset(source.extents, offset)
            stored, stored_sum = writer.finish(source.total, checked)
            writer = None
            progress(source.total, source.total)
            if stored != source.total:
                raise OperationError(f"size mismatch: stored {stored} bytes, copied {source.total}")
            if stored_sum != sent.value():
                raise OperationError(f"checksum mismatch: sent {sent.value()}, stored {stored_sum}")
            if whole:
                value = logical.value()
            else:  # the head came from an earlier attempt: the whole copy against the whole source
                whole_source = logical.value if source.offset == 0 or source_checksum is None else source_checksum
                value = _whole_checked(dest, tmp, algorithm, whole_source)
            sent_data = data_bytes(source.extents)
            return Copied(
                source.total,
                value,
                resumed_from=offset,
                method=f"extents, {carriers}",
                data_sent=sent_data if sent_data + offset < source.total else None,
            )
        finally:
            _close(None, writer, sent)
            logical.close()
            if source is not None:
                with contextlib.suppress(Exception):  # a dropped connection may have ended it already
                    source.close()

    return _retried(job, dest, reset_source, once)


def _retried(job: Job, dest: Endpoint, reset_source: Callable[[], None], once: Callable[[int], T]) -> T:
    """`once(attempt)` until it succeeds; after a dropped connection, reconnect with backoff and try again, up to
    the job's retry policy (each attempt releases what it opened, whatever happens)."""
    attempt = 1
    while True:
        try:
            return once(attempt)
        except ConnectionLost as exc:
            if attempt >= job.retry.attempts:
                raise GaveUp.after(exc, attempt) from None
            dest.reset()
            reset_source()
            job.wait_before_retry(attempt, str(exc))
            attempt += 1


def _whole_checked(dest: Endpoint, tmp: str, algorithm: str, source_checksum: Callable[[], str | None]) -> str:
    """A resumed copy whose head came from an earlier attempt: the whole copy against the whole source."""
    copy, source = dest.checksum(tmp, algorithm), source_checksum()
    if source is not None and copy != source:
        raise OperationError(f"checksum mismatch: source {source}, copy {copy}")
    return copy


def copy_stream(
    job: Job,
    open_reader: Callable[[int], Reader],
    dest: Endpoint,
    tmp: str,
    progress: Progress,
    algorithm: str,
    source_checksum: Callable[[], str | None] | None,
    reset_source: Callable[[], None] = lambda: None,
    resume_partial: bool = False,
) -> Copied:
    """Copy into `tmp` on dest, verified by an `algorithm` checksum; raise OperationError (or Cancelled) when it
    cannot be done. `source_checksum` None: the source keeps no checksum (HTTP), so a resumed copy reads the
    source's head again, into the checksum only, and the whole copy is checked against it."""

    def once(attempt: int) -> Copied:
        reader: Reader | None = None
        writer: Writer | None = None
        checksum: Checksum | None = None
        try:
            part = dest.partial(tmp) if (attempt > 1 or resume_partial) else None
            offset = part.size if part else 0
            reader = open_reader(offset if source_checksum is not None else 0)
            writer = dest.open_writer(tmp, part if offset else None, reader.total)
            checksum = new_checksum(algorithm)
            done = reader.offset  # bytes before `offset` (a head read again) are checksummed, not written
            progress(max(done, offset), reader.total)
            for chunk in reader.chunks():
                job.check_cancel()
                checksum.update(chunk)
                if done + len(chunk) > offset:
                    writer.write(chunk if done >= offset else chunk[offset - done :])
                done += len(chunk)
                progress(max(done, offset), reader.total)
            carriers = f"{reader.carrier} to {writer.carrier}"
            size, writer = writer.finish(), None
            passed = checksum.value()
            copied = _verified(passed, algorithm, reader, size, done, offset, dest, tmp, source_checksum)
            return dataclasses.replace(copied, method=f"stream, {carriers}")
        except BaseException:
            _close(reader, writer, checksum)
            raise

    return _retried(job, dest, reset_source, once)


def _close(
    reader: Reader | None,
    writer: Writer | ExtentWriter | LocalExtentWriter | None,
    checksum: Checksum | None,
) -> None:
    ends = (reader.close if reader else None, writer.abort if writer else None, checksum.close if checksum else None)
    for close in ends:
        if close is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already: nothing left to release
                close()


def _verified(
    passed: str,
    algorithm: str,
    reader: Reader,
    size: int,
    done: int,
    offset: int,
    dest: Endpoint,
    tmp: str,
    source_checksum: Callable[[], str | None] | None,
) -> Copied:
    """Check the copy: sizes, what the source sent, and the whole file against the source's checksum (`passed`,
    when the source was read from its first byte). A host checks the file it stored when it publishes it
    (`Copied.check_stored`), which also restores a trailing hole."""
    if reader.total is not None and done != reader.total:
        raise OperationError(f"the source changed while copying: read {done} of {reader.total} bytes")
    if reader.checksum is not None and reader.checksum != passed:
        raise OperationError(f"checksum mismatch: sent {reader.checksum}, received {passed}")
    if size > done or (size < done and not dest.checks_stored):
        raise OperationError(f"size mismatch: stored {size} bytes, copied {done}")
    # A resumed copy's head came from an earlier attempt, so then whole files are compared.
    source = passed if reader.offset == 0 or source_checksum is None else source_checksum()
    if dest.checks_stored:
        return Copied(done, source, resumed_from=offset, check_stored=True)
    whole = passed if offset == 0 else dest.checksum(tmp, algorithm)
    if source is not None and whole != source:
        raise OperationError(f"checksum mismatch: source {source}, copy {whole}")
    return Copied(done, whole, resumed_from=offset)


def kernel_copy(job: Job, source: str, dst: BinaryIO, progress: Progress, algorithm: str | None) -> Copied:
    """Copy a local file into the new file `dst` within this machine's file systems, keeping holes; with an
    algorithm, checksum both sides (None: trust the kernel, as cp does)."""
    with open(source, "rb") as src, dst:
        size = os.fstat(src.fileno()).st_size
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            progress(size, size)
            return Copied(size, None, method="reflink")
        except OSError:
            pass
        verifier = _Verifier(src.fileno(), dst.fileno(), algorithm) if algorithm else None
        try:
            for extent in data_extents(src.fileno(), size) or [Extent(0, size)]:
                position, end = extent.offset, extent.end
                while position < end:
                    job.check_cancel()
                    with _COPYING:
                        count = _copy_range(src.fileno(), dst.fileno(), position, min(PIECE, end - position))
                    if verifier is not None:
                        verifier.check(position, count)
                    position += count
                    progress(position, size)
            dst.truncate(size)
        finally:
            sums = verifier.finish() if verifier is not None else None
        progress(size, size)
    if sums is None:
        return Copied(size, None, method="copy_file_range, not verified")
    if sums[0] != sums[1]:
        raise OperationError(f"checksum mismatch: source {sums[0]}, copy {sums[1]}")
    return Copied(size, sums[0], method="copy_file_range")


def _copy_range(fd_in: int, fd_out: int, offset: int, count: int) -> int:
    try:
        copied = os.copy_file_range(fd_in, fd_out, count, offset, offset)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
        copied = 0
    if copied == 0:  # not supported between these file systems: copy through memory
        data = os.pread(fd_in, count, offset)
        if not data:
            raise OperationError(f"the source shrank while copying (at byte {offset})")
        copied = os.pwrite(fd_out, data, offset)
    return copied


class _Verifier:
    """Checksums each copied range of the source and of the copy, right behind the copier, a thread per side."""

    def __init__(self, fd_in: int, fd_out: int, algorithm: str) -> None:
        self._sides = [_Hasher(fd_in, algorithm), _Hasher(fd_out, algorithm)]

    def check(self, offset: int, count: int) -> None:
        for side in self._sides:
            side.queue.put((offset, count))

    def finish(self) -> tuple[str, str]:
        """Both sides' checksums; each side is ended, also when the other failed."""
        values, errors = [], []
        for side in self._sides:
            try:
                values.append(side.finish())
            except OperationError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return values[0], values[1]


# Hashers take turns: 40 threads hashing at once starve the console's UI thread of the GIL (README, Benchmarks);
# the cores limit hashing throughput anyway.
_HASHING = threading.BoundedSemaphore(CORES)
# So do the kernel's copies, a piece at a time: 20 copy threads runnable at nice 19 left an engine thread that
# held the GIL waiting its turn behind them, and the UI thread behind it.
_COPYING = threading.BoundedSemaphore(CORES)


class _Hasher:
    def __init__(self, fd: int, algorithm: str) -> None:
        self.queue: queue.Queue[tuple[int, int] | None] = queue.Queue(maxsize=8)
        self._checksum = new_checksum(algorithm)
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, args=(fd,), daemon=True)
        self._thread.start()

    def _run(self, fd: int) -> None:
        while (item := self.queue.get()) is not None:
            if self._error is None:
                with _HASHING:
                    try:
                        self._checksum.feed(fd, item[0], item[1])
                    except OSError as exc:
                        self._error = exc

    def finish(self) -> str:
        self.queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._checksum.close()
            raise OperationError(f"cannot verify the copy: {self._error}")
        return self._checksum.value()
