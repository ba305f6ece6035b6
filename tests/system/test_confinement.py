"""Writes and deletes never leave a host's VM directory, whatever links were planted in it: on the shared driver
and over SSH (the paramiko channel and the OpenSSH accelerator), on hosts and on the front end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import OperationError
from engine.transfers.endpoints import LocalEndpoint, Partial, RemoteEndpoint
from engine.transfers.hosts import Hosts
from engine.transfers.openssh import OpenSsh
from engine.transfers.ssh import SshPool
from tests.system.test_transfers import Runner, image, sha

PRECIOUS = b"a file outside every VM directory\n"


@pytest.fixture(params=["shared", "paramiko", "openssh"])
def place(world, request):
    """(host name, its VM directory, a runner) for the shared driver and both SSH carriers."""
    if request.param == "shared":
        name, vm_dir, accelerator = "nfs01", world["shared"], False
    else:
        name, vm_dir = "host01", world["hosts"]["host01"].vm_dir
        accelerator = OpenSsh(min_bytes=0) if request.param == "openssh" else False
    vm_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(world["home"], accelerator=accelerator)
    yield name, vm_dir, runner
    runner.close()


@pytest.fixture
def victim(tmp_path) -> Path:
    path = tmp_path / "outside" / "victim"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    return path


def actions(world, target: str) -> dict[str, str]:
    """One script line per kind of action that makes a file at `target`."""
    base = image(world["images"], size=2 << 20)
    sparse = world["images"] / "sparse.img"
    with open(sparse, "wb") as out:  # mostly holes: copied extent by extent over SSH
        out.truncate(8 << 20)
        out.seek(3 << 20)
        out.write(os.urandom(1 << 20))
    ctx = world["images"] / "context.sh"
    ctx.write_text('HOSTNAME="vm-7"\n')
    return {
        "CLONE": f"CLONE {world['fe']}:{base} {target}",
        "CLONE sparse": f"CLONE {world['fe']}:{sparse} {target}",
        "MKSWAP": f"MKSWAP 4 {target}",
        "MKIMAGE": f"MKIMAGE 4 ext4 {target}",
        "CONTEXT": f"CONTEXT {ctx} {target}",
    }


@pytest.mark.parametrize("action", ["CLONE", "CLONE sparse", "MKSWAP", "MKIMAGE", "CONTEXT"])
def test_a_planted_part_link_is_never_written_through(world, place, victim, action):
    name, vm_dir, runner = place
    images = vm_dir / "7/images"
    images.mkdir(parents=True)
    (images / ".disk.0.part").symlink_to(victim)
    result = runner.run(actions(world, f"{name}:{images}/disk.0")[action] + "\n")
    assert victim.read_bytes() == PRECIOUS
    assert result.ok, result  # the stale temporary name is replaced, not followed
    assert (images / "disk.0").is_file() and not (images / "disk.0").is_symlink()
    assert not (images / ".disk.0.part").exists()


@pytest.mark.parametrize("action", ["CLONE", "CLONE sparse", "MKSWAP", "CONTEXT"])
def test_a_linked_vm_subdirectory_is_refused(world, place, tmp_path, action):
    name, vm_dir, runner = place
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (vm_dir / "7").symlink_to(elsewhere)
    result = runner.run(actions(world, f"{name}:{vm_dir}/7/images/disk.0")[action] + "\n")
    assert result.outcome == "failed" and "outside the VM directory" in result.error, result
    assert list(elsewhere.iterdir()) == []


def test_delete_through_a_linked_vm_subdirectory_is_refused(world, place, tmp_path):
    name, vm_dir, runner = place
    outside = tmp_path / "outside-vm"
    (outside / "images").mkdir(parents=True)
    (outside / "images/disk.0").write_bytes(PRECIOUS)
    (vm_dir / "10").symlink_to(outside)
    result = runner.run(f"DELETE {name}:{vm_dir}/10/images\n")
    assert result.outcome == "failed" and "outside the VM directory" in result.error, result
    assert (outside / "images/disk.0").read_bytes() == PRECIOUS
    assert runner.run(f"DELETE {name}:{vm_dir}/10\n").ok  # the link itself goes, not what it points at
    assert not (vm_dir / "10").is_symlink() and (outside / "images/disk.0").read_bytes() == PRECIOUS


@pytest.mark.parametrize("accelerated", [False, True], ids=["paramiko", "openssh"])
def test_a_stop_does_not_carry_links_out_to_the_front_end(world, victim, accelerated):
    """A host's images/ holds disk.0 and `.disk.0.part -> a front-end file`: the stop's MV must not recreate the
    link on the front end and then copy disk.0 through it."""
    host = world["hosts"]["host01"]
    images = host.vm_dir / "7/images"
    images.mkdir(parents=True)
    (images / "disk.0").write_bytes(os.urandom(1 << 20))
    (images / ".disk.0.part").symlink_to(victim)
    fedir = world["home"].vms
    runner = Runner(world["home"], accelerator=OpenSsh(min_bytes=0) if accelerated else False)
    try:
        result = runner.run(f"MV host01:{images} {world['fe']}:{fedir}/7\n")
    finally:
        runner.close()
    assert victim.read_bytes() == PRECIOUS
    assert result.outcome == "failed" and "symbolic link" in result.error, result
    assert (images / "disk.0").is_file()  # nothing was lost on the host
    assert not (fedir / "7/images").exists()


def test_a_linked_vm_subdirectory_on_the_front_end_is_refused(world, tmp_path):
    host = world["hosts"]["host01"]
    images = host.vm_dir / "7/images"
    images.mkdir(parents=True)
    (images / "disk.0").write_bytes(os.urandom(1 << 20))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fedir = world["home"].vms
    (fedir / "7").symlink_to(elsewhere)
    runner = Runner(world["home"], accelerator=False)
    try:
        result = runner.run(f"MV host01:{images} {world['fe']}:{fedir}/7\n")
    finally:
        runner.close()
    assert result.outcome == "failed" and "outside the VM directory" in result.error, result
    assert list(elsewhere.iterdir()) == [] and (images / "disk.0").is_file()


def test_a_tree_keeps_its_own_relative_links(world):
    """Links that stay inside the moved tree are recreated as links, on the far side too."""
    host = world["hosts"]["host01"]
    images = host.vm_dir / "7/images"
    images.mkdir(parents=True)
    digest = sha(image(images, "disk.0", 1 << 20))
    (images / "disk.1").symlink_to("disk.0")
    fedir = world["home"].vms
    runner = Runner(world["home"], accelerator=False)
    try:
        assert runner.run(f"MV host01:{images} {world['fe']}:{fedir}/7\n").ok
    finally:
        runner.close()
    assert os.readlink(fedir / "7/images/disk.1") == "disk.0"
    assert sha(fedir / "7/images/disk.0") == digest


def endpoints(world):
    host = world["hosts"]["host01"]
    pool = SshPool()
    yield "shared", LocalEndpoint(Hosts(world["home"]).get("nfs01")), world["shared"]
    yield "paramiko", RemoteEndpoint(host.record(), pool), host.vm_dir
    yield "openssh", RemoteEndpoint(host.record(), pool, OpenSsh(min_bytes=0)), host.vm_dir
    pool.close()


def test_a_resumed_part_that_is_a_link_is_refused(world, victim):
    """Resuming writes into the existing `.part`: one that is a symbolic or a hard link is refused."""
    for carrier, endpoint, vm_dir in endpoints(world):
        vm_dir.mkdir(parents=True, exist_ok=True)
        soft, hard = vm_dir / f".soft-{carrier}.part", vm_dir / f".hard-{carrier}.part"
        soft.symlink_to(victim)
        os.link(victim, hard)
        for part in (soft, hard):
            with pytest.raises(OperationError, match="link"):
                writer = endpoint.open_writer(str(part), Partial(4, str(os.lstat(part).st_ino)), 1 << 30)
                writer.write(b"overwritten")
                writer.finish()
            assert victim.read_bytes() == PRECIOUS, (carrier, part)
