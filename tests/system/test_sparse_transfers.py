"""Sparse-aware copies to real sshd hosts: only data extents cross, the copy has the source's size, content,
checksum and about its allocation, and a copy dropped several times resumes at the right extent."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from engine.service.protocol import ServicePaths
from engine.service.server import lock_holder
from engine.transfers.checksums import Cksum, Sha256
from engine.transfers.extents import Extent, data_extents, from_offset, merged
from engine.transfers.hosts import Hosts
from engine.transfers.openssh import OpenSsh
from tests.conftest import stop_service
from tests.system.test_service import copied, follow_to_the_end, service_pid, wait_for
from tests.system.test_transfers import Runner, cksum, leftovers, sha, vm_log, wait_for_bytes

MiB = 1 << 20


def sparse_file(path: Path, size: int, pieces: list[tuple[int, int]]) -> Path:
    """A file of `size` bytes holding random data at each (offset, length), holes elsewhere."""
    with open(path, "wb") as out:
        out.truncate(size)
        for offset, length in pieces:
            out.seek(offset)
            out.write(os.urandom(length))
    return path


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


SHAPES = {
    # odd offsets and lengths, holes of several MiB between them, a trailing hole
    "odd-extents": (40 * MiB + 12345, [(4 * MiB + 7, 1 * MiB + 3), (13 * MiB + 4097, 2 * MiB - 5), (30 * MiB, 4096)]),
    "leading-hole": (12 * MiB, [(10 * MiB, 2 * MiB)]),
    "trailing-hole": (12 * MiB + 1, [(0, 3 * MiB)]),
    "all-holes": (16 * MiB, []),
}
NO_HOLES = (5 * MiB + 3, [(0, 5 * MiB + 3)])


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_only_data_crosses_and_the_copy_is_exact(world, shape, accelerated):
    size, pieces = SHAPES[shape]
    base = sparse_file(world["images"] / f"{shape}.img", size, pieces)
    host = world["hosts"]["host01"]
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    try:
        result = runner.run(f"CLONE {world['fe']}:{base} host01:{host.vm_dir}/7/images/disk.0\n")
    finally:
        runner.close()
    assert result.ok, result
    copy = host.vm_dir / "7/images/disk.0"
    assert copy.stat().st_size == size
    assert sha(copy) == sha(base)
    assert allocated(copy) <= max(1.5 * allocated(base), 64 << 10)
    log = vm_log(world)
    assert f"checksum {cksum(base)}" in log  # the logical content's: what `cksum FILE` prints on the host too
    assert "(extents, local to " in log and "(holes skipped)" in log
    finished = runner.of("action_finished")[-1]
    assert finished.bytes == size  # progress counts logical bytes


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
def test_a_file_without_holes_is_streamed_as_before(world, accelerated):
    base = world["images"] / "full.img"
    base.write_bytes(os.urandom(5 * MiB + 3))
    host = world["hosts"]["host01"]
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    try:
        assert runner.run(f"CLONE {world['fe']}:{base} host01:{host.vm_dir}/7/images/disk.0\n").ok
    finally:
        runner.close()
    assert sha(host.vm_dir / "7/images/disk.0") == sha(base)
    assert "(stream, local to " in vm_log(world)


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
def test_a_copy_dropped_three_times_resumes_at_the_right_extent(shaped, accelerated):
    """sshd's sessions are killed three times while extents flow (48 MiB of data at 100 Mbit/s, about 4 s): each
    attempt starts from the size the copy had reached (never from byte 0, never re-sending holes) and the result
    still verifies."""
    pieces = [(i * 12 * MiB + 4097, 6 * MiB) for i in range(8)]
    base = sparse_file(shaped["images"] / "drops.img", 100 * MiB, pieces)
    host, home = shaped["node"], shaped["home"]
    # The copy straight to the VM's file, whose .part this test watches (test_image_cache.py has the cache's).
    Hosts(home).update(host.name, replace(Hosts(home).get(host.name), cache_max_mb=0))
    part = host.vm_dir / "7/images/.disk.0.part"
    runner = Runner(home, accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    drops: list[int] = []
    lock = threading.Lock()

    def drop(event) -> None:
        # Drop when the copy has passed the next quarter of the file, so each attempt gets somewhere first.
        if getattr(event, "kind", "") != "action_progress" or len(drops) >= 3:
            return
        with lock:  # once per attempt: the previous drop must have been retried first
            retried = len(runner.of("action_retry"))
            if len(drops) == retried < 3 and event.bytes_done >= (len(drops) + 1) * 24 * MiB:
                wait_for_bytes(part)
                if host.drop_connections():
                    drops.append(event.bytes_done)

    runner.bus.subscribe(drop)
    try:
        result = runner.run(f"CLONE {home.config.frontend_name}:{base} {host.name}:{host.vm_dir}/7/images/disk.0\n")
    finally:
        runner.close()
    assert len(drops) >= 2, drops
    assert result.ok, result
    copy = host.vm_dir / "7/images/disk.0"
    assert copy.stat().st_size == base.stat().st_size and sha(copy) == sha(base)
    log = (home.logs / "vm-7.log").read_text()
    starts = [
        int(line.split("resuming at byte ")[1].split(",")[0]) for line in log.splitlines() if "resuming at" in line
    ]
    assert len(starts) >= 2
    assert starts[0] > 0 and starts == sorted(starts)  # never from byte 0, never back over sent extents
    # each attempt starts inside or at the end of a data extent (as the file system reports them, in whole
    # blocks), not in a hole it would have to re-send
    with open(base, "rb") as f:
        extents = data_extents(f.fileno(), base.stat().st_size)
    assert extents is not None
    assert all(any(e.offset <= start <= e.end for e in extents) for start in starts), (starts, extents)
    assert f"checksum {cksum(base)}" in log
    assert leftovers(host.vm_dir) == []


def test_extents_are_found_and_merged(tmp_path):
    path = sparse_file(tmp_path / "f", 20 * MiB, [(MiB, 4096), (MiB + 8192, 4096), (10 * MiB, MiB)])
    with open(path, "rb") as f:
        found = data_extents(f.fileno(), 20 * MiB)
    assert found is not None and len(found) >= 2
    joined = merged(found)
    assert len(joined) == 2 and joined[0].offset <= MiB and joined[1].end == 11 * MiB
    assert from_offset([Extent(0, 10), Extent(20, 10)], 25) == [Extent(25, 5)]


@pytest.mark.parametrize("holes", [0, 1, 7, 65536, 5 * MiB + 3, 1 << 33])
def test_the_checksum_of_a_hole_is_computed_not_read(holes):
    """cksum over zeros by the register's algebra equals cksum over the bytes themselves (up to sizes that can
    be materialised here; beyond, two runs of zeros equal one of their total length)."""
    combined = Cksum()
    combined.update(b"head")
    combined.zeros(holes)
    combined.update(b"tail")
    if holes <= 8 * MiB:
        plain = Cksum()
        plain.update(b"head" + bytes(holes) + b"tail")
        assert combined.value() == plain.value()
        sha = Sha256()
        sha.update(b"head")
        sha.zeros(holes)
        sha.update(b"tail")
        reference = Sha256()
        reference.update(b"head" + bytes(holes) + b"tail")
        assert sha.value() == reference.value()
    else:
        halves = Cksum()
        halves.update(b"head")
        halves.zeros(holes // 2 - 1)
        halves.zeros(holes // 2 + 1)
        halves.update(b"tail")
        assert combined.value() == halves.value()


def test_a_sparse_clone_behind_a_shaped_link(shaped):
    """Behind the capped link the copy is exact and only its data crossed it (the head's veth counters)."""
    home, node, lab = shaped["home"], shaped["node"], shaped["lab"]
    base = sparse_file(shaped["images"] / "disk.img", 64 * MiB, [(5 * MiB, MiB), (40 * MiB + 1, 2 * MiB)])
    counters = Path(f"/sys/class/net/hn{lab.tag}h/statistics/tx_bytes")
    sent_before = int(counters.read_text())
    runner = Runner(home)
    try:
        assert runner.run(f"CLONE {home.config.frontend_name}:{base} {node.name}:{node.vm_dir}/7/disk.0\n").ok
    finally:
        runner.close()
    sent = int(counters.read_text()) - sent_before
    copy = node.vm_dir / "7/disk.0"
    assert sha(copy) == sha(base) and copy.stat().st_size == 64 * MiB
    assert 3 * MiB < sent < 8 * MiB  # the data and ssh's overhead, not the 64 MiB of the file


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
@pytest.mark.parametrize("shape", ["odd-extents", "all-holes"])
def test_hosts_send_only_their_data_too(world, shape, accelerated):
    """A host's sparse file cloned to another host and moved back to the front end (a stop's MV): the host finds
    its extents (perl), only they cross, and each copy is exact and stays sparse."""
    size, pieces = SHAPES[shape]
    h1, h2 = world["hosts"]["host01"], world["hosts"]["host02"]
    disk = sparse_file(h1.vm_dir / "src.img", size, pieces)
    digest = sha(disk)
    on_h2, parked = h2.vm_dir / "7/images/disk.0", world["home"].vms / "7/images/disk.0"
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    try:
        result = runner.run(f"CLONE host01:{disk} host02:{on_h2}\nMV host01:{disk} {world['fe']}:{parked}\n")
    finally:
        runner.close()
    assert result.ok, result
    data = sum(length for _, length in pieces)
    for copy in (on_h2, parked):
        assert copy.stat().st_size == size and sha(copy) == digest
        assert allocated(copy) <= max(1.5 * data, 64 << 10) + (1 << 20)  # a block's rounding at each extent
    log = vm_log(world)
    carrier = "openssh" if accelerated else "paramiko"
    assert f"(extents, {carrier} to {carrier}" in log and f"(extents, {carrier} to local" in log
    assert log.count("(holes skipped)") == 2


# Each way an HTTP body reaches a host: over SSH (both carriers), and to a host sharing the front end's files.
HTTP_PATHS = {"paramiko": ("host01", False), "openssh": ("host01", True), "shared": ("nfs01", False)}


@pytest.mark.parametrize("path", sorted(HTTP_PATHS))
@pytest.mark.parametrize("shape", [*sorted(SHAPES), "no-holes"])
def test_the_zeros_of_an_http_body_stay_holes_on_the_host(world, http_server, shape, path):
    """The body's zero runs are found as it streams: only its data is sent on, and the copy has the body's
    content, size and checksum (one pass: the logical content's, what `cksum` prints) and about its allocation."""
    size, pieces = SHAPES.get(shape, NO_HOLES)
    body = sparse_file(http_server["root"] / "disk.img", size, pieces)
    name, accelerated = HTTP_PATHS[path]
    vm_dir = world["shared"] if name == "nfs01" else world["hosts"][name].vm_dir
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    try:
        result = runner.run(f"CLONE {http_server['url']}/disk.img {name}:{vm_dir}/7/images/disk.0\n")
    finally:
        runner.close()
    assert result.ok, result
    copy = vm_dir / "7/images/disk.0"
    assert copy.stat().st_size == size and sha(copy) == sha(body)
    data = sum(length for _, length in pieces)
    assert allocated(copy) <= max(1.5 * data, 64 << 10)
    log = vm_log(world)
    assert f"checksum {cksum(body)}" in log
    carrier = {"paramiko": "paramiko", "openssh": "openssh", "shared": "local"}[path]
    assert f"(extents, http to {carrier}" in log
    assert ("(holes skipped)" in log) == (shape != "no-holes")
    assert runner.of("action_finished")[-1].bytes == size
    assert leftovers(vm_dir) == []


def test_an_http_body_behind_a_shaped_link_sends_only_its_data(shaped, http_server):
    """The front end downloads every zero of the body, but only its data crosses the link to the host."""
    home, node, lab = shaped["home"], shaped["node"], shaped["lab"]
    body = sparse_file(http_server["root"] / "disk.img", 64 * MiB, [(5 * MiB + 9, MiB), (40 * MiB, 2 * MiB + 1)])
    counters = Path(f"/sys/class/net/hn{lab.tag}h/statistics/tx_bytes")
    sent_before = int(counters.read_text())
    runner = Runner(home)
    try:
        result = runner.run(f"CLONE {http_server['url']}/disk.img {node.name}:{node.vm_dir}/7/disk.0\n")
    finally:
        runner.close()
    assert result.ok, result
    sent = int(counters.read_text()) - sent_before
    copy = node.vm_dir / "7/disk.0"
    assert sha(copy) == sha(body) and copy.stat().st_size == 64 * MiB
    assert 3 * MiB < sent < 8 * MiB


def test_a_sparse_copy_interrupted_with_its_service_resumes_from_the_partial(shaped, headnode):
    """A front-end image with holes going to a host behind a 100 Mbit/s link; the service is killed mid-copy and
    the next one resumes the run from the size the copy had reached: only the rest of the data crosses, and the
    copy is exact and verified."""
    home, node = shaped["home"], shaped["node"]
    pieces = [(i * 12 * MiB + 4097, 6 * MiB) for i in range(8)]  # 48 MiB of data: about 4 s at the cap
    base = sparse_file(shaped["images"] / "disk.img", 100 * MiB, pieces)
    dest = node.vm_dir / "9/images/disk.0"
    script = shaped["images"] / "job.script"
    script.write_text(f"CLONE {home.config.frontend_name}:{base} {node.name}:{dest}\n")
    try:
        run_id = json.loads(headnode("run", str(script), "--vm", "9", "--detach", "--json").stdout)["run"]
        wait_for(lambda: copied(headnode, run_id) >= 40 * MiB, what="three extents copied")
        pid = service_pid(shaped)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: lock_holder(ServicePaths(home)) is None, what="the service to die")
        assert not dest.exists()
        final = follow_to_the_end(headnode)
    finally:
        stop_service(home)
    (new,) = [r for r in final if r.get("resumed_from") == run_id]
    assert new["state"] == "done"
    assert sha(dest) == sha(base) and dest.stat().st_size == base.stat().st_size
    assert allocated(dest) <= 1.5 * 48 * MiB
    log = (home.logs / "vm-9.log").read_text()
    resumed = re.search(r"\(extents, local to (openssh|paramiko), resumed at byte ([0-9]+)", log)
    assert resumed is not None and int(resumed.group(2)) > 24 * MiB, log
    assert f"checksum {cksum(base)}" in log
