"""Endpoints: the file operations an action needs, on this machine or on a host over SSH.

A `LocalEndpoint` works on this machine's files (the front end, and hosts sharing its file system). A
`RemoteEndpoint` runs quoted commands over the host's pooled SSH connection: a few constant `sh -c` scripts take
paths only as positional arguments, so no path is ever spliced into shell text. Streams are read and written in
1 MiB chunks; a remote reader checksums what it sends and a copy stored on a host is checksummed there
(engine.transfers.checksums), so a copy is verified on both ends while the source is read once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from engine.errors import Cancelled, ConnectionLost, OperationError
from engine.language.numbers import whole_number
from engine.transfers.checksums import SHELL_FUNCTIONS, from_tool_output, new_checksum
from engine.transfers.compression import CompressedWriter, DecompressedReader, compressing, decompressing, zstd_here
from engine.transfers.extents import Extent
from engine.transfers.pipes import write_all
from engine.transfers.ssh import CommandResult, connect, open_channel, run_remote, ssh_target, with_sbin
from engine.transfers.streams import ABORT_WAIT, CHUNK, Reader, Writer

if TYPE_CHECKING:
    import paramiko

    from engine.transfers.hosts import Host
    from engine.transfers.ssh import SshPool


def channel_errors() -> tuple[type[BaseException], ...]:
    """What a dropped SSH channel raises (its window updates fail with EOFError too); paramiko is imported only
    where SSH is used, so the CLI stays fast."""
    from paramiko import SSHException

    return (OSError, EOFError, SSHException)


_ZEROS = bytes(CHUNK)

# Every script that writes on a host takes the host's VM directory as $1 and first calls `inside "$1" DIR...` for
# the directories it writes in: each, with its symbolic links resolved (missing parts kept as written), must be the
# VM directory or lie under it (realpath prints it relative to the VM directory then), else the script says so
# and exits 4. So a link planted under the VM directory (`7 -> /elsewhere`) never leads a write or a delete out of
# it; the VM directory's own links are the admin's. `${2%/*}/` is $2's directory. One realpath, no dirname: each
# process started costs a host under load a few milliseconds before the first byte lands.
INSIDE = (
    'inside() { v=$1; shift; r=$(realpath -m --relative-base="$v" -- "$@") || exit 4; case "$r" in /*|*"\n"/*) '
    'echo "$* leads outside the VM directory $v (a symbolic link); refusing to write there" >&2; exit 4;; '
    "esac; }; "
)
_MAKEDIRS = INSIDE + 'inside "$1" "$2" && mkdir -p -- "$2"'
_RENAME = INSIDE + 'inside "$1" "${2%/*}/" "${3%/*}/" && mv -T -- "$2" "$3"'
_REMOVE = INSIDE + 'inside "$1" "${2%/*}/" && rm -rf -- "$2"'
_SYMLINK = INSIDE + 'inside "$1" "${3%/*}/" && ln -sT -- "$2" "$3"'
# A file of $3 bytes with no data blocks at $2, created afresh (O_EXCL, never through a link).
_SPARSE = INSIDE + (
    'inside "$1" "${2%/*}/" && rm -f -- "$2" && dd if=/dev/null of="$2" bs=1 seek="$3" oflag=nofollow conv=excl '
    "status=none"
)
# What a host's receiver checks is unchanged in a partial file before resuming it: size, mtime, ctime, inode.
_STAT_FORMAT = "%s %.9Y %.9Z %i"
# The start of both receivers: take the partial file $2 (inside the VM directory $1, its directory made) as fd 3,
# locked with flock, so two receivers never write one file: another's lock held is exit 6, which the copier
# retries after measuring the file again (a receiver a killed client started late could otherwise remove and make
# again a file another had measured and was resuming, leaving its head a hole). $4 empty: from byte 0, a stale
# file is removed (unless another receiver holds it) and made afresh (O_EXCL). Else resume at byte $3 a plain
# file with no other name whose `_STAT_FORMAT` is still $4, the file measured. fd 3 must be the file named $2.
# Nothing is ever opened for writing through a link (dd oflag=nofollow, conv=excl).
_OPEN_PART = INSIDE + (
    'set -e; d="${2%/*}/"; inside "$1" "$d"; [ -d "$d" ] || mkdir -p -- "$d"; '
    'p=$2; busy() { echo "$p: $*; will not write it" >&2; exit 6; }; '
    'lock() { flock -n 3 && return 0 || s=$?; [ "$s" = 1 ] && busy another copy is writing it; '
    'echo "flock (util-linux) is needed on this host to write $p" >&2; exit 4; }; '
    'if [ -z "$4" ]; then if [ -L "$2" ]; then rm -f -- "$2"; elif [ -e "$2" ]; then '
    'command exec 3<"$2" || busy it vanished; lock; rm -f -- "$2"; exec 3<&-; fi; '
    'dd if=/dev/null of="$2" oflag=nofollow conv=excl status=none || busy another copy made it first; '
    'command exec 3<"$2" || busy it vanished; lock; '
    'elif [ -L "$2" ] || [ ! -f "$2" ] || [ "$(stat -c %h -- "$2")" != 1 ]; then '
    'echo "will not resume $2: it is a symbolic or a hard link" >&2; exit 4; '
    f'else command exec 3<"$2" || busy it vanished; lock; [ "$(stat -L -c \'{_STAT_FORMAT}\' /dev/fd/3)" = "$4" ] || '
    "busy it changed since it was measured; fi; "
    '[ ! -L "$2" ] && [ "$(stat -c %i -- "$2")" = "$(stat -L -c %i /dev/fd/3)" ] || busy it was replaced; '
)
# Receive a stream into $2 from byte $3 (see _OPEN_PART), leaving holes where whole 64 KiB blocks are zero; print
# the file's size. Blocks of the size of sshd's pipe to us: with larger blocks sshd stalls while dd writes
# (README, Benchmarks).
_RECEIVE = _OPEN_PART + (
    'dd of="$2" bs=64K seek="$3" oflag=seek_bytes,nofollow conv=sparse,notrunc iflag=fullblock status=none; '
    "stat -L -c %s /dev/fd/3"
)
# Receive a sparse copy's extents into $2 from byte $3 (see _OPEN_PART): each extent is a line `OFFSET LENGTH`
# and its bytes, written in place (zero blocks left as holes); a line `end SIZE` sets the file's size (a stream
# that ends before it is a dropped copy: the script stops there, so a session that outlives its connection cannot
# cut the file), then the lines `OFFSET LENGTH` of every extent of the copy are read back from the stored file
# into the checksum. Prints the size, then the checksum. Only data is read back: reading the holes too would cost
# a host's cksum seconds for a large, mostly empty image.
_RECEIVE_EXTENTS = _OPEN_PART + (
    'while :; do read -r off len || exit 1; [ "$off" = end ] && break; '
    'dd of="$2" bs=64K seek="$off" oflag=seek_bytes,nofollow conv=sparse,notrunc iflag=fullblock,count_bytes '
    'count="$len" status=none; done; dd if=/dev/null of="$2" bs=1 seek="$len" oflag=nofollow status=none; '
    "stat -L -c %s /dev/fd/3; "
    'while read -r off len; do dd if=/dev/fd/3 bs=64K skip="$off" count="$len" iflag=skip_bytes,count_bytes '
    "status=none; done | checksum"
)
# The scripts below that checksum call the shell function `checksum` (engine.transfers.checksums.SHELL_FUNCTIONS).
# Publish a received copy: grow $2 to $4 bytes (a trailing hole), checksum it where it lies, and rename it to $3
# only if the checksum is $5 (when given); print the checksum either way (exit 3 on a mismatch).
_PUBLISH = INSIDE + (
    'set -e; inside "$1" "${2%/*}/" "${3%/*}/"; '
    'if [ -L "$2" ]; then echo "$2 is a symbolic link" >&2; exit 4; fi; '
    'truncate -s ">$4" -- "$2"; h=$(checksum < "$2"); h=${h%% *}; '
    'if [ -n "$5" ] && [ "$h" != "$5" ]; then echo "$h"; exit 3; fi; mv -T -- "$2" "$3"; echo "$h"'
)
# Send the data extents of $1 from byte $2 on stdout, framed as _RECEIVE_EXTENTS reads them (`OFFSET LENGTH` and
# the bytes of each extent, holes under 1 MiB sent as zeros, then `end SIZE`), and the checksum of that framed
# stream on stderr; exit 5 where the host has no perl (the caller streams the file instead). Perl finds the
# extents (lseek's SEEK_DATA = 3 and SEEK_HOLE = 4 on Linux; coreutils has no tool for it); where the file system
# cannot say, the rest of the file is one extent. The perl program is $0.
_EXTENTS_PERL = r"""
my ($path, $pos) = @ARGV; my $gap = 1 << 20; my @x;
open(my $f, "<", $path) or die "cannot read $path: $!\n"; binmode $f; my $size = -s $f;
while ($pos < $size) {
  my $s = sysseek($f, $pos, 3);
  if (!defined $s) { last if $!{ENXIO}; push @x, [$pos, $size]; last }
  my $e = sysseek($f, $s, 4); $e = $size if !defined $e || $e > $size;
  if (@x && $s - $x[-1][1] < $gap) { $x[-1][1] = $e } else { push @x, [$s + 0, $e] }
  $pos = $e;
}
sub out { my $o = 0;
  while ($o < length $_[0]) { $o += syswrite(STDOUT, $_[0], length($_[0]) - $o, $o) // die "write: $!\n" } }
for my $x (@x) {
  my ($s, $e) = @$x; out("$s " . ($e - $s) . "\n"); sysseek($f, $s, 0);
  while ($s < $e) { my $n = sysread($f, my $b, $e - $s < 1048576 ? $e - $s : 1048576);
    die "$path ended early\n" unless $n; out($b); $s += $n }
}
out("end $size\n");
"""
_SEND_EXTENTS = (
    'command -v perl >/dev/null || exit 5; { perl -e "$0" -- "$1" "$2" | tee /dev/fd/3 | checksum >&2; } 3>&1'
)
# Send $1 from byte offset $2 on stdout, and its checksum on stderr.
_SEND = '{ tail -c "+$(($2 + 1))" -- "$1" | tee /dev/fd/3 | checksum >&2; } 3>&1'
# The checksum of the file $1.
_CHECKSUM_FILE = 'checksum < "$1"'
# Describe $1: type, size and (for a link) target, one line.
_KIND = 'if [ -L "$1" ]; then echo "l 0 $(readlink -- "$1")"; elif [ -d "$1" ]; then echo d 0; ' + (
    'elif [ -e "$1" ]; then echo "f $(stat -c %s -- "$1")"; else echo n 0; fi'
)
# List the tree under $1: type, size and relative path of each entry, NUL-terminated.
_TREE = "cd -- \"$1\" && find . -mindepth 1 -printf '%y %s %P\\0'"


# What changes when a file is written (size, mtime, ctime, inode); status 3: not a file.
_IDENTITY = f'[ -f "$1" ] || exit 3; exec stat -L -c "{_STAT_FORMAT}" -- "$1"'
# A partial file as `_OPEN_PART` checks it before resuming (nothing for a link or what is not a plain file).
_PARTIAL = f'if [ -f "$1" ] && [ ! -L "$1" ]; then stat -c "{_STAT_FORMAT}" -- "$1"; fi'


@dataclass(frozen=True)
class Partial:
    """A partial copy as measured before it is resumed: its size, and what its receiver checks is unchanged (a
    host's `_STAT_FORMAT`, or the same fields of os.stat here)."""

    size: int
    identity: str


class PartChanged(ConnectionLost):
    """Another receiver holds the partial file, or it is no longer the file measured: retried like a dropped
    connection, the copy measures the file again."""


RECEIVER_BUSY = 6  # the exit status of a host's receiver refusing a partial file (`_OPEN_PART`)


@dataclass(frozen=True)
class TreeEntry:
    kind: str  # "f" file, "d" directory, "l" symbolic link
    path: str  # relative to the tree's root
    size: int


class ExtentWriter:
    """Writes a sparse copy extent by extent through a Writer into `_RECEIVE_EXTENTS`: only data crosses."""

    def __init__(self, inner: Writer, algorithm: str) -> None:
        self._inner = inner
        self._algorithm = algorithm
        self.carrier = inner.carrier

    def extent(self, offset: int, length: int) -> None:
        """The next `length` bytes written go to `offset`."""
        self._inner.write(f"{offset} {length}\n".encode())

    def write(self, data: bytes) -> None:
        self._inner.write(data)

    def finish(self, size: int, extents: Sequence[Extent]) -> tuple[int, str]:
        """Set the file's size; the size stored and the checksum of every extent as the host reads it back."""
        listing = "".join(f"{extent.offset} {extent.length}\n" for extent in extents)
        self._inner.write(f"end {size}\n{listing}".encode())
        stored = self._inner.finish()
        lines = self._inner.output.splitlines()
        checksum = from_tool_output(self._algorithm, lines[1] if len(lines) > 1 else "")
        if checksum is None:
            raise OperationError(f"the host gave no {self._algorithm} checksum of the copy")
        return stored, checksum

    def abort(self) -> None:
        self._inner.abort()


class ExtentReader:
    """The extents of a sparse file a host sends (`_SEND_EXTENTS`), parsed from a Reader of the framed stream:
    `pieces()` yields an Extent before each extent's bytes. The framed stream is checksummed here as it arrives
    and must equal what the host says it sent."""

    def __init__(self, inner: Reader, algorithm: str) -> None:
        self._inner = inner
        self._framed = new_checksum(algorithm)
        self.carrier = inner.carrier
        self.offset = inner.offset
        self.total = inner.total or 0
        self.extents: list[Extent] = []

    def pieces(self) -> Iterator[Extent | bytes]:
        chunks = self._inner.chunks()
        buffer = bytearray()

        def fill() -> None:
            chunk = next(chunks, None)
            if chunk is None:
                raise ConnectionLost("the host's stream of extents ended early")
            self._framed.update(chunk)
            buffer.extend(chunk)

        while True:
            while (newline := buffer.find(b"\n")) < 0:
                fill()
            words = bytes(buffer[:newline]).split()
            del buffer[: newline + 1]
            if len(words) != 2 or not (words[0] == b"end" or words[0].isdigit()) or not words[1].isdigit():
                raise OperationError(f"the host sent a bad extent header: {b' '.join(words)[:40]!r}")
            if words[0] == b"end":
                self.total = int(words[1])
                break
            extent = Extent(int(words[0]), int(words[1]))
            self.extents.append(extent)
            yield extent
            left = extent.length
            while left:
                if not buffer:
                    fill()
                take = min(len(buffer), left, CHUNK)
                yield bytes(buffer[:take])
                del buffer[:take]
                left -= take
        for chunk in chunks:  # nothing more is sent; reading on lets the reader collect the host's checksum
            self._framed.update(chunk)
        if self._inner.checksum != self._framed.value():
            raise OperationError(
                f"checksum mismatch: the host sent {self._inner.checksum}, {self._framed.value()} arrived"
            )

    def close(self) -> None:
        self._inner.close()
        self._framed.close()


class LocalExtentWriter:
    """Writes a sparse copy here extent by extent (ExtentWriter's interface): holes are never written."""

    carrier = "local"

    def __init__(self, path: str, resume: Partial | None, algorithm: str) -> None:
        self._writer = LocalWriter(path, resume)
        self._fd = self._writer.fd
        self._algorithm = algorithm
        self._position = resume.size if resume else 0

    def extent(self, offset: int, length: int) -> None:
        self._position = offset

    def write(self, data: bytes) -> None:
        os.lseek(self._fd, self._position, os.SEEK_SET)
        write_all(self._fd, data)
        self._position += len(data)

    def finish(self, size: int, extents: Sequence[Extent]) -> tuple[int, str]:
        """Set the size; the checksum of the extents as stored, read back."""
        os.ftruncate(self._fd, size)
        stored = new_checksum(self._algorithm)
        try:
            for extent in extents:
                stored.feed(self._fd, extent.offset, extent.length)
            return os.fstat(self._fd).st_size, stored.value()
        finally:
            stored.close()
            self._writer.abort()

    def abort(self) -> None:
        self._writer.abort()


class Endpoint:
    """File operations on one host."""

    host: Host
    local = False
    checks_stored = False  # whether a copy written here is checksummed again where it lies (remote: on the host)

    def kind(self, path: str) -> tuple[str | None, int]:
        """("f", size), ("d", 0), ("l", 0) or (None, 0) when missing."""
        raise NotImplementedError

    def identity(self, path: str) -> tuple[object, ...]:
        """What changes when the file at `path` is written: its size, mtime and ctime (nanoseconds), inode."""
        raise NotImplementedError

    def partial(self, path: str) -> Partial | None:
        """The partial copy at `path` to resume (None: there is none, or it is not a plain file)."""
        raise NotImplementedError

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def rename(self, src: str, dst: str) -> None:
        raise NotImplementedError

    def remove(self, path: str) -> None:
        """Remove a file or a whole tree; a missing path is fine."""
        raise NotImplementedError

    def remove_afresh(self, path: str) -> None:
        """`remove` over a connection of its own, not the pooled one (which may be dead without knowing it yet)."""
        self.remove(path)

    def symlink(self, target: str, path: str) -> None:
        raise NotImplementedError

    def readlink(self, path: str) -> str:
        raise NotImplementedError

    def tree(self, path: str) -> list[TreeEntry]:
        raise NotImplementedError

    def sparse_file(self, path: str, size: int) -> None:
        """An exact-size file with no data blocks."""
        raise NotImplementedError

    def run(self, argv: Sequence[str], cancel: Callable[[], bool], on_line: Callable[[str], None]) -> None:
        """Run a command (sbin on PATH); raise OperationError with its stderr when it fails."""
        raise NotImplementedError

    def open_reader(self, path: str, offset: int, algorithm: str) -> Reader:
        """A reader from `offset`; a remote one reports the `algorithm` checksum of what it sent."""
        raise NotImplementedError

    def open_extent_reader(self, path: str, offset: int, algorithm: str) -> ExtentReader | None:
        """The data extents of a file here from `offset`, where the endpoint can send them (None: stream it)."""
        return None

    def open_extent_writer(
        self, path: str, resume: Partial | None, data: int, algorithm: str
    ) -> ExtentWriter | LocalExtentWriter | None:
        """A writer of a sparse copy's extents (`data` bytes of them still to send), where the endpoint takes
        them (None: stream every byte); from byte 0, or resuming as `open_writer` does."""
        return None

    def open_writer(self, path: str, resume: Partial | None, total: int | None) -> Writer:
        """Write a new file, or resume the partial file measured as `resume` from its end (PartChanged if it
        changed since, or another writer holds it); `total`: the final size, when known. `finish` returns the
        file's size. A remote writer also makes the file's directory."""
        raise NotImplementedError

    def publish(self, tmp: str, final: str, size: int, algorithm: str, expected: str | None) -> str | None:
        """Rename a finished copy into place. Where the endpoint checks copies (`checks_stored`), first restore
        its size (a trailing hole) and checksum it where it lies, refusing it unless the checksum is `expected`
        (when given); returns that checksum."""
        self.rename(tmp, final)
        return None

    def checksum(self, path: str, algorithm: str) -> str:
        raise NotImplementedError

    def free_bytes(self, path: str) -> int:
        raise NotImplementedError

    def execute(self, argv: Sequence[str], cancel: Callable[[], bool] = lambda: False) -> CommandResult:
        """Run argv where the endpoint's files are (no sbin added); its status and output, whatever the status."""
        raise NotImplementedError

    def hold(self, argv: Sequence[str], cancel: Callable[[], bool]) -> Held:
        """Start argv and wait until it prints its header (everything up to a NUL byte); it keeps running, holding
        what it holds (a lock), until the Held is released or this process dies (its stdin closes)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Drop a broken connection so the next call reconnects."""


class Held:
    """A command that printed its header and now waits for its stdin to close (see Endpoint.hold)."""

    header = ""

    def alive(self) -> bool:
        """Whether it still holds what it held (its process, or its connection, has not ended)."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _header_failure(status: int | None, err: bytes, argv: Sequence[str]) -> OperationError:
    text = err.decode(errors="replace").strip().splitlines()[-3:]
    return OperationError(f"{argv[0]} exited with status {status}" + (": " + " / ".join(text) if text else ""))


class LocalHeld(Held):
    def __init__(self, argv: Sequence[str], cancel: Callable[[], bool]) -> None:
        import select

        try:
            self._proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise OperationError(f"cannot run {argv[0]}: {exc.strerror}") from None
        out = bytearray()
        fd = self._proc.stdout.fileno()  # type: ignore[union-attr]
        try:
            while b"\0" not in out:
                if cancel():
                    raise Cancelled("cancelled")
                if select.select([fd], [], [], 0.2)[0]:
                    data = os.read(fd, 65536)
                    if not data:
                        self._proc.wait()
                        raise _header_failure(self._proc.returncode, self._proc.stderr.read(), argv)  # type: ignore[union-attr]
                    out += data
        except BaseException:
            self.release()
            raise
        self.header = out.split(b"\0", 1)[0].decode(errors="replace")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.stdin.close()  # type: ignore[union-attr]
        try:
            self._proc.wait(ABORT_WAIT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            stream.close()  # type: ignore[union-attr]


class RemoteHeld(Held):
    def __init__(self, transport: paramiko.Transport, argv: Sequence[str], cancel: Callable[[], bool]) -> None:
        import select

        self._transport = transport
        self._channel = open_channel(transport, argv)
        out = bytearray()
        try:
            while b"\0" not in out:
                if cancel():
                    raise Cancelled("cancelled")
                select.select([self._channel], [], [], 0.2)
                if self._channel.recv_ready():
                    data = self._channel.recv(65536)
                    out += data
                    if data:
                        continue
                if self._channel.exit_status_ready() and not self._channel.recv_ready():
                    raise _header_failure(self._channel.recv_exit_status(), drain_stderr(self._channel), argv)
                if not transport.is_active():
                    raise ConnectionLost("the connection dropped while waiting for a remote command")
        except channel_errors() as exc:
            self.release()
            raise ConnectionLost(f"the connection dropped while waiting for a remote command: {exc}") from None
        except BaseException:
            self.release()
            raise
        self.header = out.split(b"\0", 1)[0].decode(errors="replace")

    def alive(self) -> bool:
        return self._transport.is_active() and not self._channel.closed and not self._channel.exit_status_ready()

    def release(self) -> None:
        # Not waited for: the command ends (and what it held goes) as its stdin closes with the channel.
        with contextlib.suppress(*channel_errors()):
            self._channel.shutdown_write()
        self._channel.close()


def failure_text(result: CommandResult, argv: Sequence[str]) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
    return f"{argv[0]} exited with status {result.status}" + (": " + " / ".join(lines) if lines else "")


def run_local(
    argv: Sequence[str],
    cancel: Callable[[], bool],
    on_line: Callable[[str], None],
    environment: dict[str, str] | None = None,
) -> CommandResult:
    """Run argv here (never through a shell), stdout lines to on_line; a cancel terminates it."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    env = {**os.environ, "PATH": path, **(environment or {})}
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    except OSError as exc:
        raise OperationError(f"cannot run {argv[0]}: {exc.strerror}") from None
    err = bytearray()
    drain = threading.Thread(target=lambda: err.extend(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
    drain.start()
    out = []
    watcher = threading.Thread(target=_terminate_on_cancel, args=(proc, cancel), daemon=True)
    watcher.start()
    for raw in proc.stdout:  # type: ignore[union-attr]
        line = raw.decode(errors="replace").rstrip("\n")
        out.append(line)
        on_line(line)
    status = proc.wait()
    drain.join()
    if cancel():
        raise Cancelled("cancelled")
    return CommandResult(status, "\n".join(out), err.decode(errors="replace"))


def _terminate_on_cancel(proc: subprocess.Popen, cancel: Callable[[], bool]) -> None:
    while proc.poll() is None:
        if cancel():
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.1)


class LocalReader(Reader):
    def __init__(self, path: str, offset: int) -> None:
        try:
            self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise OperationError(f"cannot read {path}: {exc.strerror}") from None
        self.total = os.fstat(self._file.fileno()).st_size
        self.offset = min(offset, self.total)
        self._file.seek(self.offset)

    def chunks(self) -> Iterator[bytes]:
        while data := self._file.read(CHUNK):
            yield data

    def close(self) -> None:
        self._file.close()


class LocalWriter(Writer):
    """Writes a file here, leaving holes where whole chunks are zero, holding a lock on it as a host's receiver
    does (`_OPEN_PART`). From byte 0 the file is created afresh (a stale one removed first, never followed); a
    resumed one must be a plain file with no other name, still the one measured."""

    def __init__(self, path: str, resume: Partial | None) -> None:
        self.path = path
        offset = resume.size if resume else 0
        try:
            fd = _fresh_part(path) if resume is None else open_for_resume(path, resume)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OperationError(f"will not resume {path}: it is a symbolic link") from None
            raise OperationError(f"cannot write {path}: {exc.strerror}") from None
        self._fd = self.fd = fd
        self._position = offset
        os.lseek(fd, offset, os.SEEK_SET)

    def write(self, data: bytes) -> None:
        if len(data) == CHUNK and data == _ZEROS:
            os.lseek(self._fd, len(data), os.SEEK_CUR)
        else:
            write_all(self._fd, data)
        self._position += len(data)

    def finish(self) -> int:
        os.ftruncate(self._fd, self._position)  # a trailing hole still counts
        os.close(self._fd)
        return self._position

    def abort(self) -> None:
        os.close(self._fd)


def create_exclusive(path: str) -> int:
    """A new file at `path` (a read-write descriptor): whatever stale file or link had the name is removed first,
    and the file is created with O_EXCL|O_NOFOLLOW, so nothing is ever written through a link planted there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)


def _locked(fd: int, path: str) -> int:
    """`fd`, locked as a host's receiver locks its file (PartChanged, the descriptor closed, if another holds it)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PartChanged(f"{path}: another copy is writing it; will not write it") from None
    return fd


def _fresh_part(path: str) -> int:
    """A new partial file at `path`, locked; a stale one is removed first unless another writer holds it."""
    with contextlib.suppress(OSError):  # missing, or not a file: create_exclusive removes it
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.close(_locked(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), path))
    try:
        return _locked(create_exclusive(path), path)
    except FileExistsError:
        raise PartChanged(f"{path}: another copy made it first; will not write it") from None


def _identity(st: os.stat_result) -> str:
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"


def open_for_resume(path: str, resume: Partial) -> int:
    """The partial file at `path`, opened for writing and locked only if it is a plain file with no other name
    (a symbolic or hard link planted in its place would lead the write elsewhere) and still the file measured."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)  # read too: a sparse copy reads back what it stored
    st = os.fstat(fd)
    problem = "not a plain file" if not stat.S_ISREG(st.st_mode) else "a hard link" if st.st_nlink != 1 else ""
    if problem:
        os.close(fd)
        raise OperationError(f"will not resume {path}: it is {problem}")
    _locked(fd, path)
    if _identity(os.fstat(fd)) != resume.identity:
        os.close(fd)
        raise PartChanged(f"{path}: it changed since it was measured; will not write it")
    return fd


def confined(host: Host, path: str, whole: bool = False) -> str:
    """`path` with the symbolic links among its parents resolved (and its last part too, with `whole`), or
    OperationError unless that stays within the host's VM directory: the check a write makes where it writes."""
    root = os.path.realpath(host.vm_dir)
    head, tail = os.path.split(path)
    resolved = os.path.realpath(path if whole else head)
    if resolved != root and not resolved.startswith(root.rstrip("/") + "/"):
        raise OperationError(
            f"{path}: {path if whole else head} leads to {resolved}, outside the VM directory {host.vm_dir} of "
            f"host {host.name} (a symbolic link); refusing to write there"
        )
    return resolved if whole else os.path.join(resolved, tail)


class LocalEndpoint(Endpoint):
    local = True

    def __init__(self, host: Host) -> None:
        self.host = host

    def kind(self, path: str) -> tuple[str | None, int]:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None, 0
        if stat.S_ISLNK(st.st_mode):
            return "l", 0
        return ("d", 0) if stat.S_ISDIR(st.st_mode) else ("f", st.st_size)

    def identity(self, path: str) -> tuple[object, ...]:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise OperationError(f"cannot read {path}: {exc.strerror}") from None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise OperationError(f"{path} is not a file")
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def partial(self, path: str) -> Partial | None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return Partial(st.st_size, _identity(st)) if stat.S_ISREG(st.st_mode) else None

    def makedirs(self, path: str) -> None:
        os.makedirs(confined(self.host, path, whole=True), exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.replace(confined(self.host, src), confined(self.host, dst))

    def remove(self, path: str) -> None:
        path = confined(self.host, path)
        kind, _ = self.kind(path)
        if kind == "d":
            shutil.rmtree(path)  # never follows links inside the tree (it works from directory descriptors)
        elif kind is not None:
            os.unlink(path)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, confined(self.host, path))

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def tree(self, path: str) -> list[TreeEntry]:
        entries = []
        for root, dirs, files in os.walk(path):
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                kind, size = self.kind(full)
                entries.append(TreeEntry(kind or "f", os.path.relpath(full, path), size))
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        return entries

    def sparse_file(self, path: str, size: int) -> None:
        fd = create_exclusive(confined(self.host, path))
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def create(self, path: str) -> BinaryIO:
        """A new file at `path` for writing, made as LocalWriter makes one (never through a link)."""
        return os.fdopen(create_exclusive(confined(self.host, path)), "w+b")

    def run(self, argv: Sequence[str], cancel: Callable[[], bool], on_line: Callable[[str], None]) -> None:
        result = run_local(argv, cancel, on_line)
        if result.status != 0:
            raise OperationError(failure_text(result, argv))

    def open_reader(self, path: str, offset: int, algorithm: str) -> Reader:
        return LocalReader(path, offset)

    def open_writer(self, path: str, resume: Partial | None, total: int | None) -> Writer:
        return LocalWriter(confined(self.host, path), resume)

    def open_extent_writer(self, path: str, resume: Partial | None, data: int, algorithm: str) -> LocalExtentWriter:
        return LocalExtentWriter(confined(self.host, path), resume, algorithm)

    def checksum(self, path: str, algorithm: str) -> str:
        checksum = new_checksum(algorithm)
        try:
            with open(path, "rb") as f:
                checksum.feed(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            return checksum.value()
        finally:
            checksum.close()

    def free_bytes(self, path: str) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def execute(self, argv: Sequence[str], cancel: Callable[[], bool] = lambda: False) -> CommandResult:
        return run_local(argv, cancel, lambda line: None)

    def hold(self, argv: Sequence[str], cancel: Callable[[], bool]) -> Held:
        return LocalHeld(argv, cancel)


def drain_stderr(channel: paramiko.Channel) -> bytes:
    """What is left of a channel's stderr (as much as arrived, if the connection is gone)."""
    parts = []
    with contextlib.suppress(*channel_errors()):
        while data := channel.recv_stderr(65536):
            parts.append(data)
    return b"".join(parts)


def sent_checksum(status: int, stderr: bytes, algorithm: str) -> str:
    """The checksum a `_SEND` printed last on stderr, or OperationError with what the host said."""
    err = stderr.decode(errors="replace").strip()
    checksum = from_tool_output(algorithm, err.splitlines()[-1]) if err else None
    if status != 0 or checksum is None:
        raise OperationError(f"reading failed on host: {err or f'status {status}'}")
    return checksum


def checksum_script(script: str, algorithm: str) -> str:
    """A script that calls `checksum`, with the algorithm's definition of it."""
    return SHELL_FUNCTIONS[algorithm] + script


class Accelerator(Protocol):
    """Another carrier for a remote command's bulk bytes (engine.transfers.openssh), for streams of min_bytes or
    more."""

    min_bytes: int

    def writer(self, host: Host, argv: Sequence[str]) -> Writer: ...

    def reader(self, host: Host, argv: Sequence[str], offset: int, total: int, algorithm: str) -> Reader: ...


class RemoteReader(Reader):
    carrier = "paramiko"

    def __init__(
        self, channel: paramiko.Channel, offset: int, total: int, transport: paramiko.Transport, algorithm: str
    ) -> None:
        self._channel = channel
        self._transport = transport
        self.offset = offset
        self.total = total
        self._algorithm = algorithm

    def chunks(self) -> Iterator[bytes]:
        # A channel hands over a packet's worth at a time; whole MiB chunks keep per-chunk costs (hashing,
        # progress, the host's dd blocks) low.
        buffer = bytearray()
        while True:
            try:
                data = self._channel.recv(CHUNK - len(buffer))
            except channel_errors() as exc:
                raise ConnectionLost(f"the connection dropped while reading: {exc}") from None
            buffer += data
            if buffer and (not data or len(buffer) == CHUNK):
                yield bytes(buffer)
                buffer.clear()
            if not data:
                break
        if not self._transport.is_active():
            raise ConnectionLost("the connection dropped while reading")
        status = self._channel.recv_exit_status()
        self.checksum = sent_checksum(status, drain_stderr(self._channel), self._algorithm)

    def close(self) -> None:
        self._channel.close()


class ChannelWriter(Writer):
    """Streams into a remote `_RECEIVE` over a paramiko channel."""

    carrier = "paramiko"

    def __init__(self, channel: paramiko.Channel, transport: paramiko.Transport) -> None:
        self._channel = channel
        self._transport = transport

    def _failure(self, what: str) -> OperationError:
        if self._transport.is_active() and self._channel.exit_status_ready():
            err = drain_stderr(self._channel).decode(errors="replace")
            return receiver_failure(self._channel.recv_exit_status(), err.strip() or what)
        return ConnectionLost(f"the connection dropped while writing: {what}")

    def write(self, data: bytes) -> None:
        try:
            self._channel.sendall(data)
        except channel_errors() as exc:
            raise self._failure(str(exc) or type(exc).__name__) from None

    def finish(self) -> int:
        try:
            self._channel.shutdown_write()
            out = b"".join(iter(lambda: self._channel.recv(65536), b"")).decode()
            status = self._channel.recv_exit_status()
        except channel_errors() as exc:
            raise self._failure(str(exc)) from None
        if not self._transport.is_active():
            raise ConnectionLost("the connection dropped while finishing a write")
        self.output = out
        return parse_stored(out, status, self._channel)

    def abort(self) -> None:
        # End the stream and let the host's command finish before the caller removes the partial file, so a
        # command that started late cannot create it again afterwards.
        with contextlib.suppress(*channel_errors()):
            self._channel.shutdown_write()
            self._channel.status_event.wait(ABORT_WAIT)
        self._channel.close()


def parse_stored(out: str, status: int, channel: paramiko.Channel | None = None, err: str = "") -> int:
    """The size `_RECEIVE` printed (its first line), or OperationError with what the host said."""
    stored = whole_number(out.split("\n", 1)[0].strip())
    if status != 0 or stored is None:
        if channel is not None:
            err = drain_stderr(channel).decode(errors="replace")
        raise receiver_failure(status, err.strip() or f"status {status}")
    return stored


def receiver_failure(status: int, said: str) -> OperationError:
    """A host's receiver that failed (PartChanged when it refused a partial file another holds or that changed)."""
    if status == RECEIVER_BUSY:
        return PartChanged(f"host refused the partial copy: {said}")
    return OperationError(f"writing on the host failed: {said}")


class RemoteEndpoint(Endpoint):
    checks_stored = True

    def __init__(
        self,
        host: Host,
        pool: SshPool,
        accelerator: Accelerator | None = None,
        compress: bool = False,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.host = host
        self.pool = pool
        self.accelerator = accelerator
        self._no_perl = False  # the host has no perl to find its files' extents
        self._compress: bool | None = None if compress else False  # None: asked for, not yet known to be possible
        self._log = log

    def _run(self, argv: Sequence[str], cancel=lambda: False, on_line=lambda line: None) -> CommandResult:
        return run_remote(self.pool.transport(self.host), argv, cancel, on_line)

    def _check(self, argv: Sequence[str], transport: paramiko.Transport | None = None) -> str:
        result = run_remote(transport, argv) if transport is not None else self._run(argv)
        if result.status != 0:
            raise OperationError(f"host {self.host.name}: {failure_text(result, argv)}")
        return result.stdout

    def kind(self, path: str) -> tuple[str | None, int]:
        words = self._check(["sh", "-c", _KIND, "sh", path]).split(maxsplit=2)
        return (None if words[0] == "n" else words[0]), int(words[1])

    def identity(self, path: str) -> tuple[object, ...]:
        result = self._run(["sh", "-c", _IDENTITY, "sh", path])
        if result.status == 3:
            raise OperationError(f"host {self.host.name}: {path} is not a file")
        if result.status != 0:
            raise OperationError(f"host {self.host.name}: {failure_text(result, ['stat'])}")
        return tuple(result.stdout.split())

    def partial(self, path: str) -> Partial | None:
        identity = self._check(["sh", "-c", _PARTIAL, "sh", path]).strip()
        return Partial(int(identity.split()[0]), identity) if identity else None

    def _write(self, script: str, *args: str) -> str:
        """Run a script that writes (see `INSIDE`), the VM directory as its first argument."""
        return self._check(["sh", "-c", script, "sh", self.host.vm_dir, *args])

    def makedirs(self, path: str) -> None:
        self._write(_MAKEDIRS, path)

    def rename(self, src: str, dst: str) -> None:
        self._write(_RENAME, src, dst)

    def remove(self, path: str) -> None:
        self._write(_REMOVE, path)

    def remove_afresh(self, path: str) -> None:
        client = connect(ssh_target(self.host))
        try:
            self._check(["sh", "-c", _REMOVE, "sh", self.host.vm_dir, path], client.get_transport())
        finally:
            client.close()

    def symlink(self, target: str, path: str) -> None:
        self._write(_SYMLINK, target, path)

    def readlink(self, path: str) -> str:
        return self._check(["readlink", "--", path]).rstrip("\n")

    def tree(self, path: str) -> list[TreeEntry]:
        entries = []
        for item in self._check(["sh", "-c", _TREE, "sh", path]).split("\0"):
            if item:
                kind, size, rel = item.split(" ", 2)
                entries.append(TreeEntry({"f": "f", "d": "d", "l": "l"}.get(kind, "f"), rel, int(size)))
        return entries

    def sparse_file(self, path: str, size: int) -> None:
        self._write(_SPARSE, path, str(size))

    def run(self, argv: Sequence[str], cancel: Callable[[], bool], on_line: Callable[[str], None]) -> None:
        full = with_sbin(argv)
        result = run_remote(self.pool.transport(self.host), full, cancel, on_line)
        if result.status != 0:
            raise OperationError(f"host {self.host.name}: {failure_text(result, argv)}")

    def open_reader(self, path: str, offset: int, algorithm: str) -> Reader:
        kind, size = self.kind(path)
        if kind != "f":
            raise OperationError(f"host {self.host.name}: {path} is not a file")
        argv = ["sh", "-c", checksum_script(_SEND, algorithm), "sh", path, str(offset)]
        return self._stream_reader(argv, offset, size, algorithm)

    def _compressed(self) -> bool:
        """Whether this host's streams are compressed (engine.transfers.compression): asked for, and zstd found on
        both ends (asked once; where it is missing the copy says so and goes uncompressed)."""
        if self._compress is None:
            missing = None if zstd_here() else "the front end"
            if missing is None and self._run(["sh", "-c", "command -v zstd"]).status != 0:
                missing = f"host {self.host.name}"
            if missing is not None:
                self._log(f"COMPRESS = zstd, but {missing} has no zstd: copying uncompressed")
            self._compress = missing is None
        return self._compress

    def _stream_reader(self, argv: Sequence[str], offset: int, size: int, algorithm: str) -> Reader:
        """A remote command's stdout: compressed where asked for, through the accelerator for long streams."""
        if self._compressed():
            return DecompressedReader(self._carried_reader(compressing(argv), offset, size, algorithm))
        return self._carried_reader(argv, offset, size, algorithm)

    def _carried_reader(self, argv: Sequence[str], offset: int, size: int, algorithm: str) -> Reader:
        if self.accelerator is not None and size - offset >= self.accelerator.min_bytes:
            return self.accelerator.reader(self.host, argv, offset, size, algorithm)
        transport = self.pool.transport(self.host)
        channel = open_channel(transport, argv)
        channel.shutdown_write()
        return RemoteReader(channel, offset, size, transport, algorithm)

    def open_extent_reader(self, path: str, offset: int, algorithm: str) -> ExtentReader | None:
        if self._no_perl:
            return None
        kind, size = self.kind(path)
        if kind != "f":
            raise OperationError(f"host {self.host.name}: {path} is not a file")
        if self._run(["sh", "-c", "command -v perl"]).status != 0:
            self._no_perl = True
            return None
        argv = ["sh", "-c", checksum_script(_SEND_EXTENTS, algorithm), _EXTENTS_PERL, path, str(offset)]
        return ExtentReader(self._stream_reader(argv, offset, size, algorithm), algorithm)

    def _receiver(self, script: str, path: str, resume: Partial | None) -> list[str]:
        """The argv of a receiver (`_OPEN_PART`) writing `path` afresh or resuming it."""
        offset, identity = (resume.size, resume.identity) if resume else (0, "")
        return ["sh", "-c", script, "sh", self.host.vm_dir, path, str(offset), identity]

    def open_writer(self, path: str, resume: Partial | None, total: int | None) -> Writer:
        remaining = None if total is None else total - (resume.size if resume else 0)
        return self._stream_writer(self._receiver(_RECEIVE, path, resume), remaining)

    def _stream_writer(self, argv: Sequence[str], remaining: int | None) -> Writer:
        """A remote command fed a stream: compressed where asked for, through the accelerator for long streams (or
        of unknown length)."""
        if self._compressed():
            return CompressedWriter(self._carried_writer(decompressing(argv), remaining))
        return self._carried_writer(argv, remaining)

    def _carried_writer(self, argv: Sequence[str], remaining: int | None) -> Writer:
        if self.accelerator is not None and (remaining is None or remaining >= self.accelerator.min_bytes):
            return self.accelerator.writer(self.host, argv)
        transport = self.pool.transport(self.host)
        return ChannelWriter(open_channel(transport, argv), transport)

    def open_extent_writer(self, path: str, resume: Partial | None, data: int, algorithm: str) -> ExtentWriter:
        argv = self._receiver(checksum_script(_RECEIVE_EXTENTS, algorithm), path, resume)
        return ExtentWriter(self._stream_writer(argv, data), algorithm)

    def checksum(self, path: str, algorithm: str) -> str:
        argv = ["sh", "-c", checksum_script(_CHECKSUM_FILE, algorithm), "sh", path]
        checksum = from_tool_output(algorithm, self._check(argv))
        if checksum is None:
            raise OperationError(f"host {self.host.name}: no {algorithm} checksum of {path}")
        return checksum

    def publish(self, tmp: str, final: str, size: int, algorithm: str, expected: str | None) -> str | None:
        value = expected.partition(":")[2] if expected else ""
        argv = ["sh", "-c", checksum_script(_PUBLISH, algorithm), "sh", self.host.vm_dir, tmp, final, str(size), value]
        result = self._run(argv)
        stored = from_tool_output(algorithm, result.stdout)
        if result.status == 3:
            raise OperationError(f"checksum mismatch: source {expected}, copy on {self.host.name} {stored}")
        if result.status != 0 or stored is None:
            raise OperationError(f"host {self.host.name}: {failure_text(result, ['publish'])}")
        return stored

    def free_bytes(self, path: str) -> int:
        out = self._check(["df", "-P", "-B1", "--", path]).splitlines()
        return int(out[-1].split()[3])

    def execute(self, argv: Sequence[str], cancel: Callable[[], bool] = lambda: False) -> CommandResult:
        return self._run(argv, cancel)

    def hold(self, argv: Sequence[str], cancel: Callable[[], bool]) -> Held:
        return RemoteHeld(self.pool.transport(self.host), argv, cancel)

    def reset(self) -> None:
        self.pool.discard(self.host)
