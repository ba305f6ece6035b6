"""The host image cache (issue 15) on real hosts: real sshd, real files, the same scripts on a shared host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.language.script import parse_script
from engine.transfers.actions import Transfers
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
from tests.system import test_transfers

runner = test_transfers.runner  # the fixture: an executor on the world's home
Runner = test_transfers.Runner


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


def entries(world, host: str = "host01") -> list:
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


def host_file(world, vm: int, host: str = "host01"):
    return world["hosts"][host].vm_dir / f"{vm}" / "images" / "disk.0"


def clone(world, runner, source, vm: int, host: str = "host01"):
    target = f"{host}:{world['hosts'][host].vm_dir}/{vm}/images/disk.0"
    result = runner.run(f"CLONE {source} {target}", vm=vm)
    assert result.ok, result.error
    return vm_log(world, vm)


def test_a_corrupted_entry_is_detected_on_copy_out_dropped_and_fetched_again(world, runner) -> None:
    source = world["images"] / "base.img"
    source.write_bytes(os.urandom(2 << 20))
    clone(world, runner, f"{world['fe']}:{source}", 7)
    [entry] = entries(world)
    with open(entry.path, "r+b") as f:  # one byte rots on the host's disk; size and sidecar unchanged
        f.seek(12345)
        byte = f.read(1)
        f.seek(12345)
        f.write(bytes([byte[0] ^ 0xFF]))
    log = clone(world, runner, f"{world['fe']}:{source}", 8)
    assert f"cache: entry {entry.key} on host01 is not trusted (a copy of it reads as cksum:" in log
    assert "cache refetched" in log and "2.0 MiB over the link" in log
    assert cksum(host_file(world, 8)) == cksum(source) == cksum(entry.path)


def test_a_source_changed_in_place_with_its_mtime_put_back_is_never_served_stale(world, runner) -> None:
    """Same size, same mtime (os.utime restores it to the nanosecond), new content: the memo sees the ctime."""
    source = world["images"] / "base.img"
    source.write_bytes(os.urandom(2 << 20))
    clone(world, runner, f"{world['fe']}:{source}", 7)
    before = source.stat()
    with open(source, "r+b") as f:
        f.write(os.urandom(4096))
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = source.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    log = clone(world, runner, f"{world['fe']}:{source}", 8)
    assert "cache miss" in log
    assert cksum(host_file(world, 8)) == cksum(source) != cksum(host_file(world, 7))
    assert len(entries(world)) == 2


def test_an_http_source_is_fetched_once_until_its_etag_changes(world, runner, http_server) -> None:
    root = http_server["root"]
    (root / "net.img").write_bytes(os.urandom(2 << 20))
    url = f"{http_server['url']}/net.img"
    assert "cache miss" in clone(world, runner, url, 7)
    assert "cache hit" in clone(world, runner, url, 8)
    old = cksum(root / "net.img")
    (root / "net.img").write_bytes(os.urandom(2 << 20))  # same size, new body: the server sends a new ETag
    log = clone(world, runner, url, 9)
    assert "cache miss" in log and "2.0 MiB over the link" in log
    assert cksum(host_file(world, 9)) == cksum(root / "net.img") != old
    [first, second] = sorted(entries(world), key=lambda e: e.sidecar.fetched)
    assert first.sidecar.checksum == old and second.sidecar.validators.etag != first.sidecar.validators.etag


def head_sent(lab) -> int:
    """Bytes the head has sent into the lab (its veth's counter)."""
    return int(Path(f"/sys/class/net/hn{lab.tag}h/statistics/tx_bytes").read_text())


def test_two_deploys_of_one_image_to_one_host_at_once_fetch_it_once(shaped) -> None:
    """Behind a 100 Mbit/s link (24 MiB: about 2 s each way), two scripts CLONE one image to one host at once: the
    head sends it once (its veth's counter), one deploy fetches, the other waits for it and copies on the host."""
    home, node, lab = shaped["home"], shaped["node"], shaped["lab"]
    image = shaped["images"] / "twice.img"
    image.write_bytes(os.urandom(24 << 20))
    head = Runner(home)
    before = head_sent(lab)
    try:
        runs = [
            head.executor.submit(
                parse_script(f"CLONE {home.config.frontend_name}:{image} {node.name}:{node.vm_dir}/{vm}/disk.0\n"), vm
            )
            for vm in (7, 8)
        ]
        results = [run.wait(120) for run in runs]
    finally:
        head.close()
    assert all(r is not None and r.ok for r in results), results
    sent = head_sent(lab) - before
    assert sent < 1.25 * (24 << 20), f"the head sent {sent} bytes for one 24 MiB image"
    logs = [(home.logs / f"vm-{vm}.log").read_text() for vm in (7, 8)]
    assert sorted("cache miss" in log for log in logs) == [False, True]
    assert any("cache waited" in log or "cache hit" in log for log in logs)
    for vm in (7, 8):
        assert cksum(node.vm_dir / f"{vm}" / "disk.0") == cksum(image)


KILLED_HEAD = """
import sys
from engine.events import EventBus
from engine.home import Home
from engine.language.script import parse_script
from engine.transfers.executor import Executor
Executor(Home(sys.argv[1]), EventBus()).submit(parse_script(sys.argv[2]), 7).wait(300)
"""


def test_a_head_killed_mid_fetch_leaves_no_entry_that_a_later_clone_trusts(shaped) -> None:
    """kill -9 of the process fetching into a host's cache (64 MiB at 100 Mbit/s): its lock goes with its
    connection, what it left is a part no listing or CLONE trusts, and the next CLONE fetches it whole."""
    home, node = shaped["home"], shaped["node"]
    image = shaped["images"] / "killed.img"
    image.write_bytes(os.urandom(64 << 20))
    script = f"CLONE {home.config.frontend_name}:{image} {node.name}:{node.vm_dir}/7/disk.0\n"
    cache = node.vm_dir / CACHE_DIR_NAME
    head = subprocess.Popen([sys.executable, "-c", KILLED_HEAD, str(home.root), script])
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".part") and p.stat().st_size > (8 << 20) for p in _files(cache)):
            assert time.monotonic() < deadline and head.poll() is None, "the fetch never got going"
            time.sleep(0.05)
        head.kill()
        head.wait()
    finally:
        if head.poll() is None:
            head.kill()
    transfers = Transfers(home, SshPool())
    try:
        listing = transfers.host_cache(node.name).listing(lambda free, used: 0)
    finally:
        transfers.pool.close()
    assert listing.entries == [] and any(name.endswith(".part") for name in listing.untrusted)
    assert not (node.vm_dir / "7" / "disk.0").exists()
    again = Runner(home)
    try:
        result = again.run(script.replace("/7/", "/8/"), vm=8)
    finally:
        again.close()
    assert result.ok, result.error
    assert "cache miss" in (home.logs / "vm-8.log").read_text()
    assert cksum(node.vm_dir / "8" / "disk.0") == cksum(image)
    assert not [p for p in _files(cache) if p.name.endswith(".part")]


