"""A whole VM lifecycle on real sshd hosts: create, deploy, stop, resume, migrate to a second host, shutdown."""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine.core import Engine
from engine.defaults import sample_templates
from engine.vms.states import VmState

DATABASE = sample_templates()["database.tmpl"]


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lifecycle_over_ssh(world) -> None:
    home = world["home"]
    host01, host02 = (world["hosts"][name].vm_dir for name in ("host01", "host02"))
    with Engine(home) as engine:
        vm = engine.vms.create(DATABASE)
        images = f"{vm.id}/images"
        image_digest = digest(home.images / "ttylinux.img")

        vm = engine.vms.deploy(vm.id, "host01")
        assert (vm.state, vm.host) == (VmState.RUNNING, "host01")
        assert listing(host01 / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]
        assert digest(host01 / images / "disk.0") == image_digest
        assert (host01 / images / "disk.1").stat().st_size == 16 * 1024 * 1024  # MKIMAGE 16 ext4

        # The stop's dry run counts every file of the VM's directory it moves off host01 (it said 0 B).
        moved = sum(p.stat().st_size for p in (host01 / str(vm.id)).rglob("*") if p.is_file())
        assert moved > 16 << 20 and engine.vms.preview(vm.id, "stop").total_bytes == moved
        vm = engine.vms.stop(vm.id)
        assert vm.state is VmState.STOPPED
        assert listing(host01 / images) == []
        assert listing(home.vms / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]

        vm = engine.vms.resume(vm.id, "host01")
        assert vm.state is VmState.RUNNING
        assert listing(host01 / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]
        assert not (home.vms / images).exists()

        vm = engine.vms.migrate(vm.id, "host02")
        assert (vm.state, vm.host) == (VmState.RUNNING, "host02")
        assert listing(host02 / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]
        assert digest(host02 / images / "disk.0") == image_digest
        assert not (host01 / images).exists()
        assert [lease.vm for lease in engine.networks.leases("default")] == [vm.id, vm.id]

        vm = engine.vms.shutdown(vm.id)
        assert vm.state is VmState.DONE
        assert not (host02 / images).exists()
        assert listing(home.vms / str(vm.id)) == ["context.sh", "disk.1"]  # the SAVE=yes disk, parked
        assert engine.networks.leases("default") == []
        assert [h.host for h in vm.history] == ["host01", "host01", "host02"]
