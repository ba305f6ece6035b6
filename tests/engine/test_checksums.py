"""The checksums that verify copies agree with the tools a host computes them with."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import OperationError
from engine.transfers.checksums import (
    ALGORITHMS,
    SHELL_FUNCTIONS,
    ChecksumProcess,
    Cksum,
    from_tool_output,
    new_checksum,
)
from engine.transfers.copier import _Verifier


def tool(algorithm: str, data: bytes) -> str:
    """What a host's shell function prints for `data`, as the engine reads it."""
    out = subprocess.run(["sh", "-c", SHELL_FUNCTIONS[algorithm] + "checksum"], input=data, capture_output=True)
    value = from_tool_output(algorithm, out.stdout.decode())
    assert value is not None, out
    return value


def computed(algorithm: str, data: bytes, cuts: list[int]) -> str:
    """`data` checksummed as a stream, arriving in pieces cut at `cuts`."""
    checksum = new_checksum(algorithm)
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        checksum.update(data[start:cut])
        start = max(start, cut)
    return checksum.value()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, (3 << 20) + 7])
def test_front_end_and_host_tools_agree(algorithm, size):
    data = os.urandom(size // 2) + bytes(size - size // 2)  # data, then zeros (a sparse tail)
    assert computed(algorithm, data, [size // 3]) == tool(algorithm, data)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=6))
def test_cksum_is_the_same_however_the_bytes_arrive(data, cuts):
    cuts = [c for c in cuts if c <= len(data)]
    assert computed("cksum", data, cuts) == computed("cksum", data, [])


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65536, (3 << 20) + 7])
def test_this_processs_cksum_for_a_front_end_without_the_tool(size):
    data = os.urandom(size)
    checksum = Cksum()
    checksum.update(data[:7])
    checksum.update(data[7:])
    assert checksum.value() == tool("cksum", data)


def test_values_name_their_algorithm():
    assert computed("sha256", b"abc", []) == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert computed("cksum", b"", []) == Cksum().value() == "cksum:4294967295"  # `cksum < /dev/null`
    assert from_tool_output("cksum", "1220704766 1\n") == "cksum:1220704766"
    assert from_tool_output("cksum", "cksum: -: Permission denied") is None
    assert from_tool_output("sha256", "") is None and from_tool_output("sha256", "abc *stdin") is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ranges_of_a_file_checksum_like_its_bytes(algorithm, tmp_path):
    """What verifies copies on this machine (cksum's tool fed by sendfile, or hashlib) agrees with the stream's."""
    data = os.urandom(5 << 20) + bytes(1 << 20)
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    ranges = new_checksum(algorithm)
    with open(path, "rb") as f:
        for offset in range(0, len(data), 2 << 20):
            ranges.feed(f.fileno(), offset, min(2 << 20, len(data) - offset))
        assert ranges.value() == computed(algorithm, data, []) == tool(algorithm, data)
        short = new_checksum(algorithm)
        with pytest.raises(OSError, match="ended at byte"):
            short.feed(f.fileno(), len(data) - 10, 20)
        short.value()  # still ends the tool's process


def test_an_abandoned_checksum_ends_its_process():
    checksum = ChecksumProcess("cksum")
    checksum.update(os.urandom(1 << 16))
    checksum.close()
    assert checksum._proc.returncode is not None
    checksum.close()  # twice is fine
    finished = ChecksumProcess("cksum")
    finished.update(b"abc")
    assert finished.value() == finished.value() == tool("cksum", b"abc")
    finished.close()  # after value(): nothing left to end


def test_a_local_copy_whose_source_shrank_fails_and_ends_both_checksums(tmp_path):
    source, copy = tmp_path / "source.img", tmp_path / "copy.img"
    copy.write_bytes(os.urandom(100))
    source.write_bytes(copy.read_bytes()[:50])  # cut after the copy was made
    with open(source, "rb") as src, open(copy, "rb") as dst:
        verifier = _Verifier(src.fileno(), dst.fileno(), "cksum")
        verifier.check(0, 100)
        with pytest.raises(OperationError, match="cannot verify the copy: the file ended at byte 50"):
            verifier.finish()
    assert all(side._checksum._proc.returncode is not None for side in verifier._sides)  # no tool left waiting


@pytest.mark.parametrize(("algorithm", "output"), [("cksum", "²²² 10 f"), ("cksum", "٢٤ 10 f"), ("sha256", "z" * 64)])
def test_tool_output_that_is_not_a_value_is_refused(algorithm, output):
    assert from_tool_output(algorithm, output) is None
