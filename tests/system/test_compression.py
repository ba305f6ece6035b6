"""Compression on a host's link (COMPRESS = zstd, a host's or its driver's) against real sshd hosts: every stream
that crosses a link is compressed and still exact, less crosses a capped link, and an end without zstd copies
uncompressed and says so."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
from pathlib import Path

import pytest

from engine.transfers import compression
from engine.transfers.hosts import Hosts
from engine.transfers.openssh import OpenSsh
from tests.conftest import site_driver
from tests.system.sshd import start_sshd
from tests.system.test_sparse_transfers import SHAPES, sparse_file
from tests.system.test_transfers import Runner, cksum, leftovers, sha, vm_log, wait_for_bytes

MiB = 1 << 20


def log_like(path: Path, size: int) -> Path:
    """`size` bytes of lines like a service's log (what compresses several times, as text images do)."""
    rng = random.Random(size)
    levels, words = ("INFO", "WARN", "DEBUG", "ERROR"), ("session", "opened", "closed", "user", "job", "disk", "ok")
    lines, total = [], 0
    while total < size:
        line = (
            f"2026-12-02T06:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d} "
            f"node{rng.randrange(64):02d} {rng.choice(levels)} [{rng.randrange(1, 40000)}] "
            f"{' '.join(rng.choice(words) for _ in range(rng.randrange(3, 9)))} id={rng.randrange(16**8):08x}\n"
        )
        lines.append(line)
        total += len(line)
    path.write_bytes("".join(lines).encode()[:size])
    return path


