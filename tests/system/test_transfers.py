"""Every action through every driver, against real sshd hosts, a real HTTP server, real mkswap/mkfs."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.errors import InputError, OperationError
from engine.events import EventBus
from engine.language.script import parse_script
from engine.transfers.checksums import new_checksum
from engine.transfers.endpoints import RemoteEndpoint
from engine.transfers.executor import Executor, ScriptResult
from engine.transfers.hosts import Host, Hosts
from engine.transfers.job import RetryPolicy
from engine.transfers.journal import Journal
from engine.transfers.openssh import OpenSsh
from engine.transfers.ssh import SshPool
from tests.conftest import site_driver
from tests.system.sshd import SshHost, start_sshd

FAST_RETRY = RetryPolicy(attempts=4, first_delay=0.05)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cksum(path: Path) -> str:
    """The checksum the engine records for a copy of `path`, as the POSIX `cksum` tool computes it."""
    return "cksum:" + subprocess.run(["cksum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def image(folder: Path, name: str = "base.img", size: int = 3 << 20) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


class Runner:
    """An executor on the test's home that records every event."""

    def __init__(self, home, **options) -> None:
        self.events: list = []
        self.bus = EventBus()
        self.bus.subscribe(self.events.append)
        self.executor = Executor(home, self.bus, retry=FAST_RETRY, **options)

    def run(self, text: str, vm: int | None = 7, **kw) -> ScriptResult:
        result = self.executor.submit(parse_script(text, "test.script"), vm, **kw).wait(60)
        assert result is not None, "the script did not finish in time"
        return result

    def of(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]

    def close(self) -> None:
        self.executor.close()


@pytest.fixture
def runner(world):
    r = Runner(world["home"])
    yield r
    r.close()


def vm_log(world, vm: int = 7) -> str:
    return (world["home"].logs / f"vm-{vm}.log").read_text()


def wait_for_bytes(path: Path, timeout: float = 10) -> None:
    """Wait until a partial file holds data (the host writes it a moment after we sent it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} stayed empty")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part"))


SWAP_MAGIC = (4086, b"SWAPSPACE2")  # at the end of the first 4 KiB page
EXT4_MAGIC = (1080, b"\x53\xef")
ISO_MAGIC = (32769, b"CD001")


def has_magic(path: Path, magic: tuple[int, bytes]) -> bool:
    with open(path, "rb") as f:
        f.seek(magic[0])
        return f.read(len(magic[1])) == magic[1]


def host_dir(world, name: str) -> Path:
    if name == "nfs01":
        return world["shared"]
    return world["hosts"][name].vm_dir


@pytest.mark.parametrize("host", ["host01", "nfs01"])
def test_every_action_through_ssh_and_shared(world, runner, host):
    fe, images = world["fe"], world["images"]
    base = image(images)
    ctx = images / "context.sh"
    ctx.write_text('HOSTNAME="vm-7"\n')
    extra = images / "init.sh"
    extra.write_text("echo hello\n")
    d = host_dir(world, host)
    vm = f"{host}:{d}/7/images"
    result = runner.run(
        f"CLONE {fe}:{base} {vm}/disk.0\n"
        f"LN {fe}:{base} {vm}/disk.1\n"
        f"MKSWAP 8 {vm}/disk.2\n"
        f"MKIMAGE 8 ext4 {vm}/disk.3\n"
        f"CONTEXT {ctx} {extra} {vm}/disk.4\n"
        f"MV {vm}/disk.0 {vm}/disk.5\n"
        f"DELETE {vm}/disk.3\n"
    )
    assert result.ok, result
    out = d / "7" / "images"
    assert sha(out / "disk.5") == sha(base) and not (out / "disk.0").exists()
    if host == "nfs01":
        assert (out / "disk.1").is_symlink() and os.readlink(out / "disk.1") == str(base)
    else:
        assert not (out / "disk.1").is_symlink() and sha(out / "disk.1") == sha(base)  # ssh LN copies
    assert (out / "disk.2").stat().st_size == 8 << 20 and has_magic(out / "disk.2", SWAP_MAGIC)
    assert (out / "disk.2").stat().st_blocks * 512 < 8 << 20  # sparse
    assert not (out / "disk.3").exists()
    iso = (out / "disk.4").read_bytes()
    assert has_magic(out / "disk.4", ISO_MAGIC) and b'HOSTNAME="vm-7"' in iso and b"echo hello" in iso
    assert leftovers(d) == []
    log = vm_log(world)
    assert "[TM][I]: CLONE" in log and f"checksum {cksum(base)}" in log and "Script finished successfully" in log


def test_mkimage_makes_a_file_system(world, runner):
    d = host_dir(world, "host01")
    assert runner.run(f"MKIMAGE 8 ext4 host01:{d}/7/images/disk.3\n").ok
    assert (d / "7/images/disk.3").stat().st_size == 8 << 20 and has_magic(d / "7/images/disk.3", EXT4_MAGIC)


def test_dummy_driver_touches_nothing_and_logs(world, runner, tmp_path):
    fe, base = world["fe"], image(world["images"])
    d = tmp_path / "dummy-vms"
    vm = f"dummy01:{d}/7/images"
    result = runner.run(
        f"CLONE {fe}:{base} {vm}/disk.0\nLN {fe}:{base} {vm}/disk.1\nMKSWAP 8 {vm}/disk.2\n"
        f"MKIMAGE 8 ext4 {vm}/disk.3\nCONTEXT {base} {vm}/disk.4\nMV {vm}/disk.0 {vm}/disk.5\nDELETE {vm}\n"
    )
    assert result.ok
    assert not d.exists()
    assert vm_log(world).count("dummy: would ") == 7


def test_clone_host_to_host_goes_through_the_front_end(world, runner):
    src = world["hosts"]["host01"].vm_dir / "src.img"
    src.write_bytes(os.urandom(2 << 20))
    d2 = host_dir(world, "host02")
    result = runner.run(f"CLONE host01:{src} host02:{d2}/7/images/disk.0\n")
    assert result.ok, result
    assert sha(d2 / "7/images/disk.0") == sha(src)


def test_stop_resume_and_migrate_round_trip(world, runner):
    """OpenNebula's stop parks host:D/7/images at fe:F/7; resume and migrate bring the directory back."""
    fe, base = world["fe"], image(world["images"])
    d1, d2 = host_dir(world, "host01"), host_dir(world, "host02")
    fedir = world["home"].vms
    rdir1, rdir2 = f"host01:{d1}/7/images", f"host02:{d2}/7/images"
    assert runner.run(f"CLONE {fe}:{base} {rdir1}/disk.0\nMKSWAP 4 {rdir1}/disk.1\n").ok
    assert runner.run(f"MV {rdir1} {fe}:{fedir}/7\n").ok  # stop
    assert sha(fedir / "7/images/disk.0") == sha(base) and not (d1 / "7/images").exists()
    assert runner.run(f"MV {fe}:{fedir}/7/images {rdir1}\n").ok  # resume
    assert sha(d1 / "7/images/disk.0") == sha(base) and has_magic(d1 / "7/images/disk.1", SWAP_MAGIC)
    assert not (fedir / "7/images").exists()
    assert runner.run(f"MV {rdir1} {rdir2}\n").ok  # migrate
    assert sha(d2 / "7/images/disk.0") == sha(base) and not (d1 / "7/images").exists()
    assert runner.run(f"MV {rdir2}/disk.0 {fe}:{fedir}/7/disk.0\nDELETE {rdir2}\n").ok  # epilog with SAVE
    assert sha(fedir / "7/disk.0") == sha(base) and not (d2 / "7/images").exists()
    assert leftovers(d1) == leftovers(d2) == leftovers(fedir) == []


