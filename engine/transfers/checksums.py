"""The checksums that verify copies: computed here while the bytes pass, and by standard tools on a host.

`cksum` (the default) is the POSIX `cksum` CRC-32, the value `cksum FILE` prints on any host, so an admin can
check a copy by hand; coreutils computes it with carry-less multiplication, several GB/s. `sha256` is a
cryptographic digest, for sites that record one; a host computes it with `openssl dgst` (SHA-NI) or `sha256sum`.
SSH already authenticates every byte in transit; the checksum catches what happens around the stream (a short or
misplaced write, a source that changed, the head of a resumed copy). A value is written `ALGORITHM:VALUE`.
cksum is the default because a host re-reads a stored copy with it in a third of sha256's time (README, Benchmarks).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import zlib
from typing import Protocol

from engine.errors import OperationError
from engine.language.numbers import whole_number
from engine.transfers.pipes import enlarge_pipe, write_all

ALGORITHMS = ("cksum", "sha256")
DEFAULT_ALGORITHM = "cksum"

# zlib computes the bit-reflected CRC-32; cksum's is the same polynomial taken most significant bit first, which
# is the reflected CRC of the data with each byte's bits reversed, the result reversed again.
_REVERSED_BITS = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))
_MASK = 0xFFFFFFFF
_SHA256 = re.compile(r"[0-9a-f]{64}")

# Shell functions, one per algorithm, named `checksum`: the checksum of stdin, first word of the output.
SHELL_FUNCTIONS = {
    "cksum": "checksum() { cksum; }; ",
    # OpenSSL's uses SHA-NI where coreutils' does not.
    "sha256": (
        "checksum() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi; }; "
    ),
}


class Checksum(Protocol):
    algorithm: str

    def update(self, data: bytes) -> None:
        """Checksum bytes that passed through this process."""
        ...

    def feed(self, fd: int, offset: int, count: int) -> None:
        """Checksum `count` bytes of the open file `fd` from `offset` (OSError if the file ends first)."""
        ...

    def value(self) -> str:
        """`ALGORITHM:VALUE`, as a host's tool would print it; ends a helper process."""
        ...

    def close(self) -> None:
        """Give up on it (a failed copy): ends a helper process."""
        ...


def hole_checksum(algorithm: str) -> InProcessChecksum:
    """A checksum for a file whose holes are not read: cksum in this process, where a hole of any size costs
    O(log size); SHA-256 must hash every zero."""
    return Cksum() if algorithm == "cksum" else Sha256()


def new_checksum(algorithm: str) -> Checksum:
    """The fastest way (README, Benchmarks): cksum by its tool in a process of its own, where installed (carry-less
    multiplication, and no bit-reversing copy under the GIL, which the console's UI thread needs); SHA-256 in this
    process (hashlib releases the GIL)."""
    if algorithm == "cksum":
        return ChecksumProcess(algorithm) if _has_cksum() else Cksum()
    return Sha256()


@functools.cache
def _has_cksum() -> bool:
    return shutil.which("cksum") is not None


class InProcessChecksum:
    """A checksum computed by this process; ranges of a file are read with pread."""

    algorithm: str

    def update(self, data: bytes) -> None:
        raise NotImplementedError

    def value(self) -> str:
        raise NotImplementedError

    def feed(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            data = os.pread(fd, min(count, 1 << 24), offset)
            if not data:
                raise OSError(f"the file ended at byte {offset}")
            self.update(data)
            offset += len(data)
            count -= len(data)

    def zeros(self, count: int) -> None:
        """Checksum `count` zero bytes (a hole), as cheaply as the algorithm allows."""
        while count > 0:
            piece = min(count, len(_ZERO_PIECE))
            self.update(_ZERO_PIECE if piece == len(_ZERO_PIECE) else _ZERO_PIECE[:piece])
            count -= piece

    def close(self) -> None:
        pass


_ZERO_PIECE = bytes(1 << 20)


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


@functools.cache
def _zero_operators() -> list[list[int]]:
    """The linear maps that run zlib's CRC-32 register over 2**k zero bytes, k = 0..63 (as zlib's crc32_combine
    builds them): one zero bit is a shift with the reflected polynomial fed back; squaring doubles the run."""
    operator = [0xEDB88320] + [1 << row for row in range(31)]
    for _ in range(3):  # one bit -> 8 bits
        operator = [_gf2_times(operator, column) for column in operator]
    operators = [operator]
    for _ in range(63):
        operator = [_gf2_times(operator, column) for column in operator]
        operators.append(operator)
    return operators


class Cksum(InProcessChecksum):
    """POSIX cksum: CRC-32 (polynomial 0x04C11DB7, most significant bit first, starting at 0) of the data and
    then of its length in as few little-endian bytes as it takes, inverted. For a front end without `cksum`."""

    algorithm = "cksum"

    def __init__(self) -> None:
        self._crc = _MASK  # zlib's running value for a register that starts at 0
        self._size = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data.translate(_REVERSED_BITS), self._crc)
        self._size += len(data)

    def zeros(self, count: int) -> None:
        # Zero bytes reverse to zero bytes, so the register simply runs over `count` zeros: O(log count).
        register = self._crc ^ _MASK
        bit = 0
        self._size += count
        while count:
            if count & 1:
                register = _gf2_times(_zero_operators()[bit], register)
            count >>= 1
            bit += 1
        self._crc = register ^ _MASK

    def value(self) -> str:
        length = self._size.to_bytes((self._size.bit_length() + 7) // 8, "little")
        register = zlib.crc32(length.translate(_REVERSED_BITS), self._crc) ^ _MASK
        return f"cksum:{int(f'{register:032b}'[::-1], 2) ^ _MASK}"


class Sha256(InProcessChecksum):
    algorithm = "sha256"

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._digest.update(data)

    def value(self) -> str:
        return f"sha256:{self._digest.hexdigest()}"


class ChecksumProcess:
    """The algorithm's tool (SHELL_FUNCTIONS) in a process of its own, fed through a pipe: bytes this process
    holds by writing them, ranges of a file by sendfile (never through Python)."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._proc = subprocess.Popen(
            ["sh", "-c", SHELL_FUNCTIONS[algorithm] + "checksum"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._pipe = self._proc.stdin.fileno()  # type: ignore[union-attr]
        enlarge_pipe(self._pipe)
        self._value: str | None = None

    def update(self, data: bytes) -> None:
        write_all(self._pipe, data)

    def feed(self, fd: int, offset: int, count: int) -> None:
        while count > 0:
            sent = os.sendfile(self._pipe, fd, offset, count)
            if sent == 0:
                raise OSError(f"the file ended at byte {offset}")
            offset += sent
            count -= sent

    def value(self) -> str:
        """The checksum of everything fed (asked again, the same answer); OperationError if the tool failed."""
        if self._value is None:
            out, err = self._proc.communicate()  # closes its stdin: the tool sees the end
            value = from_tool_output(self.algorithm, out.decode(errors="replace"))
            if self._proc.returncode != 0 or value is None:
                raise OperationError(f"{self.algorithm} failed: {err.decode(errors='replace').strip() or out!r}")
            self._value = value
        return self._value

    def close(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
            self._proc.communicate()


def from_tool_output(algorithm: str, output: str) -> str | None:
    """`ALGORITHM:VALUE` from what the algorithm's shell function printed (its first word), or None when that
    is not a value of the algorithm."""
    words = output.split()
    word = words[0] if words else ""
    valid = whole_number(word) is not None if algorithm == "cksum" else _SHA256.fullmatch(word) is not None
    return f"{algorithm}:{word}" if valid else None
