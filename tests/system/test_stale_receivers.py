"""A receiver that starts late never spoils a resumed copy, on every path that writes a partial file.

A killed service's last channel request can reach sshd after the next service has measured the partial file and
resumed it: starting from byte 0, that stale receiver removed the `.part` and made a new one, the resumed receiver
(seek to the size measured) wrote into the new file, and bytes 0..N were left a hole. Each case here interrupts a
copy, then starts a stale receiver from byte 0 by hand (the engine's own writer, on a connection of its own)
between the measurement and the resumed receiver, and holds it open until the copy has noticed it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.errors import OperationError
from engine.language.script import parse_script
from engine.transfers.actions import Transfers
from engine.transfers.endpoints import LocalEndpoint, RemoteEndpoint
from engine.transfers.hosts import Hosts
from engine.transfers.job import Job
from engine.transfers.openssh import OpenSsh
from engine.transfers.ssh import SshPool
from engine.transfers.streams import Writer
from tests.system.test_transfers import FAST_RETRY, Runner, wait_for_bytes

SIZE = 6 << 20


@pytest.fixture(autouse=True)
def uncached(world):
    """These tests plant and watch the VM's own .part: CLONEs to host01 go straight to it, not through the host's
    image cache (whose part the same writers make: test_image_cache.py)."""
    hosts = Hosts(world["home"])
    hosts.update("host01", replace(hosts.get("host01"), cache_max_mb=0))


def sparse_image(path: Path) -> bytes:
    """A file of SIZE bytes with data at its start and end and a hole between (sent extent by extent)."""
    head, tail = os.urandom(2 << 20), os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(head)
        f.seek(SIZE - len(tail))
        f.write(tail)
    return head + bytes(SIZE - len(head) - len(tail)) + tail


CASES = {  # source, destination, through the OpenSSH accelerator
    "http-paramiko": ("http", "host01", False),  # a body sent as the extents of its data
    "http-openssh": ("http", "host01", True),
    "stream-paramiko": ("fe", "host01", False),  # a file with no holes, streamed whole
    "stream-openssh": ("fe", "host01", True),
    "extents-paramiko": ("fe-sparse", "host01", False),
    "extents-openssh": ("fe-sparse", "host01", True),
    "http-to-front-end": ("http", "fe", False),
    "host-to-front-end": ("host01", "fe", False),
}


@pytest.mark.parametrize(
    ("case", "stale_state"),
    [(case, "writing") for case in CASES] + [("http-paramiko", "ended"), ("http-to-front-end", "ended")],
)
def test_a_stale_receiver_never_spoils_a_resumed_copy(world, http_server, monkeypatch, case, stale_state):
    """ "writing": the stale receiver still holds the file the resumed one comes to (its lock refuses the resumed
    one); "ended": it made the file again and ended before (the file is not the one measured)."""
    source_kind, dest_name, accelerated = CASES[case]
    host01 = world["hosts"]["host01"]
    if source_kind == "http":
        data = os.urandom(SIZE)
        (http_server["root"] / "big.img").write_bytes(data)
        source = f"{http_server['url']}/flaky/big.img"  # the first response stops half-way: a resume follows
    elif source_kind == "fe-sparse":
        path = world["images"] / "sparse.img"
        data = sparse_image(path)
        source = f"{world['fe']}:{path}"
    elif source_kind == "fe":
        path = world["images"] / "base.img"
        data = os.urandom(SIZE)
        path.write_bytes(data)
        source = f"{world['fe']}:{path}"
    else:
        path = host01.vm_dir / "src.img"
        data = os.urandom(SIZE)
        path.write_bytes(data)
        source = f"host01:{path}"
    dest_dir = world["home"].vms if dest_name == "fe" else host01.vm_dir
    final = dest_dir / "7/images/disk.0"
    part = final.parent / ".disk.0.part"
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    dest_record = runner.executor.transfers.hosts.resolve(world["fe"] if dest_name == "fe" else "host01")

    if source_kind != "http":  # drop the connections once the partial file holds data

        def drop(event) -> None:
            if getattr(event, "kind", "") == "action_progress" and event.bytes_done > 0 and not dropped:
                wait_for_bytes(part)
                dropped.append(host01.drop_connections())

        dropped: list[int] = []
        runner.bus.subscribe(drop)

    pool = SshPool()
    stale: list[Writer] = []
    ended = threading.Event()
    cls = LocalEndpoint if dest_name == "fe" else RemoteEndpoint

    def resumed(original):
        def writer(self, path, resume, *args, **kwargs):
            if resume is not None and not stale:
                start_stale(path)
            return original(self, path, resume, *args, **kwargs)

        return writer

    def start_stale(path: str) -> None:
        def made_again() -> bool:  # a new file may reuse the old one's inode number; its ctime is new
            return part.exists() and (os.stat(part).st_ino, os.stat(part).st_ctime_ns) != measured

        measured = (os.stat(part).st_ino, os.stat(part).st_ctime_ns)
        late = LocalEndpoint(dest_record) if dest_name == "fe" else RemoteEndpoint(dest_record, pool)
        stale.append(late.open_writer(path, None, None))
        deadline = time.monotonic() + 10
        while not made_again() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the stale receiver has made its new partial file
        assert made_again(), "the stale receiver made no partial file of its own"
        if stale_state == "ended":
            ended.set()
            stale[0].abort()

    for method in ("open_writer", "open_extent_writer"):
        monkeypatch.setattr(cls, method, resumed(getattr(cls, method)))

    def end_the_stale_receiver(event) -> None:
        # Once the resumed copy has met the stale receiver and backs off, the stale one ends (its connection is
        # gone in real life; here its stream is closed).
        if getattr(event, "kind", "") == "action_retry" and stale and not ended.is_set():
            ended.set()
            stale[0].abort()

    runner.bus.subscribe(end_the_stale_receiver)
    try:
        result = runner.run(f"CLONE {source} {dest_name if dest_name != 'fe' else world['fe']}:{final}\n")
    finally:
        if stale and not ended.is_set():
            stale[0].abort()
        runner.close()
        pool.close()
    assert stale, "the copy was never resumed"
    assert result.ok, result
    assert hashlib.sha256(final.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert not part.exists()
    refused = "another copy is writing it" if stale_state == "writing" else "it changed since it was measured"
    assert any(refused in retry.error for retry in runner.of("action_retry")), runner.of("action_retry")


@pytest.mark.parametrize("dest_name", ["host01", "fe"])
def test_a_resumed_http_copy_is_checked_whole(world, http_server, dest_name):
    """An HTTP source keeps no checksum: a resumed copy whose head is damaged is refused, not published."""
    data = os.urandom(3 << 20)
    (http_server["root"] / "big.img").write_bytes(data)
    dest_dir = world["home"].vms if dest_name == "fe" else world["hosts"]["host01"].vm_dir
    final = dest_dir / "7/images/disk.0"
    final.parent.mkdir(parents=True)
    part = final.parent / ".disk.0.part"
    part.write_bytes(bytes(1 << 20) + data[1 << 20 : 2 << 20])  # the first MiB lost (a hole), the second right
    host = world["fe"] if dest_name == "fe" else "host01"
    (line,) = parse_script(f"CLONE {http_server['url']}/big.img {host}:{final}\n", "test.script").lines
    pool = SshPool()
    try:
        transfers = Transfers(world["home"], pool, None)
        with pytest.raises(OperationError, match="checksum mismatch"):
            transfers.run(line.action, Job(retry=FAST_RETRY), 7, resume_partial=True)
    finally:
        pool.close()
    assert not final.exists() and not part.exists()