def _files(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []


def images_of(world, count: int, mib: int = 3) -> list[Path]:
    paths = []
    for index in range(count):
        path = world["images"] / f"img{index}.img"
        path.write_bytes(os.urandom(mib << 20))
        paths.append(path)
    return paths


def test_cache_warm_list_pin_and_evict_from_the_cli(world, headnode) -> None:
    a, b = images_of(world, 2)
    r = headnode("cache", "warm", str(a), "host01", "host02", "--json")
    assert r.returncode == 0, r.stderr
    # the fan-out's events as JSON lines, then the outcome
    assert [(o["host"], o["state"], o["sent"]) for o in json.loads(r.stdout.splitlines()[-1])] == [
        ("host01", "fetched", 3 << 20),
        ("host02", "fetched", 3 << 20),
    ]
    again = json.loads(headnode("cache", "warm", f"{world['fe']}:{a}", "host01", "--json").stdout)
    assert [(o["state"], o["sent"]) for o in again] == [("hit", 0)]
    assert headnode("cache", "warm", str(b), "host01").returncode == 0
    listed = json.loads(headnode("cache", "list", "host01", "--json").stdout)
    got = {e["source"]: e for e in listed["entries"]}
    assert set(got) == {f"{world['fe']}:{a}", f"{world['fe']}:{b}"}
    for entry in got.values():
        assert {"host", "source", "size", "checksum", "path", "last_used", "pinned"} <= set(entry)
        assert entry["host"] == "host01" and entry["size"] == 3 << 20 and os.path.isfile(entry["path"])
    assert got[f"{world['fe']}:{a}"]["checksum"] == cksum(a)
    assert listed["hosts"][0]["usage"] == 6 << 20 and listed["hosts"][0]["budget"] > 0
    assert "host01: 2 entries, 6.0 MiB of" in headnode("cache", "list").stdout

    assert headnode("cache", "pin", "host01", cksum(a)).returncode == 0
    before_dry = json.loads(headnode("cache", "list", "host01", "--json").stdout)
    files_before = sorted(os.listdir(world["hosts"]["host01"].vm_dir / CACHE_DIR_NAME))
    dry = json.loads(headnode("cache", "evict", "host01", "--dry-run", "--json").stdout)
    assert [e["source"] for e in dry["evicted"]] == [f"{world['fe']}:{b}"]
    assert [(e["source"], e["why"]) for e in dry["kept"]] == [(f"{world['fe']}:{a}", "pinned")]
    after_dry = json.loads(headnode("cache", "list", "host01", "--json").stdout)
    assert after_dry["entries"] == before_dry["entries"]  # nothing changed, not even a last use
    assert sorted(os.listdir(world["hosts"]["host01"].vm_dir / CACHE_DIR_NAME)) == files_before
    r = headnode("cache", "evict", "host01")
    assert r.returncode == 0 and "evicted 1 entries" in r.stdout
    assert [e["source"] for e in json.loads(headnode("cache", "list", "host01", "--json").stdout)["entries"]] == [
        f"{world['fe']}:{a}"
    ]
    missing = headnode("cache", "evict", "host01", "cksum:1")
    assert missing.returncode == 1
    assert missing.stderr == "headnode: host host01 has no cache entry cksum:1 (see 'headnode cache list host01')\n"
    assert headnode("cache", "warm", "relative.img", "host01").returncode == 2
    assert headnode("cache", "list", "nohost").returncode == 2


def test_eviction_under_a_budget_keeps_pinned_entries_and_logs_what_went(world, runner, headnode) -> None:
    Hosts(world["home"]).update("host01", replace(Hosts(world["home"]).get("host01"), cache_max_mb=7))
    a, b, c = images_of(world, 3)
    clone(world, runner, f"{world['fe']}:{a}", 7)
    assert headnode("cache", "pin", "host01", str(a)).returncode == 0
    clone(world, runner, f"{world['fe']}:{b}", 8)
    log = clone(world, runner, f"{world['fe']}:{c}", 9)  # 9 MiB > 7: b is the least recently used unpinned
    assert f"cache: evicted {entry_key(cksum(b))} ({world['fe']}:{b}, 3.0 MiB, last used" in log
    assert sorted(e.sidecar.source for e in entries(world)) == sorted([f"{world['fe']}:{a}", f"{world['fe']}:{c}"])
    assert not (world["hosts"]["host01"].vm_dir / CACHE_DIR_NAME / entry_key(cksum(b))).exists()


def test_a_deploys_dry_run_says_which_clones_hit_the_cache_and_what_crosses_the_link(world, headnode) -> None:
    from engine.core import Engine
    from engine.defaults import sample_templates

    home = world["home"]
    with Engine(home) as engine:
        vm = engine.vms.create(sample_templates()["database.tmpl"])
    image = home.images / "ttylinux.img"

    def dry() -> dict:
        r = headnode("vm", "deploy", str(vm.id), "host01", "--dry-run", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    before = dry()
    [clone_line] = [line for line in before["lines"] if line["cache"] is not None]
    assert clone_line["action"] == "CLONE" and clone_line["cache"]["hit"] is None  # no checksum taken yet
    assert headnode("cache", "warm", str(image), "host01").returncode == 0
    after = dry()
    [planned] = [line["cache"] for line in after["lines"] if line["cache"] is not None]
    assert planned == {"host": "host01", "key": entry_key(cksum(image)), "hit": True, "over_link": 0, "bypass": False}
    assert after["link_bytes"] == after["total_bytes"] - clone_line["bytes"]
    text = headnode("vm", "deploy", str(vm.id), "host01", "--dry-run").stdout
    assert "cache hit on host01: nothing crosses the link" in text and "Bytes over the links:" in text
    assert not (world["hosts"]["host01"].vm_dir / str(vm.id)).exists()  # a dry run placed nothing
    assert json.loads(headnode("vm", "show", str(vm.id), "--json").stdout)["state"] == "pending"


def test_a_lock_held_for_a_moment_is_waited_out_and_one_in_use_is_not(cache_of, tmp_path) -> None:
    """A listing looks at each entry's lock by taking it for a moment: an eviction (or another listing) beside it
    took that entry for one in use (the console's Images screen refreshing while `e` was confirmed: "evicted 0")."""
    image = tmp_path / "a.img"
    image.write_bytes(os.urandom(1 << 20))
    sidecar = Sidecar.new(cksum(image), image.stat().st_size, "fe:" + str(image))
    paths = entry_paths(cache_of.host, sidecar.key)
    with cache_of.lock(sidecar.key, LockMode.EXCLUSIVE):
        put(cache_of, paths.part, image.read_bytes())
        cache_of.publish(os.path.basename(paths.part), sidecar)
    lock_file = os.path.join(os.path.dirname(paths.image), f".{sidecar.key}.lock")

    def held_by_another(seconds: float) -> subprocess.Popen:
        holder = subprocess.Popen(
            ["flock", "-x", lock_file, "sh", "-c", f"echo held; sleep {seconds}"], stdout=subprocess.PIPE, text=True
        )
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        return holder

    holder = held_by_another(0.05)
    [entry] = cache_of.listing(lambda free, used: 0).entries
    assert not entry.busy
    holder.wait()
    holder = held_by_another(0.3)
    with cache_of.lock(sidecar.key, LockMode.TRY_EXCLUSIVE) as lock:
        assert lock.state.held and lock.state.entry == sidecar
    holder.wait()
    holder = held_by_another(30)  # a copy out of the entry, say: in use
    try:
        [entry] = cache_of.listing(lambda free, used: 0).entries
        assert entry.busy
        with cache_of.lock(sidecar.key, LockMode.TRY_EXCLUSIVE) as lock:
            assert not lock.state.held
    finally:
        holder.kill()
        holder.wait()
