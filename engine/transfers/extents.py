"""Where a file holds data: its extents, found with SEEK_DATA / SEEK_HOLE, so that copies move only the data and
leave the holes as holes."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

# Holes shorter than this between two extents are sent as zeros: each extent costs the receiver a `dd` of its
# own, and a few KiB of zeros cost less than that (the receiver leaves zero blocks as holes anyway).
MERGE_GAP = 1 << 20


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def data_extents(fd: int, size: int) -> list[Extent] | None:
    """The data extents of the open file `fd` of `size` bytes, in order; None where the file system cannot say
    (no SEEK_DATA), so the caller copies every byte."""
    extents: list[Extent] = []
    position = 0
    while position < size:
        try:
            start = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                break
            return None
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        extents.append(Extent(start, end - start))
        position = end
    return extents


def merged(extents: list[Extent], gap: int = MERGE_GAP) -> list[Extent]:
    """The extents with holes shorter than `gap` between them filled in."""
    out: list[Extent] = []
    for extent in extents:
        if out and extent.offset - out[-1].end < gap:
            out[-1] = Extent(out[-1].offset, extent.end - out[-1].offset)
        else:
            out.append(extent)
    return out


def from_offset(extents: list[Extent], offset: int) -> list[Extent]:
    """What of the extents lies at or after `offset` (a resumed copy's start)."""
    out = []
    for extent in extents:
        if extent.end > offset:
            start = max(extent.offset, offset)
            out.append(Extent(start, extent.end - start))
    return out


def data_bytes(extents: list[Extent]) -> int:
    return sum(extent.length for extent in extents)
