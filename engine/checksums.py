"""The checksums that verify copies: computed here while the bytes pass, and by standard tools on a host.

`cksum` (the default) is the POSIX `cksum` CRC-32, the value `cksum FILE` prints on any host, so an admin can
check a copy by hand; coreutils computes it with carry-less multiplication, several GB/s. `sha256` is a
cryptographic digest, for sites that record one; a host computes it with `openssl dgst` (SHA-NI) or `sha256sum`.
SSH already authenticates every byte in transit; the checksum catches what happens around the stream (a short or
misplaced write, a source that changed, the head of a resumed copy). A value is written `ALGORITHM:VALUE`.

Measured here (bench/bench_transfer.py, 1 GiB over loopback ssh, 2 cores shared by both ends): the host's
re-read at publish took ~0.9 s with sha256 and ~0.3 s with cksum, which decided the default.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Protocol

ALGORITHMS = ("cksum", "sha256")
DEFAULT_ALGORITHM = "cksum"

# zlib computes the bit-reflected CRC-32; cksum's is the same polynomial taken most significant bit first, which
# is the reflected CRC of the data with each byte's bits reversed, the result reversed again.
_REVERSED_BITS = bytes(int(f"{byte:08b}"[::-1], 2) for byte in range(256))
_MASK = 0xFFFFFFFF

# Shell functions, one per algorithm, named `checksum`: the checksum of stdin, first word of the output.
SHELL_FUNCTIONS = {
    "cksum": "checksum() { cksum; }; ",
    # OpenSSL's uses SHA-NI where coreutils' does not: 4x faster where both exist.
    "sha256": (
        "checksum() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r; else sha256sum; fi; }; "
    ),
}


class Checksum(Protocol):
    algorithm: str

    def update(self, data: bytes) -> None: ...

    def value(self) -> str:
        """`ALGORITHM:VALUE`, as a host's tool would print it."""
        ...


class Cksum:
    """POSIX cksum: CRC-32 (polynomial 0x04C11DB7, most significant bit first, starting at 0) of the data and
    then of its length in as few little-endian bytes as it takes, inverted."""

    algorithm = "cksum"

    def __init__(self) -> None:
        self._crc = _MASK  # zlib's running value for a register that starts at 0
        self._size = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data.translate(_REVERSED_BITS), self._crc)
        self._size += len(data)

    def value(self) -> str:
        length = self._size.to_bytes((self._size.bit_length() + 7) // 8, "little")
        register = zlib.crc32(length.translate(_REVERSED_BITS), self._crc) ^ _MASK
        return f"cksum:{int(f'{register:032b}'[::-1], 2) ^ _MASK}"


class Sha256:
    algorithm = "sha256"

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._digest.update(data)

    def value(self) -> str:
        return f"sha256:{self._digest.hexdigest()}"


def new_checksum(algorithm: str) -> Checksum:
    return Cksum() if algorithm == "cksum" else Sha256()


def from_tool_output(algorithm: str, output: str) -> str | None:
    """`ALGORITHM:VALUE` from what the algorithm's shell function printed (its first word), or None when that
    is not a value of the algorithm."""
    words = output.split()
    word = words[0] if words else ""
    valid = word.isdigit() if algorithm == "cksum" else len(word) == 64
    return f"{algorithm}:{word}" if valid else None
