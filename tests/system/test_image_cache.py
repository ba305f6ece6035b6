"""The host image cache (issue 15) on real hosts: real sshd, real files, the same scripts on a shared host."""

from __future__ import annotations

import os
import subprocess

import pytest

from engine.transfers.cache.host_cache import HostCache, LockMode
from engine.transfers.cache.layout import (
    CACHE_DIR_NAME,
    BadSidecar,
    Sidecar,
    Validators,
    cache_dir,
    entry_key,
    entry_paths,
    key_checksum,
)
from engine.transfers.endpoints import LocalEndpoint, RemoteEndpoint
from engine.transfers.hosts import Host, Hosts
from engine.transfers.ssh import SshPool


def cksum(path) -> str:
    return "cksum:" + subprocess.run(["cksum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def test_a_sidecar_survives_json_and_a_damaged_one_says_what_is_wrong() -> None:
    sidecar = Sidecar.new("cksum:3559342497", 3 << 20, "fe:/images/a.img", Validators('"e1"', None, 3 << 20))
    assert Sidecar.from_json(sidecar.to_json(), "cksum-3559342497") == sidecar
    assert sidecar.key == entry_key(sidecar.checksum) == "cksum-3559342497"
    assert key_checksum(sidecar.key) == sidecar.checksum
    with pytest.raises(BadSidecar, match="describes cksum-3559342497, not cksum-1"):
        Sidecar.from_json(sidecar.to_json(), "cksum-1")
    with pytest.raises(BadSidecar, match="size -1 is not a byte count; source is missing"):
        Sidecar.from_json('{"checksum": "cksum:1", "size": -1, "fetched": 1, "last_used": 1}')
    with pytest.raises(ValueError):
        entry_key("md5:abc")
    host = Host("h", "ssh", "/srv/vms")
    assert cache_dir(host) == f"/srv/vms/{CACHE_DIR_NAME}"
    assert entry_paths(host, "cksum-1").part == f"/srv/vms/{CACHE_DIR_NAME}/.cksum-1.part"


@pytest.fixture(params=["ssh", "shared"])
def cache_of(request, world, tmp_path):
    """A host's cache reached over SSH (host01's sshd) or as this machine's files (a shared host)."""
    home = world["home"]
    if request.param == "ssh":
        host = Hosts(home).get("host01")
        pool = SshPool()
        yield HostCache(RemoteEndpoint(host, pool), cache_dir(host))
        pool.close()
    else:
        host = Hosts(home).get("nfs01")
        yield HostCache(LocalEndpoint(host), cache_dir(host))


def test_a_published_entry_is_trusted_and_a_part_or_a_bad_one_is_not(cache_of, tmp_path) -> None:
    image = tmp_path / "a.img"
    image.write_bytes(os.urandom(1 << 20) + bytes(3 << 20) + os.urandom(4096))
    checksum = cksum(image)
    sidecar = Sidecar.new(checksum, image.stat().st_size, "fe:" + str(image))
    paths = entry_paths(cache_of.host, sidecar.key)
    with cache_of.lock(sidecar.key, LockMode.EXCLUSIVE) as lock:
        assert lock.state.held and lock.state.entry is None
        with cache_of.lock(sidecar.key, LockMode.TRY_EXCLUSIVE) as other:
            assert not other.state.held  # an eviction skips an entry being written
        put(cache_of, paths.part, image.read_bytes()[: 1 << 20])  # a fetch cut short: wrong size
        with pytest.raises(Exception, match=r"not cksum:.*not cached"):
            cache_of.publish(os.path.basename(paths.part), sidecar)
        assert not [e for e in cache_of.listing(lambda free, used: 0).entries]
        put(cache_of, paths.part, image.read_bytes())
        cache_of.publish(os.path.basename(paths.part), sidecar)
    with cache_of.lock(sidecar.key, LockMode.SHARED) as lock:
        assert lock.state.entry == sidecar
        dest = os.path.join(cache_of.host.vm_dir, "7", ".disk.0.part")
        copied = cache_of.copy_out(lock.state.entry, dest)
    assert (copied.size, copied.checksum) == (image.stat().st_size, checksum)
    [entry] = cache_of.listing(lambda free, used: 0).entries
    assert entry.sidecar.last_used >= sidecar.last_used and not entry.busy
    assert entry.path == paths.image


def put(cache: HostCache, path: str, data: bytes) -> None:
    """Write a file into the host's cache directory as a fetch cut short or finished would leave it."""
    cache.endpoint.makedirs(os.path.dirname(path))
    writer = cache.endpoint.open_writer(path, None, len(data))
    writer.write(data)
    writer.finish()


from tests.system.test_transfers import runner  # noqa: E402,F401  (the fixture)


def entries(world, host: str = "host01") -> list:
    from engine.transfers.actions import Transfers

    transfers = Transfers(world["home"], SshPool())
    try:
        return transfers.host_cache(host).listing(lambda free, used: 0).entries
    finally:
        transfers.pool.close()


def vm_log(world, vm: int) -> str:
    return (world["home"].logs / f"vm-{vm}.log").read_text()


def test_a_second_clone_to_a_host_is_a_hit_that_crosses_no_link(world, runner, tmp_path) -> None:
    source = world["images"] / "base.img"
    source.write_bytes(os.urandom(3 << 20))
    host = world["hosts"]["host01"]
    first = runner.run(f"CLONE {world['fe']}:{source} host01:{host.vm_dir}/7/images/disk.0")
    assert first.ok, first.error
    [entry] = entries(world)
    assert entry.sidecar.checksum == cksum(source) and entry.sidecar.source == f"{world['fe']}:{source}"
    assert "cache miss" in vm_log(world, 7) and "3.0 MiB over the link" in vm_log(world, 7)
    second = runner.run(f"CLONE {world['fe']}:{source} host01:{host.vm_dir}/8/images/disk.0", vm=8)
    assert second.ok, second.error
    assert "cache hit" in vm_log(world, 8) and "0 B over the link" in vm_log(world, 8)
    for vm in (7, 8):
        assert cksum(host.vm_dir / f"{vm}" / "images" / "disk.0") == cksum(source)
    assert [e.key for e in entries(world)] == [entry.key]