def test_stop_resume_on_the_shared_driver(world, runner):
    fe, base = world["fe"], image(world["images"])
    d, fedir = world["shared"], world["home"].vms
    rdir = f"nfs01:{d}/7/images"
    assert runner.run(f"CLONE {fe}:{base} {rdir}/disk.0\n").ok
    assert runner.run(f"MV {rdir} {fe}:{fedir}/7\n").ok
    assert sha(fedir / "7/images/disk.0") == sha(base)
    assert runner.run(f"MV {fe}:{fedir}/7/images {rdir}\n").ok
    assert sha(d / "7/images/disk.0") == sha(base)


def test_mv_refuses_to_replace_a_directory_holding_files(world, runner):
    d1 = host_dir(world, "host01")
    (d1 / "7/images").mkdir(parents=True)
    (d1 / "7/images/disk.0").write_bytes(b"old")
    (d1 / "8/images").mkdir(parents=True)
    (d1 / "8/images/disk.0").write_bytes(b"new")
    result = runner.run(f"MV host01:{d1}/8/images host01:{d1}/7/images\n")
    assert result.outcome == "failed" and "already holds files" in result.error
    assert (d1 / "7/images/disk.0").read_bytes() == b"old"


def test_http_clone_checks_length_and_resumes_with_range(world, runner, http_server):
    data = os.urandom(3 << 20)
    (http_server["root"] / "disk.img").write_bytes(data)
    d = host_dir(world, "host01")
    url = http_server["url"]
    assert runner.run(f"CLONE {url}/disk.img host01:{d}/7/images/disk.0\n").ok
    assert (d / "7/images/disk.0").read_bytes() == data
    # The first response stops half-way: the copy resumes with a Range request and ends whole.
    result = runner.run(f"CLONE {url}/flaky/disk.img host01:{d}/7/images/disk.1\n")
    assert result.ok, result
    assert sha(d / "7/images/disk.1") == hashlib.sha256(data).hexdigest()
    assert runner.of("action_retry") and "short body" in runner.of("action_retry")[0].error
    assert "resumed at byte" in vm_log(world)


@pytest.mark.parametrize("host", ["host01", "nfs01"])
def test_truncated_http_body_fails_and_leaves_nothing(world, runner, http_server, host):
    (http_server["root"] / "disk.img").write_bytes(os.urandom(1 << 20))
    d = host_dir(world, host)
    result = runner.run(f"CLONE {http_server['url']}/truncated/disk.img {host}:{d}/7/images/disk.0\n")
    assert result.outcome == "failed" and result.failed_line == 1
    assert "short body" in result.error and "gave up after 4 attempts" in result.error
    assert not (d / "7/images/disk.0").exists() and leftovers(d) == []


