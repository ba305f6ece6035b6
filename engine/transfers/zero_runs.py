"""The data in a stream whose holes nobody told us about (an HTTP body): runs of zero blocks found as the bytes
pass, so that only the data is sent on to a host and the zeros stay holes there.

The stream is cut into blocks aligned to the file's offsets (BLOCK, the size of the host's `dd` blocks, which
leave zero blocks as holes anyway); a zero block is checked by one memcmp, which stops at the first byte of data.
A run of data blocks becomes an extent; zeros between two runs are sent as data unless they reach MERGE_GAP (each
extent costs the host a `dd`). An extent's header carries its length, so its bytes are held here until the run
ends, reaches MAX_EXTENT, or has waited FLUSH_AFTER (a slow source's bytes then reach the host, and its progress
shows, as they come). When the source drops, what it sent is sent on before the copy is retried from there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from engine.errors import ConnectionLost, OperationError
from engine.transfers.extents import MERGE_GAP, Extent
from engine.transfers.streams import CHUNK, Reader

BLOCK = 64 << 10
MAX_EXTENT = 8 << 20
FLUSH_AFTER = 0.25  # seconds
_ZERO_BLOCK = bytes(BLOCK)


class StreamExtents:
    """A Reader of known length as a sparse file's extents (ExtentReader's interface): from the reader's offset,
    an Extent before each extent's bytes, and an empty Extent at the end of each chunk read inside a hole (the
    copy's progress). `extents` lists what was sent, once it was."""

    def __init__(self, reader: Reader) -> None:
        if reader.total is None:
            raise ValueError("a stream of unknown length has no extents")
        self._reader = reader
        self.carrier = reader.carrier
        self.offset = reader.offset
        self.total: int = reader.total
        self.extents: list[Extent] = []

    def pieces(self) -> Iterator[Extent | bytes]:
        run = bytearray()  # the data of the extent being gathered, from run_start
        run_start = gap = 0  # gap: zero bytes seen since the run's last data block
        began = 0.0
        position = self.offset  # of the first byte of `carry`, then of the next block
        carry = b""  # the start of a block that the next chunk completes

        def flush() -> Iterator[Extent | bytes]:
            nonlocal run
            if not run:
                return
            extent = Extent(run_start, len(run))
            if self.extents and self.extents[-1].end == extent.offset:
                self.extents[-1] = Extent(self.extents[-1].offset, self.extents[-1].length + extent.length)
            else:
                self.extents.append(extent)
            yield extent
            for start in range(0, len(run), CHUNK):
                yield bytes(run[start : start + CHUNK])
            run = bytearray()

        chunks = self._reader.chunks()
        while True:
            try:
                chunk = next(chunks, None)
            except ConnectionLost:  # the source dropped: what came is sent first, so the copy resumes after it
                yield from flush()
                raise
            data = carry + chunk if chunk is not None else carry
            start = 0
            while start < len(data):
                end = start + BLOCK - (position % BLOCK)
                if end > len(data):
                    if chunk is not None:
                        break  # an incomplete block: the next chunk completes it
                    end = len(data)
                if _zero(data, start, end):
                    if run:
                        gap += end - start
                        if gap >= MERGE_GAP:
                            yield from flush()
                else:
                    if not run:
                        run_start, gap, began = position, 0, time.monotonic()
                    elif gap:
                        run += bytes(gap)
                        gap = 0
                    run += data[start:end]
                    if len(run) >= MAX_EXTENT:
                        yield from flush()
                position += end - start
                start = end
            carry = data[start:]
            if chunk is None:
                break
            if run and time.monotonic() - began >= FLUSH_AFTER:
                yield from flush()
            elif not run:
                yield Extent(position, 0)
        yield from flush()
        if position != self.total:
            raise OperationError(f"the source changed while copying: read {position} of {self.total} bytes")

    def close(self) -> None:
        self._reader.close()


def _zero(data: bytes, start: int, end: int) -> bool:
    """Whether data[start:end] is all zeros, without copying it (a whole block: one memcmp)."""
    if end - start == BLOCK:
        return data.startswith(_ZERO_BLOCK, start)
    return data.count(0, start, end) == end - start