@pytest.fixture
def without_zstd(tmp_path):
    """A directory of links to every program on this machine's PATH (and sbin) but zstd's."""
    folder = tmp_path / "no-zstd-bin"
    folder.mkdir()
    dirs = [*os.environ.get("PATH", "").split(":"), "/usr/sbin", "/sbin"]
    for directory in filter(os.path.isdir, dirs):
        for name in os.listdir(directory):
            target = folder / name
            if "zstd" not in name and not target.exists():
                target.symlink_to(os.path.join(directory, name))
    yield folder
    compression.zstd_here.cache_clear()  # the front end's answer is kept: forget a PATH without it


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
def test_every_stream_across_a_link_is_compressed_and_exact(world, http_server, accelerated):
    """host01 compresses by its own setting, host02 by its driver's: a stream and a sparse copy to each, host to
    host both ways, back to the front end, and an HTTP body; each copy exact and its checksum the source's."""
    home, fe = world["home"], world["fe"]
    hosts = Hosts(home)
    # No image caches: each line's own copier is what this reads in the log (through a cache the same copiers
    # fill the cache, test_image_cache.py).
    hosts.update("host01", dataclasses.replace(hosts.get("host01"), compress="zstd", cache_max_mb=0))
    site_driver(home, "zssh", base="ssh", COMPRESS="zstd")
    hosts.update("host02", dataclasses.replace(hosts.get("host02"), driver="zssh", cache_max_mb=0))
    d1, d2 = world["hosts"]["host01"].vm_dir, world["hosts"]["host02"].vm_dir
    text = log_like(world["images"] / "text.img", 3 * MiB + 5)
    size, pieces = SHAPES["odd-extents"]
    disk = sparse_file(world["images"] / "disk.img", size, pieces)
    body = sparse_file(http_server["root"] / "body.img", size, pieces)
    parked = home.vms / "7/e"
    script = (
        f"CLONE {fe}:{text} host01:{d1}/7/a\n"
        f"CLONE {fe}:{disk} host02:{d2}/7/b\n"
        f"CLONE host01:{d1}/7/a host02:{d2}/7/c\n"
        f"CLONE host02:{d2}/7/b host01:{d1}/7/d\n"
        f"MV host01:{d1}/7/d {fe}:{parked}\n"
        f"CLONE {http_server['url']}/body.img host01:{d1}/7/f\n"
    )
    runner = Runner(home, accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    try:
        result = runner.run(script)
    finally:
        runner.close()
    assert result.ok, result
    copies = {d1 / "7/a": text, d2 / "7/b": disk, d2 / "7/c": text, parked: disk, d1 / "7/f": body}
    for copy, source in copies.items():
        assert copy.stat().st_size == source.stat().st_size and sha(copy) == sha(source), copy
    c = f"{'openssh' if accelerated else 'paramiko'}+zstd"
    log = vm_log(world)
    for method in (
        f"(stream, local to {c})",
        f"(extents, local to {c},",
        f"(extents, {c} to {c})",  # a host sends its extents, all data here
        f"(extents, {c} to {c}, sent",
        f"(extents, {c} to local,",
        f"(extents, http to {c},",
    ):
        assert method in log, method
    assert f"checksum {cksum(text)} (stream, local to {c})" in log  # verified as without compression
    assert "no zstd" not in log and leftovers(d1) == leftovers(d2) == []


def test_compression_sends_less_across_a_capped_link(shaped):
    """Log-like data behind the 100 Mbit/s link: a fraction of it crosses (the head's veth counters)."""
    home, node, lab = shaped["home"], shaped["node"], shaped["lab"]
    hosts = Hosts(home)
    hosts.update(node.name, dataclasses.replace(hosts.get(node.name), compress="zstd"))
    text = log_like(shaped["images"] / "text.img", 24 * MiB)
    counters = Path(f"/sys/class/net/hn{lab.tag}h/statistics/tx_bytes")
    sent_before = int(counters.read_text())
    runner = Runner(home)
    try:
        result = runner.run(f"CLONE {home.config.frontend_name}:{text} {node.name}:{node.vm_dir}/7/disk.0\n")
    finally:
        runner.close()
    assert result.ok, result
    sent = int(counters.read_text()) - sent_before
    assert sha(node.vm_dir / "7/disk.0") == sha(text)
    assert sent < 24 * MiB / 2, sent


def test_an_end_without_zstd_copies_uncompressed_and_says_so(world, own_user, tmp_path, without_zstd, monkeypatch):
    """A host whose PATH has no zstd (its sshd's SetEnv), then a front end without one: each copy goes
    uncompressed, exact, and the VM's log says which end lacked it."""
    home, fe = world["home"], world["fe"]
    authorized = tmp_path / "authorized_keys"
    shutil.copy(own_user / ".ssh/id_ed25519.pub", authorized)
    bare = start_sshd(tmp_path, "host09", authorized, extra=f"SetEnv PATH={without_zstd}\n")
    try:
        with open(own_user / ".ssh/known_hosts", "a") as known:
            known.write(bare.host_key_line + "\n")
        Hosts(home).create(bare.record(compress="zstd"))
        hosts = Hosts(home)
        hosts.update("host01", dataclasses.replace(hosts.get("host01"), compress="zstd"))
        text = log_like(world["images"] / "text.img", MiB)
        runner = Runner(home)
        try:
            assert runner.run(f"CLONE {fe}:{text} host09:{bare.vm_dir}/7/a\n").ok
            monkeypatch.setenv("PATH", str(without_zstd))
            compression.zstd_here.cache_clear()
            assert runner.run(f"CLONE {fe}:{text} host01:{world['hosts']['host01'].vm_dir}/7/b\n").ok
        finally:
            runner.close()
        assert sha(bare.vm_dir / "7/a") == sha(text) == sha(world["hosts"]["host01"].vm_dir / "7/b")
        log = vm_log(world)
        assert "COMPRESS = zstd, but host host09 has no zstd: copying uncompressed" in log
        assert "COMPRESS = zstd, but the front end has no zstd: copying uncompressed" in log
        assert "+zstd" not in log
    finally:
        bare.process.terminate()
        bare.process.wait(5)


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
@pytest.mark.parametrize("kind", ["stream", "extents"])
def test_a_compressed_copy_dropped_mid_stream_resumes_and_verifies(shaped, kind, accelerated):
    """Random data (it does not compress: 24 MiB take about 2 s at the cap) whose connection drops a third of the
    way: the copy resumes from what the host stored of the decompressed stream, and the result verifies."""
    home, node = shaped["home"], shaped["node"]
    hosts = Hosts(home)
    # No image cache: the copy goes straight to the VM's file, whose .part this watches (test_image_cache.py).
    hosts.update(node.name, dataclasses.replace(hosts.get(node.name), compress="zstd", cache_max_mb=0))
    if kind == "stream":
        source = shaped["images"] / "full.img"
        source.write_bytes(os.urandom(24 * MiB))
    else:
        source = sparse_file(shaped["images"] / "sparse.img", 64 * MiB, [(i * 8 * MiB + 1, 3 * MiB) for i in range(8)])
    part = node.vm_dir / "7/.disk.0.part"
    runner = Runner(home, accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    drops: list[int] = []

    def drop(event) -> None:
        if event.kind == "action_progress" and not drops and event.bytes_done >= (event.bytes_total or 1 << 40) // 3:
            wait_for_bytes(part)
            drops.append(node.drop_connections())

    runner.bus.subscribe(drop)
    try:
        result = runner.run(f"CLONE {home.config.frontend_name}:{source} {node.name}:{node.vm_dir}/7/disk.0\n")
    finally:
        runner.close()
    assert drops and drops[0] >= 1
    assert result.ok, result
    assert sha(node.vm_dir / "7/disk.0") == sha(source)
    log = (home.logs / "vm-7.log").read_text()
    carrier = "openssh" if accelerated else "paramiko"
    assert f"({kind}, local to {carrier}+zstd, resumed at byte" in log
    assert f"checksum {cksum(source)}" in log and leftovers(node.vm_dir) == []