@pytest.mark.parametrize("host", ["host01", "nfs01"])
def test_https_clone_resumes_over_tls_and_refuses_an_untrusted_certificate(
    world, runner, https_server, host, monkeypatch
):
    data = os.urandom(3 << 20)
    (https_server["root"] / "disk.img").write_bytes(data)
    d, url = host_dir(world, host), https_server["url"]
    result = runner.run(f"CLONE {url}/disk.img {host}:{d}/7/images/disk.0\n")
    assert result.outcome == "failed" and "certificate not trusted: self-signed certificate" in result.error
    assert runner.of("action_retry") == [] and leftovers(d) == [] and not (d / "7/images/disk.0").exists()
    monkeypatch.setenv("SSL_CERT_FILE", str(https_server["cert"]))
    result = runner.run(f"CLONE {url}/flaky/disk.img {host}:{d}/7/images/disk.0\n")
    assert result.ok, result
    assert (d / "7/images/disk.0").read_bytes() == data and "resumed at byte" in vm_log(world)


def test_http_404_fails_without_retrying(world, runner, http_server):
    d = host_dir(world, "host01")
    result = runner.run(f"CLONE {http_server['url']}/missing.img host01:{d}/7/images/disk.0\n")
    assert result.outcome == "failed" and "HTTP 404" in result.error
    assert runner.of("action_retry") == []


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
def test_dropped_connection_is_retried_and_resumed(world, accelerated):
    """Kill the host's sshd session children after the first MiB: the copy reconnects, resumes, and verifies."""
    # The copy straight to the VM's file, whose .part this test watches (through the host's image cache the same
    # copier writes the cache's part: test_image_cache.py).
    hosts = Hosts(world["home"])
    hosts.update("host01", dataclasses.replace(hosts.get("host01"), cache_max_mb=0))
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    fe, base = world["fe"], image(world["images"], size=6 << 20)
    host = world["hosts"]["host01"]
    killed = []

    part = host.vm_dir / "7/images/.disk.0.part"

    def drop(event) -> None:
        if getattr(event, "kind", "") == "action_progress" and event.bytes_done > 0 and not killed:
            wait_for_bytes(part)  # so there is something to resume from
            killed.append(host.drop_connections())

    runner.bus.subscribe(drop)
    result = runner.run(f"CLONE {fe}:{base} host01:{host.vm_dir}/7/images/disk.0\n")
    assert killed and killed[0] >= 1
    assert result.ok, result
    assert sha(host.vm_dir / "7/images/disk.0") == sha(base)
    assert runner.of("action_retry")
    log = vm_log(world)
    assert "resumed at byte" in log and f"checksum {cksum(base)}" in log
    assert f"(stream, local to {'openssh' if accelerated else 'paramiko'}" in log  # which path ran
    assert leftovers(host.vm_dir) == []
    runner.close()


@pytest.fixture
def drop01(world, ssh_home, own_user, tmp_path):
    """A host of this test's own (its sshd may be stopped or frozen), known to ~/.ssh/known_hosts."""
    host = start_sshd(tmp_path, "drop01", ssh_home["user_home"].parent / "authorized_keys")
    yield host
    for pid in [*host.sessions(), host.process.pid]:  # frozen ones too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
    host.process.wait(5)


def connection_pids(host: SshHost, client_port: int) -> list[int]:
    """The sshd processes serving the connection from this machine's port `client_port` (ss shows who holds it)."""
    out = subprocess.run(["ss", "-tnpH", f"( sport = :{host.port} )"], capture_output=True, text=True).stdout
    return [
        int(pid) for line in out.splitlines() if f":{client_port} " in line for pid in re.findall(r"pid=(\d+)", line)
    ]


