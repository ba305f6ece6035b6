"""The VM lifecycle on the shared driver: leases taken and freed, every file placed and removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.core import Engine
from engine.defaults import sample_templates
from engine.errors import InputError, OperationError
from engine.service.protocol import ServicePaths
from engine.service.server import lock_holder
from engine.transfers.hosts import Host
from engine.transfers.journal import Journal, JournalState
from engine.vms.states import OperationOutcome, VmState
from tests.conftest import site_driver

TTYLINUX = sample_templates()["ttylinux.tmpl"]
DATABASE = sample_templates()["database.tmpl"]


@pytest.fixture
def engine(home):
    with Engine(home) as engine:
        yield engine


@pytest.fixture
def two_hosts(engine, tmp_path):
    """Two shared-driver hosts with VM directories of their own (not the front end's)."""
    dirs = {name: tmp_path / name for name in ("nfs1", "nfs2")}
    for name, path in dirs.items():
        engine.hosts.create(Host(name, "shared", str(path)))
    return dirs


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_fresh_home_has_the_embedded_default(engine, home) -> None:
    assert engine.hosts.get("local").vm_dir == str(home.vms)
    assert engine.hosts.get("local").driver == "shared"
    default = engine.networks.get("default")
    assert default.bridge == "virbr0"
    # libvirt's gateway, 192.168.122.1 (virbr0's own address), is never leased.
    assert (default.range_text, default.gateway, engine.networks.usage("default").size) == (
        "192.168.122.2-192.168.122.254",
        0xC0A87A01,
        253,
    )
    assert (home.images / "ttylinux.img").stat().st_size == 16 * 1024 * 1024


def test_the_embedded_default_is_made_once(engine, home) -> None:
    engine.networks.delete("default")
    with Engine(home) as again:
        assert [n.name for n in again.networks.list()] == []


def test_create_leases_one_address_per_nic_and_writes_it_into_the_template(engine, home) -> None:
    vm = engine.vms.create(DATABASE)
    assert vm.state is VmState.PENDING
    nics = vm.nics()
    assert [n.get("IP") for n in nics] == ["192.168.122.2", "192.168.122.3"]
    assert nics[0].as_dict() == {
        "NETWORK": "default",
        "IP": "192.168.122.2",
        "MAC": "02:00:c0:a8:7a:02",
        "IP6_LINK": "fe80::c0ff:fea8:7a02",
        "BRIDGE": "virbr0",
        "VNID": str(engine.networks.get("default").id),
    }
    leases = {(lease.ip, lease.vm) for lease in engine.networks.leases("default")}
    assert leases == {("192.168.122.2", vm.id), ("192.168.122.3", vm.id)}
    context = vm.parsed_template().vectors("CONTEXT")[0]
    assert context.get("HOSTNAME") == f"database-{vm.id}"
    assert context.get("IP") == "192.168.122.2"
    assert vm.parsed_template().vectors("DISK")[0].get("SOURCE") == str(home.images / "ttylinux.img")


def test_create_with_a_given_ip_and_a_nic_without_network(engine, tmp_path) -> None:
    t = tmp_path / "vm.tmpl"
    t.write_text("NAME = a\nNIC = [ NETWORK = default, IP = 192.168.122.77 ]\nNIC = [ BRIDGE = br9, MAC = aa ]\n")
    vm = engine.vms.create(t)
    assert [n.get("IP") for n in vm.nics()] == ["192.168.122.77", None]
    assert vm.nics()[1].as_dict() == {"BRIDGE": "br9", "MAC": "aa"}


def test_a_nic_carries_its_ipv6_addresses_into_show_and_context(engine, tmp_path) -> None:
    net = tmp_path / "v6.net"
    net.write_text("NAME = v6\nBRIDGE = br6\nNETWORK_ADDRESS = 10.6.0.0/24\nGLOBAL_PREFIX = 2001:db8:6::\n")
    engine.networks.create_from_file(net)
    t = tmp_path / "vm.tmpl"
    t.write_text(
        "NAME = a\nNIC = [ NETWORK = v6 ]\n"
        'CONTEXT = [ IP6 = "$NIC[IP6_GLOBAL]", LINK = "$NIC[IP6_LINK]", IP = "$NIC[IP]" ]\n'
    )
    vm = engine.vms.create(t)
    nic = vm.nics()[0]
    assert (nic.get("IP"), nic.get("IP6_GLOBAL"), nic.get("IP6_LINK")) == (
        "10.6.0.1",
        "2001:db8:6::aff:fe06:1",
        "fe80::aff:fe06:1",
    )
    assert "IP6_GLOBAL = 2001:db8:6::aff:fe06:1" in vm.template.replace('"', "")  # what vm show prints
    assert vm.parsed_template().vectors("CONTEXT")[0].as_dict() == {
        "IP6": "2001:db8:6::aff:fe06:1",
        "LINK": "fe80::aff:fe06:1",
        "IP": "10.6.0.1",
    }
    t.write_text('NAME = b\nNIC = [ NETWORK = default ]\nCONTEXT = [ IP6 = "$NIC[IP6_GLOBAL]" ]\n')
    with pytest.raises(InputError, match=r"only a NIC of a network with GLOBAL_PREFIX has one"):
        engine.vms.create(t)


def test_create_is_all_or_nothing(engine, tmp_path) -> None:
    t = tmp_path / "vm.tmpl"
    t.write_text("NAME = a\nNIC = [ NETWORK = default ]\nNIC = [ NETWORK = nowhere ]\n")
    # The NIC's problems are located like every other (they said "NIC on line 3" without the file).
    with pytest.raises(InputError, match=f"^{t}:3: NIC 1: no network named 'nowhere'"):
        engine.vms.create(t)
    assert engine.vms.list() == []
    assert engine.networks.leases("default") == []
    t.write_text("NAME = a\nNIC = [ NETWORK = default ]\nDISK = [ TYPE = swap ]\n")
    with pytest.raises(InputError, match="a swap disk needs SIZE"):
        engine.vms.create(t)
    assert engine.networks.leases("default") == []
    t.write_text("NAME = a\nNIC = [ NETWORK = default ]\nNIC = [ NETWORK = default, IP = 10.9.9.9 ]\n")
    with pytest.raises(InputError, match=rf"^{t}:3: NIC 1: 10\.9\.9\.9 is outside the range of 'default'"):
        engine.vms.create(t)
    assert engine.networks.leases("default") == []
    t.write_text("NAME = a\nDISK = [ SOURCE = missing.img ]\n")
    with pytest.raises(InputError, match="no image"):
        engine.vms.create(t)


def test_whole_lifecycle_on_shared_hosts(engine, home, two_hosts) -> None:
    vm = engine.vms.create(DATABASE)
    images = f"{vm.id}/images"
    vm = engine.vms.deploy(vm.id, "nfs1")
    assert (vm.state, vm.host) == (VmState.RUNNING, "nfs1")
    assert files_under(two_hosts["nfs1"] / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]
    assert (two_hosts["nfs1"] / images / "disk.0").read_bytes() == (home.images / "ttylinux.img").read_bytes()
    assert (home.vms / str(vm.id) / "context.sh").read_text().startswith("# Context variables generated by headnode")

    vm = engine.vms.stop(vm.id)
    assert (vm.state, vm.host) == (VmState.STOPPED, None)
    assert not (two_hosts["nfs1"] / images).exists()
    assert files_under(home.vms / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]

    vm = engine.vms.resume(vm.id, "nfs2")
    assert (vm.state, vm.host) == (VmState.RUNNING, "nfs2")
    assert files_under(two_hosts["nfs2"] / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]
    assert not (home.vms / images).exists()

    vm = engine.vms.migrate(vm.id, "nfs1")
    assert (vm.state, vm.host) == (VmState.RUNNING, "nfs1")
    assert files_under(two_hosts["nfs1"] / images) == ["disk.0", "disk.1", "disk.2", "disk.3"]
    assert not (two_hosts["nfs2"] / images).exists()

    vm = engine.vms.shutdown(vm.id)
    assert (vm.state, vm.host) == (VmState.DONE, None)
    assert not (two_hosts["nfs1"] / images).exists()
    assert files_under(home.vms / str(vm.id)) == ["context.sh", "disk.1"]  # the SAVE=yes disk, parked
    assert engine.networks.leases("default") == []
    assert [h.host for h in vm.history] == ["nfs1", "nfs2", "nfs1"]
    assert [op.op for op in vm.operations] == ["deploy", "stop", "resume", "migrate", "shutdown"]
    assert all(op.outcome == "success" for op in vm.operations)
    log = engine.vms.log_path(vm.id).read_text()
    assert "[TM][I]" in log and "MKIMAGE" in log


def test_lifecycle_on_the_local_host_where_host_and_front_end_share_a_directory(engine, home) -> None:
    vm = engine.vms.create(TTYLINUX)
    engine.vms.deploy(vm.id, "local")
    assert files_under(home.vms / str(vm.id)) == [
        "context.sh",
        "images",
        "images/disk.0",
        "images/disk.1",
        "images/disk.2",
    ]
    assert engine.vms.stop(vm.id).state is VmState.STOPPED
    assert engine.vms.resume(vm.id, "local").state is VmState.RUNNING
    assert files_under(home.vms / f"{vm.id}/images") == ["disk.0", "disk.1", "disk.2"]
    assert engine.vms.shutdown(vm.id).state is VmState.DONE
    assert not (home.vms / f"{vm.id}/images").exists()


def test_outcomes_are_stored_as_their_words_and_read_back_as_enums(engine, home) -> None:
    """The database keeps the words it always had (records written before the enums load the same way)."""
    vm = engine.vms.create(TTYLINUX)
    engine.vms.deploy(vm.id, "local")
    raw = json.loads(home.db_path.read_text())
    [stored] = raw["vms"][str(vm.id)]["operations"]
    assert type(stored["outcome"]) is str and stored["outcome"] == "success"
    (record,) = raw["journal"].values()
    ends = [json.loads(line) for line in (home.root / "journal" / f"{record['run']}.jsonl").read_text().splitlines()]
    assert (record["state"], [e["outcome"] for e in ends if "outcome" in e]) == ("done", ["done", "done", "done"])
    assert engine.vms.get(vm.id).last_operation.outcome is OperationOutcome.SUCCESS
    [run] = Journal(home).runs(vm.id)
    assert run.state is JournalState.DONE


def test_operations_refused_in_the_wrong_state_change_nothing(engine, two_hosts) -> None:
    vm = engine.vms.create(TTYLINUX)
    with pytest.raises(InputError, match="is pending: stop needs a VM that is running"):
        engine.vms.stop(vm.id)
    with pytest.raises(InputError, match="no host named 'ghost'"):
        engine.vms.deploy(vm.id, "ghost")
    assert engine.vms.get(vm.id).operations == ()
    engine.vms.deploy(vm.id, "nfs1")
    with pytest.raises(InputError, match="already on nfs1"):
        engine.vms.migrate(vm.id, "nfs1")


def test_prolog_failure_half_way_then_recover_delete(engine, home, flaky_host, monkeypatch) -> None:
    vm = engine.vms.create(DATABASE)
    monkeypatch.setenv("FAIL_ON", "disk.1")  # the MKIMAGE line (2 of 4) fails
    with pytest.raises(OperationError, match="deploy failed at line 2"):
        engine.vms.deploy(vm.id, "flaky1")
    vm = engine.vms.get(vm.id)
    assert (vm.state, vm.host) == (VmState.FAILED, "flaky1")
    assert vm.last_operation.failed_line == 2
    assert "refusing disk.1" in vm.last_operation.error
    assert files_under(flaky_host / f"{vm.id}/images") == ["disk.0"]
    assert sorted(lease.vm for lease in engine.networks.leases("default")) == [vm.id, vm.id]  # kept while failed

    vm = engine.vms.recover(vm.id, delete=True)
    assert vm.state is VmState.DONE
    assert not (flaky_host / f"{vm.id}/images").exists()
    assert engine.networks.leases("default") == []


def test_prolog_failure_then_recover_retry_goes_on_from_the_failed_line(engine, flaky_host, monkeypatch) -> None:
    vm = engine.vms.create(DATABASE)
    monkeypatch.setenv("FAIL_ON", "disk.1")
    with pytest.raises(OperationError):
        engine.vms.deploy(vm.id, "flaky1")
    first_clone = (flaky_host / f"{vm.id}/images/disk.0").stat().st_mtime_ns
    monkeypatch.delenv("FAIL_ON")
    vm = engine.vms.recover(vm.id, retry=True)
    assert (vm.state, vm.host) == (VmState.RUNNING, "flaky1")
    assert files_under(flaky_host / f"{vm.id}/images") == ["disk.0", "disk.1", "disk.2", "disk.3"]
    assert (flaky_host / f"{vm.id}/images/disk.0").stat().st_mtime_ns == first_clone  # line 1 was not run again
    assert [line.split()[0] for line in vm.operations[-1].script] == ["MKIMAGE", "MKSWAP", "CONTEXT"]
    assert [(h.host, h.ended) for h in vm.history] == [("flaky1", None)]  # the failed attempt and its retry


def test_delete_from_each_state_removes_its_files_and_frees_its_leases(engine, home, two_hosts) -> None:
    pending = engine.vms.create(TTYLINUX)
    running = engine.vms.deploy(engine.vms.create(TTYLINUX).id, "nfs1")
    stopped = engine.vms.stop(engine.vms.deploy(engine.vms.create(TTYLINUX).id, "nfs2").id)
    for vm in (pending, running, stopped):
        assert engine.vms.delete(vm.id).state is VmState.DONE
    assert not (two_hosts["nfs1"] / f"{running.id}/images").exists()
    assert not (home.vms / f"{stopped.id}/images").exists()
    assert engine.networks.leases("default") == []
    # Deleting a done VM removes it from the pool (it was refused: "VM 0 is done", and done VMs piled up).
    assert engine.vms.delete(pending.id).state is VmState.DONE
    assert [vm.id for vm in engine.vms.list()] == [running.id, stopped.id]
    with pytest.raises(InputError, match=f"no VM {pending.id}"):
        engine.vms.get(pending.id)


FLAKY = """#!/bin/sh
# An external program for every placing action: it waits while $HOLD exists (creating $HELD, if named, first), fails
# when the destination's name is $FAIL_ON, and otherwise hands over to the built-in shared driver's tools.
eval dest=\\${$#}
if [ -n "$HELD" ] && [ -e "$HOLD" ]; then : > "$HELD"; fi
while [ -n "$HOLD" ] && [ -e "$HOLD" ]; do sleep 0.05; done
case "$dest" in *"/$FAIL_ON") echo "ERROR MESSAGE --8<------" >&2; echo "refusing ${dest##*/}" >&2
  echo "ERROR MESSAGE ------>8--" >&2; exit 3;; esac
mkdir -p "$(dirname "${dest#*:}")"
case "$0" in
  *_clone.sh) exec cp "${1#*:}" "${2#*:}" ;;
  *_mkimage.sh) truncate -s "${1}M" "${3#*:}" ;;
esac
"""


@pytest.fixture
def flaky_host(engine, home, tmp_path):
    """A host whose driver runs site programs for CLONE and MKIMAGE (the seed's replaceable actions)."""
    site_driver(home, "flaky", programs={"CLONE": FLAKY, "MKIMAGE": FLAKY})
    engine.hosts.create(Host("flaky1", "flaky", str(tmp_path / "flaky1")))
    return tmp_path / "flaky1"


def test_kill_9_during_deploy_then_recover(engine, home, headnode, flaky_host, tmp_path) -> None:
    hold, held = tmp_path / "hold", tmp_path / "held"
    hold.touch()
    vm = engine.vms.create(TTYLINUX)
    env = {**os.environ, "HEADNODE_HOME": str(home.root), "HOLD": str(hold), "HELD": str(held)}
    code = "from tui.main import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "vm", "deploy", str(vm.id), "flaky1", "--detach"], env=env)
    deadline = time.monotonic() + 30
    while not held.exists() and time.monotonic() < deadline:  # the deploy's CLONE program runs, held
        time.sleep(0.05)
    assert held.exists(), "the deploy never reached its CLONE program"
    assert proc.wait(30) == 0  # --detach: the deploy goes on in the service, which is what dies here
    os.kill(lock_holder(ServicePaths(home)), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while lock_holder(ServicePaths(home)) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    vm = engine.vms.get(vm.id)
    assert vm.state is VmState.PROLOG and vm.interrupted
    shown = headnode("vm", "show", str(vm.id))
    assert "STATE     : prolog (interrupted)" in shown.stdout
    with pytest.raises(InputError, match="was interrupted: use vm recover"):
        engine.vms.shutdown(vm.id)
    hold.unlink()
    vm = engine.vms.recover(vm.id, retry=True)
    assert (vm.state, vm.host) == (VmState.RUNNING, "flaky1")
    assert files_under(flaky_host / f"{vm.id}/images") == ["disk.0", "disk.1", "disk.2"]
    assert [lease.vm for lease in engine.networks.leases("default")] == [vm.id]