def copy_dropped_twice(world, host: SshHost, own_user: Path, last_drop) -> tuple[Runner, ScriptResult]:
    """CLONE 6 MiB to `host` over the OpenSSH accelerator, two attempts at most: the first dropped mid-stream
    (every session killed), the second ended by `last_drop(runner)` once it has written bytes."""
    with open(own_user / ".ssh" / "known_hosts", "a") as known:
        known.write(host.host_key_line + "\n")
    # No image cache: the copy goes straight to the VM's file, whose .part this watches (test_image_cache.py).
    Hosts(world["home"]).create(host.record(cache_max_mb=0))
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0))
    runner.executor.retry = RetryPolicy(attempts=2, first_delay=0.05)
    part = host.vm_dir / "7/images/.disk.0.part"
    drops: list[int] = []

    def drop(event) -> None:
        if getattr(event, "kind", "") != "action_progress" or not event.bytes_done or len(drops) == 2:
            return
        if len(drops) != len(runner.of("action_retry")):  # once per attempt
            return
        if not drops:
            wait_for_bytes(part)
            drops.append(host.drop_connections())
            return
        deadline = time.monotonic() + 10  # the stream's ssh is connecting: its session beside the pooled one
        while len(host.sessions()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        drops.append(last_drop(runner))

    runner.bus.subscribe(drop)
    base = image(world["images"], size=6 << 20)
    result = runner.run(f"CLONE {world['fe']}:{base} drop01:{host.vm_dir}/7/images/disk.0\n")
    assert len(drops) == 2 and result.outcome == "failed" and "gave up after 2 attempts" in result.error, result
    return runner, result


def test_a_copy_that_gives_up_removes_its_part_over_a_fresh_connection(world, drop01, own_user):
    """The last drop leaves the pooled connection dead but not yet seen so (here: its sshd frozen, the stream's
    session killed): the cleanup on it waited out its timeout and the partial file stayed on the host."""

    def freeze_the_pooled_connection(runner: Runner) -> int:
        pooled = runner.executor.pool.transport(drop01.record()).sock.getsockname()[1]
        frozen = connection_pids(drop01, pooled)
        assert frozen, "no sshd holds the pooled connection"
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        for pid in drop01.sessions():
            if pid not in frozen:
                os.kill(pid, signal.SIGKILL)
        return len(frozen)

    runner, _ = copy_dropped_twice(world, drop01, own_user, freeze_the_pooled_connection)
    try:
        assert leftovers(drop01.vm_dir) == [] and not (drop01.vm_dir / "7/images/disk.0").exists()
        assert "could not remove" not in vm_log(world)
    finally:
        runner.close()


def test_a_part_that_cannot_be_removed_is_named_in_the_log(world, drop01, own_user):
    """The host is gone after the last drop: the partial file stays, and the VM's log says which it is."""

    def stop_the_host(runner: Runner) -> int:
        killed = drop01.drop_connections()
        drop01.process.terminate()  # the listener: no new connection
        drop01.process.wait(5)
        return killed

    runner, _ = copy_dropped_twice(world, drop01, own_user, stop_the_host)
    try:
        assert leftovers(drop01.vm_dir) == [".disk.0.part"]
        part = f"drop01:{drop01.vm_dir}/7/images/.disk.0.part"
        assert f"could not remove the partial copy {part} (" in vm_log(world)
        assert "): remove it by hand" in vm_log(world)
    finally:
        runner.close()


def test_cancel_script_mid_copy_leaves_nothing(world, runner):
    fe, base = world["fe"], image(world["images"], size=6 << 20)
    d = host_dir(world, "host01")
    runs = []

    def cancel(event) -> None:
        if event.kind == "action_progress" and event.bytes_done > 0:
            runs[0].cancel()

    runner.bus.subscribe(cancel)
    text = f"CLONE {fe}:{base} host01:{d}/7/images/disk.0\nMKSWAP 4 host01:{d}/7/images/disk.1\n"
    runs.append(runner.executor.submit(parse_script(text), 7))
    result = runs[0].wait(60)
    assert result.outcome == "cancelled" and result.failed_line == 1
    assert not (d / "7/images/disk.0").exists() and not (d / "7/images/disk.1").exists()
    assert leftovers(d) == []
    assert [e.outcome for e in runner.of("action_finished")] == ["cancelled"]


def test_cancel_one_action(world, runner):
    fe, base = world["fe"], image(world["images"], size=6 << 20)
    d = host_dir(world, "nfs01")
    runs = []

    def cancel(event) -> None:
        if event.kind == "action_started" and event.line == 2:
            runs[0].cancel_action(2)

    runner.bus.subscribe(cancel)
    text = f"MKSWAP 4 nfs01:{d}/7/images/disk.1\nCLONE {fe}:{base} nfs01:{d}/7/images/disk.0\n"
    runs.append(runner.executor.submit(parse_script(text), 7))
    result = runs[0].wait(60)
    assert result.outcome == "cancelled" and result.failed_line == 2
    assert (d / "7/images/disk.1").exists() and not (d / "7/images/disk.0").exists()


def test_destination_outside_the_vm_directory_is_refused(world, runner):
    fe, base = world["fe"], image(world["images"])
    d = host_dir(world, "host01")
    script = parse_script(
        f"CLONE {fe}:{base} host01:{d}/7/images/disk.0\n"
        f"CLONE {fe}:{base} host01:{d}/../escape.img\n"
        f"DELETE host01:/etc\n"
        f"MV host01:/etc/passwd host01:{d}/7/x\n",
        "bad.script",
    )
    with pytest.raises(InputError) as caught:
        runner.executor.submit(script, 7)
    text = str(caught.value)
    assert "bad.script:2:" in text and "escape.img is outside the VM directory" in text
    assert "bad.script:3:" in text and "bad.script:4:" in text and "bad.script:1:" not in text
    assert not (d / "7").exists() and not (d.parent / "escape.img").exists()


def test_shell_metacharacters_in_file_names_are_carried_literally(world, runner, tmp_path):
    fe = world["fe"]
    weird = "x;touch${IFS}PWNED$(id)'q\"&|<>*.img"
    base = world["images"] / weird
    base.write_bytes(os.urandom(1 << 20))
    d = host_dir(world, "host01")
    vm = f"host01:{d}/7/images"
    result = runner.run(
        f"CLONE {fe}:{base} {vm}/{weird}\nMKSWAP 4 {vm}/s{weird}\nMV {vm}/{weird} {vm}/m{weird}\n"
        f"MV {vm}/m{weird} {fe}:{world['home'].vms}/7/{weird}\nDELETE {vm}/s{weird}\n"
    )
    assert result.ok, result
    assert sha(world["home"].vms / "7" / weird) == sha(base)
    assert sorted(p.name for p in (d / "7/images").iterdir()) == []
    assert not list(Path("/").glob("PWNED*")) and not list(d.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def test_unknown_host_key_is_refused_and_can_be_accepted(world, own_user):
    """host03 is not in known_hosts: refused with its fingerprint; host test --accept-new-key records it."""
    from engine.transfers.host_check import check_host

    user = own_user
    hosts = Hosts(world["home"])
    h3 = world["hosts"]["host03"]
    hosts.create(h3.record())
    r = Runner(world["home"])
    try:
        result = r.run(f"MKSWAP 4 host03:{h3.vm_dir}/7/images/disk.1\n")
        assert result.outcome == "failed" and "is not in" in result.error and "--accept-new-key" in result.error
        assert not (h3.vm_dir / "7").exists()
        report = check_host(world["home"], hosts.get("host03"))
        assert not report.ok and "is not in" in report.error
        report = check_host(world["home"], hosts.get("host03"), accept_new_key=True)
        assert report.ok and report.writable and report.free_bytes > 0, report
        assert f"[127.0.0.1]:{h3.port} ssh-ed25519" in (user / ".ssh/known_hosts").read_text()
        assert r.run(f"MKSWAP 4 host03:{h3.vm_dir}/7/images/disk.1\n").ok
    finally:
        r.close()


def test_changed_host_key_is_refused_even_with_accept_new_key(world, own_user):
    from engine.transfers.host_check import check_host

    user = own_user
    h1, h2 = world["hosts"]["host01"], world["hosts"]["host02"]
    # known_hosts claims host01's port has host02's key
    wrong = h2.host_key_line.replace(f"[127.0.0.1]:{h2.port}", f"[127.0.0.1]:{h1.port}")
    (user / ".ssh/known_hosts").write_text(wrong + "\n")
    report = check_host(world["home"], Hosts(world["home"]).get("host01"), accept_new_key=True)
    assert not report.ok and "CHANGED" in report.error
    assert (user / ".ssh/known_hosts").read_text() == wrong + "\n"


def test_external_program_action(world, runner):
    """A configured driver hands CLONE to a site program: stdout to the log, error markers on failure."""
    program = (
        "#!/bin/sh\n"
        'echo "checking cache for $1"\n'
        'case "$1" in *missing*) echo noise >&2; echo "ERROR MESSAGE --8<------" >&2;\n'
        '  echo "image not in cache: $1" >&2; echo "ERROR MESSAGE ------>8--" >&2; exit 3;; esac\n'
        'echo "args: $#"\n'
    )
    site_driver(world["home"], "cache", base="ssh", programs={"CLONE": program})
    h2 = world["hosts"]["host02"]
    Hosts(world["home"]).create(Host("cached", "cache", str(h2.vm_dir), "127.0.0.1", h2.port))
    fe, base = world["fe"], image(world["images"])
    assert runner.run(f"CLONE {fe}:{base} cached:{h2.vm_dir}/7/images/disk.0 512\n").ok
    log = vm_log(world)
    assert f"cache_clone.sh: checking cache for {fe}:{base}" in log and "cache_clone.sh: args: 3" in log
    missing = world["images"] / "missing.img"
    missing.write_bytes(b"x")
    result = runner.run(f"CLONE {fe}:{missing} cached:{h2.vm_dir}/7/images/disk.0\n")
    assert result.outcome == "failed"
    assert result.error == f"cache_clone.sh exited with status 3: image not in cache: {fe}:{missing}"
    # the built-in actions of its base still work
    assert runner.run(f"MKSWAP 4 cached:{h2.vm_dir}/7/images/disk.1\n").ok


def test_per_host_limit_serialises_transfers(world):
    hosts = Hosts(world["home"])
    h1 = world["hosts"]["host01"]
    hosts.delete("host01")
    hosts.create(h1.record(max_transfers=1))
    fe = world["fe"]
    r = Runner(world["home"])
    try:
        bases = [image(world["images"], f"b{i}.img", 2 << 20) for i in range(3)]
        runs = [
            r.executor.submit(parse_script(f"CLONE {fe}:{b} host01:{h1.vm_dir}/{i}/images/disk.0\n"), i)
            for i, b in enumerate(bases)
        ]
        assert all(run.wait(60).ok for run in runs)
        spans = sorted(
            (s.at, f.at)
            for s in r.of("action_started")
            for f in r.of("action_finished")
            if (s.run, s.line) == (f.run, f.line)
        )
        assert len(spans) == 3
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), spans
    finally:
        r.close()


def test_scripts_run_in_parallel_and_report_progress(world, runner):
    fe = world["fe"]
    d1, d2 = host_dir(world, "host01"), host_dir(world, "host02")
    # Two images: CLONEs of one image to two hosts at once are gathered into a fan-out (test_fanout.py), a run of
    # its own beside these two.
    images = [image(world["images"], f"base-{vm}.img", size=4 << 20) for vm in (1, 2)]
    runs = [
        runner.executor.submit(parse_script(f"CLONE {fe}:{b} {h}:{d}/{vm}/images/disk.0\n"), vm)
        for vm, h, d, b in ((1, "host01", d1, images[0]), (2, "host02", d2, images[1]))
    ]
    assert all(r.wait(60).ok for r in runs)
    progress = runner.of("action_progress")
    assert {p.vm for p in progress} == {1, 2}
    last = [p for p in progress if p.bytes_done == 4 << 20]
    assert last and all(p.bytes_total == 4 << 20 and p.rate > 0 and p.eta == 0 for p in last)
    assert [e.outcome for e in runner.of("script_finished")] == ["done", "done"]


def test_failed_line_is_reported_and_later_lines_do_not_run(world, runner):
    d = host_dir(world, "host01")
    result = runner.run(
        f"MKSWAP 4 host01:{d}/7/images/disk.1\nCLONE host01:{d}/nope.img host01:{d}/7/images/disk.0\n"
        f"MKSWAP 4 host01:{d}/7/images/disk.2\n"
    )
    assert result.outcome == "failed" and result.failed_line == 2 and "nope.img is not a file" in result.error
    assert (d / "7/images/disk.1").exists() and not (d / "7/images/disk.2").exists()
    assert "[TM][E]: CLONE (line 2) failed" in vm_log(world)


def test_resume_continues_from_the_first_unfinished_line(world, runner):
    d = host_dir(world, "host01")
    src = d / "late.img"
    text = (
        f"MKSWAP 4 host01:{d}/7/images/disk.1\nCLONE host01:{src} host01:{d}/7/images/disk.0\n"
        f"MKIMAGE 8 ext4 host01:{d}/7/images/disk.2\n"
    )
    assert runner.run(text).failed_line == 2
    (d / "7/images/disk.1").write_bytes(b"marker")  # line 1 must not run again
    src.write_bytes(os.urandom(1 << 20))
    result = runner.run(text, resume=True)
    assert result.ok, result
    assert (d / "7/images/disk.1").read_bytes() == b"marker"
    assert sha(d / "7/images/disk.0") == sha(src) and has_magic(d / "7/images/disk.2", EXT4_MAGIC)
    with pytest.raises(InputError, match="no unfinished run"):
        runner.run(text, resume=True)
    first, second = Journal(world["home"]).runs(7)[-2:]
    assert first.state == "resumed" and [a["outcome"] for a in first.actions] == ["done", "failed"]
    assert second.state == "done" and [a["line"] for a in second.actions] == [2, 3] and second.done == (0, 1, 2)
    assert second.actions[0]["bytes"] == 1 << 20 and second.actions[0]["checksum"] == cksum(src)


def test_event_subscribers_see_progress_without_blocking_others(world, runner):
    seen = threading.Event()
    runner.bus.subscribe(lambda e: seen.set() if e.kind == "script_finished" else None)
    assert runner.run(f"MKSWAP 4 host01:{host_dir(world, 'host01')}/7/images/disk.1\n").ok
    assert seen.is_set()


def test_context_fetches_url_files(world, runner, http_server):
    (http_server["root"] / "key.pub").write_text("ssh-ed25519 AAAA test\n")
    ctx = world["images"] / "context.sh"
    ctx.write_text('IP="10.0.0.7"\n')
    d = host_dir(world, "host02")
    result = runner.run(f"CONTEXT {ctx} {http_server['url']}/key.pub host02:{d}/7/images/disk.1\n")
    assert result.ok, result
    iso = (d / "7/images/disk.1").read_bytes()
    assert b"ssh-ed25519 AAAA test" in iso and b'IP="10.0.0.7"' in iso


def test_missing_context_file_is_refused_before_anything_runs(world, runner):
    d = host_dir(world, "host02")
    with pytest.raises(InputError, match=r"context file /nonexistent/context\.sh does not exist"):
        runner.run(f"MKSWAP 4 host02:{d}/7/images/disk.0\nCONTEXT /nonexistent/context.sh host02:{d}/7/images/disk.1\n")
    assert not (d / "7").exists()


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
@pytest.mark.parametrize("host", ["host01", "nfs01"])
def test_sparse_files_stay_sparse(world, host, accelerated):
    base = world["images"] / "sparse.img"
    with open(base, "wb") as out:  # 8 MiB: a hole, 1 MiB of data, a trailing hole
        out.truncate(8 << 20)
        out.seek(3 << 20)
        out.write(os.urandom(1 << 20))
    d = host_dir(world, host)
    r = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    try:
        assert r.run(f"CLONE {world['fe']}:{base} {host}:{d}/7/images/disk.0\n").ok
    finally:
        r.close()
    copy = d / "7/images/disk.0"
    assert copy.stat().st_size == 8 << 20 and sha(copy) == sha(base)
    assert copy.stat().st_blocks * 512 <= 2 << 20


def test_local_copies_can_skip_verification(world, runner):
    site_driver(world["home"], "fastshared", VERIFY_LOCAL_COPIES="no")
    d = world["shared"]
    Hosts(world["home"]).create(Host("nfs02", "fastshared", str(d)))
    base = image(world["images"])
    assert runner.run(f"CLONE {world['fe']}:{base} nfs02:{d}/7/images/disk.0\n").ok
    assert sha(d / "7/images/disk.0") == sha(base)
    assert "(copy_file_range, not verified)" in vm_log(world)
    assert runner.run(f"CLONE {world['fe']}:{base} nfs01:{d}/7/images/disk.1\n").ok
    assert f"checksum {cksum(base)} (copy_file_range)" in vm_log(world)


@pytest.mark.parametrize("base", ["ssh", "shared"])
def test_a_driver_can_verify_with_sha256(world, runner, base):
    """CHECKSUM = sha256: the front end, a sending host and a receiving host all compute SHA-256."""
    site_driver(world["home"], "sha", base=base, CHECKSUM="sha256")
    d = host_dir(world, "host02" if base == "ssh" else "nfs01")
    ssh_host = dataclasses.replace(world["hosts"]["host02"].record("sha"), name="sha02")
    name = Hosts(world["home"]).create(ssh_host if base == "ssh" else Host("nfs02", "sha", str(d))).name
    src, base_img = image(host_dir(world, "host01"), "src.img"), image(world["images"])
    script = f"CLONE {world['fe']}:{base_img} {name}:{d}/7/images/disk.0\n"
    script += f"CLONE host01:{src} {name}:{d}/7/images/disk.1\n"
    result = runner.run(script)
    assert result.ok, result
    log = vm_log(world)
    assert f"checksum sha256:{sha(base_img)}" in log and f"checksum sha256:{sha(src)}" in log
    assert sha(d / "7/images/disk.1") == sha(src)


def test_retry_and_cancel_while_waiting_for_a_slot(world):
    hosts = Hosts(world["home"])
    h1 = world["hosts"]["host01"]
    hosts.delete("host01")
    hosts.create(h1.record(max_transfers=1))
    r = Runner(world["home"])
    try:
        d = h1.vm_dir
        missing = d / "later.img"
        first = r.executor.submit(parse_script(f"CLONE host01:{missing} host01:{d}/1/images/disk.0\n"), 1)
        assert first.wait(60).outcome == "failed"
        missing.write_bytes(os.urandom(1 << 20))
        assert first.retry().wait(60).ok and sha(d / "1/images/disk.0") == sha(missing)
        # a copy held at its first progress report holds host01's only slot; a second script waits for it and is
        # cancelled meanwhile
        holding, release = threading.Event(), threading.Event()
        r.bus.subscribe(lambda e: holding.set() if e.kind == "action_progress" and e.vm == 2 else None)
        r.bus.subscribe(lambda e: release.wait(60) if e.kind == "action_progress" and e.vm == 2 else None)
        base = image(world["images"], size=4 << 20)
        slow = r.executor.submit(parse_script(f"CLONE {world['fe']}:{base} host01:{d}/2/images/disk.0\n"), 2)
        assert holding.wait(30)
        waiting = r.executor.submit(parse_script(f"MKSWAP 4 host01:{d}/3/images/disk.1\n"), 3)
        assert {run.id for run in r.executor.active()} >= {slow.id, waiting.id}
        waiting.cancel()
        result = waiting.wait(30)
        assert result.outcome == "cancelled" and not (d / "3").exists()
        release.set()
        assert slow.wait(60).ok
    finally:
        r.close()


def test_sources_made_by_earlier_lines_pass_validation(world, runner):
    fe, d = world["fe"], world["shared"]
    base = image(world["images"])
    with pytest.raises(InputError, match="does not exist"):
        runner.run(f"CLONE nfs01:{d}/7/images/disk.0 nfs01:{d}/7/images/disk.1\n")
    text = f"CLONE {fe}:{base} nfs01:{d}/7/images/disk.0\nCLONE nfs01:{d}/7/images/disk.0 nfs01:{d}/7/images/disk.1\n"
    assert runner.run(text).ok and sha(d / "7/images/disk.1") == sha(base)


def test_a_shared_host_named_local_works_on_this_machine(world, runner):
    """Issue 5 creates `local` (shared driver, VM directory <home>/vms) on first run."""
    vms = world["home"].vms
    Hosts(world["home"]).create(Host("local", "shared", str(vms)))
    base = image(world["images"])
    text = f"CLONE {world['fe']}:{base} local:{vms}/5/images/disk.0\nMKSWAP 4 local:{vms}/5/images/disk.1\n"
    assert runner.run(text, vm=5).ok
    assert sha(vms / "5/images/disk.0") == sha(base) and has_magic(vms / "5/images/disk.1", SWAP_MAGIC)
    assert runner.run(f"MV local:{vms}/5/images host01:{host_dir(world, 'host01')}/5/images\n", vm=5).ok
    assert sha(host_dir(world, "host01") / "5/images/disk.0") == sha(base) and not (vms / "5/images").exists()


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
def test_host_to_host_copy_survives_a_drop_on_the_reading_side(world, accelerated):
    h1, h2 = world["hosts"]["host01"], world["hosts"]["host02"]
    src = h1.vm_dir / "src.img"
    src.write_bytes(os.urandom(6 << 20))
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    killed = []

    def drop(event) -> None:
        if getattr(event, "kind", "") == "action_progress" and event.bytes_done > 0 and not killed:
            wait_for_bytes(h2.vm_dir / "7/images/.disk.0.part")  # so there is something to resume from
            killed.append(h1.drop_connections())

    runner.bus.subscribe(drop)
    try:
        result = runner.run(f"CLONE host01:{src} host02:{h2.vm_dir}/7/images/disk.0\n")
    finally:
        runner.close()
    assert killed and killed[0] >= 1
    assert result.ok, result
    assert sha(h2.vm_dir / "7/images/disk.0") == sha(src) and runner.of("action_retry")
    carrier = "openssh" if accelerated else "paramiko"
    assert f"(extents, {carrier} to {carrier}, resumed at byte" in vm_log(world)  # a host sends its extents


def clone_on_both_ssh_paths(world, host: str, vm_dir: Path) -> None:
    """CLONE an image from the front end to `host` through paramiko, then through the OpenSSH accelerator."""
    base = image(world["images"], size=2 << 20)
    for accelerator in (False, OpenSsh(min_bytes=0)):
        r = Runner(world["home"], accelerator=accelerator)
        try:
            assert r.run(f"CLONE {world['fe']}:{base} {host}:{vm_dir}/7/images/disk.0\n").ok
        finally:
            r.close()
        assert sha(vm_dir / "7/images/disk.0") == sha(base)


def test_ssh_config_names_the_host(world, own_user):
    """A host record with only a name: address, port, user and key come from ~/.ssh/config, on both paths."""
    user = own_user
    h2 = world["hosts"]["host02"]
    (user / ".ssh/id_ed25519").rename(user / ".ssh/cluster_key")
    (user / ".ssh/config").write_text(
        f"Host cfg02\n  HostName 127.0.0.1\n  Port {h2.port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile ~/.ssh/cluster_key\n"
    )
    Hosts(world["home"]).create(Host("cfg02", "ssh", str(h2.vm_dir)))
    clone_on_both_ssh_paths(world, "cfg02", h2.vm_dir)


def test_keys_from_ssh_agent(world, tmp_path, monkeypatch, own_user):
    """The key lives only in an ssh-agent: paramiko and the OpenSSH accelerator both use it."""
    user = own_user
    key = tmp_path / "agent_key"
    (user / ".ssh/id_ed25519").rename(key)
    (user / ".ssh/id_ed25519.pub").unlink()
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket_path.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, stderr=subprocess.DEVNULL)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        clone_on_both_ssh_paths(world, "host01", world["hosts"]["host01"].vm_dir)
    finally:
        agent.terminate()
        agent.wait(5)


@pytest.mark.parametrize("algorithm", ["cksum", "sha256"])
def test_a_stored_copy_that_differs_is_not_published(world, algorithm):
    host = world["hosts"]["host01"]
    tmp, final = host.vm_dir / "7/.disk.0.part", host.vm_dir / "7/disk.0"
    tmp.parent.mkdir(parents=True)
    tmp.write_bytes(b"what the host stored\n")
    wrong = new_checksum(algorithm)
    wrong.update(b"what the front end sent\n")
    pool = SshPool()
    try:
        endpoint = RemoteEndpoint(host.record(), pool)
        expected = f"checksum mismatch: source {wrong.value()}, copy on host01 {algorithm}:"
        with pytest.raises(OperationError, match=expected):
            endpoint.publish(str(tmp), str(final), tmp.stat().st_size, algorithm, wrong.value())
        assert tmp.exists() and not final.exists()
        right = endpoint.checksum(str(tmp), algorithm)
        assert endpoint.publish(str(tmp), str(final), tmp.stat().st_size, algorithm, right) == right
        assert final.read_bytes() == b"what the host stored\n" and not tmp.exists()
    finally:
        pool.close()


def test_writes_cut_short_by_signals_lose_nothing(world):
    """A signal landing in the middle of a write to ssh's pipe (a terminal resize in the console) makes the write
    return short; the rest must still be sent (it was dropped once: the copy then failed its checksum)."""
    host = world["hosts"]["host01"]
    data = os.urandom(48 << 20)
    target = host.vm_dir / "7/disk.0"
    pool = SshPool()
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    try:
        writer = RemoteEndpoint(host.record(), pool, OpenSsh(min_bytes=0)).open_writer(str(target), None, len(data))
        thread = threading.Thread(
            target=lambda: [writer.write(data[i : i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
        )
        thread.start()
        while thread.is_alive():
            signal.pthread_kill(thread.ident, signal.SIGUSR1)
            time.sleep(0.0005)
        assert writer.finish() == len(data)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        pool.close()
    assert sha(target) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("source_host", "dest_host", "change"),
    [
        ("fe", "nfs01", "grow"),
        ("fe", "nfs01", "overwrite"),
        ("fe", "host01", "overwrite"),
        ("fe-sparse", "host01", "overwrite"),  # sent extent by extent
        ("host02", "nfs01", "overwrite"),
    ],
)
def test_a_source_written_while_it_is_copied_fails_the_line(world, runner, source_host, dest_host, change):
    # On the shared driver a source grown mid-copy reported done with its first part; on both drivers one
    # overwritten in place reported done with a checksum of neither version.
    if source_host == "fe":
        source, name = image(world["images"], size=48 << 20), world["fe"]
    elif source_host == "fe-sparse":
        source, name = world["images"] / "sparse.img", world["fe"]
        with open(source, "wb") as out:
            out.truncate(200 << 20)
            for offset in range(0, 200 << 20, 25 << 20):
                out.seek(offset)
                out.write(os.urandom(6 << 20))
    else:
        source, name = image(host_dir(world, source_host), size=48 << 20), source_host
    vm_dir = host_dir(world, dest_host)
    changed = []

    def write_source(event) -> None:
        if getattr(event, "kind", "") == "action_progress" and event.bytes_done > 0 and not changed:
            with open(source, "r+b") as f:
                if change == "grow":
                    f.seek(0, os.SEEK_END)
                f.write(os.urandom(1 << 20))
            changed.append(event.bytes_done)

    runner.bus.subscribe(write_source)
    result = runner.run(f"CLONE {name}:{source} {dest_host}:{vm_dir}/7/images/disk.0\n")
    assert changed
    assert result.outcome == "failed" and f"{source} changed while it was copied" in result.error
    assert not (vm_dir / "7/images/disk.0").exists() and leftovers(vm_dir) == []


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (this test runs as root), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_shared_file_system_names_the_file(world, runner, small_fs):
    Hosts(world["home"]).create(Host("tiny01", "shared", str(small_fs)))
    source = image(world["images"], size=3 << 20)
    result = runner.run(f"CLONE {world['fe']}:{source} tiny01:{small_fs}/7/images/disk.0\n")
    assert result.outcome == "failed"
    part = small_fs / "7/images/.disk.0.part"
    assert result.error == f"cannot copy {source} to {part}: No space left on device"
    assert leftovers(small_fs) == []


def test_a_read_only_destination_is_named_not_the_source(world, runner, small_fs):
    Hosts(world["home"]).create(Host("ro01", "shared", str(small_fs)))
    (small_fs / "7/images").mkdir(parents=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    source = image(world["images"])
    result = runner.run(f"LN {world['fe']}:{source} ro01:{small_fs}/7/images/disk.0\n")
    assert result.outcome == "failed"
    assert result.error == f"Read-only file system: {small_fs}/7/images/.disk.0.part"
