"""Leasing: policies, specific addresses, holds, releases, atomic batches, separate networks, and the store's
guarantees under threads, several processes and kill -9, all on real files."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tinydb import TinyDB

from engine.errors import InputError, OperationError
from engine.home import Home
from engine.networks import lease_file as leasefile
from engine.networks.lease_book import Lease
from engine.networks.manager import Networks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def nets(home: Home) -> Networks:
    return Networks(home)


def create(nets: Networks, tmp_path: Path, text: str) -> None:
    path = tmp_path / f"net{len(nets.list())}.tmpl"
    path.write_text(text)
    nets.create_from_file(path)


@pytest.fixture
def lan(nets: Networks, tmp_path: Path) -> str:
    create(nets, tmp_path, "NAME = lan\nBRIDGE = br0\nNETWORK_ADDRESS = 10.0.0.0/24\n")
    return "lan"


def ips(leases) -> list[str]:
    return [x.ip for x in leases]


def test_a_lease_records_everything(nets: Networks, lan: str) -> None:
    before = time.time()
    lease = nets.lease(lan, vm=7, note="web")
    assert (lease.network, lease.ip, lease.mac, lease.vm, lease.state, lease.note) == (
        "lan",
        "10.0.0.1",
        "02:00:0a:00:00:01",
        7,
        "used",
        "web",
    )
    assert before - 0.01 <= lease.created == lease.updated <= time.time() + 0.01
    assert lease.to_json() == {
        "network": "lan",
        "ip": "10.0.0.1",
        "mac": "02:00:0a:00:00:01",
        "ip6_global": None,
        "ip6_ula": None,
        "ip6_link": "fe80::aff:fe00:1",
        "vm": 7,
        "state": "used",
        "note": "web",
        "host": "one-7",
    }
    assert nets.leases(lan) == [lease]


def test_next_fit_does_not_hand_out_a_just_released_address(home: Home, nets: Networks, lan: str) -> None:
    assert [nets.lease(lan, vm=i).ip for i in range(3)] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    nets.release(lan, "10.0.0.2", force=True)
    assert nets.lease(lan, vm=9).ip == "10.0.0.4"
    # The cursor is persisted: a fresh process goes on from .5.
    assert Networks(home).lease(lan, vm=10).ip == "10.0.0.5"


def test_next_fit_wraps_around_to_freed_addresses(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=s\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0\nNETWORK_SIZE=4\n")
    assert ips(nets.lease_many("s", 4, vm=1)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    nets.release("s", "10.0.0.2", force=True)
    assert nets.lease("s", vm=2).ip == "10.0.0.2"


def test_first_free_reuses_the_lowest(home: Home, nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=f\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nPOLICY=first-free\n")
    assert ips(nets.lease_many("f", 3, vm=1)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    nets.release("f", "10.0.0.2", force=True)
    assert nets.lease("f", vm=2).ip == "10.0.0.2"
    assert nets.lease("f", vm=2).ip == "10.0.0.4"
    # A release by another process is seen: the hint of this one does not skip it.
    Networks(home).release("f", "10.0.0.1", force=True)
    assert nets.lease("f", vm=3).ip == "10.0.0.1"


def test_lease_a_given_address(nets: Networks, lan: str) -> None:
    assert nets.lease(lan, vm=1, ip="10.0.0.77").mac == "02:00:0a:00:00:4d"
    with pytest.raises(OperationError, match=r"10\.0\.0\.77 in 'lan' is taken: leased to VM 1"):
        nets.lease(lan, vm=2, ip="10.0.0.77")
    with pytest.raises(InputError, match="is the network address"):
        nets.lease(lan, vm=2, ip="10.0.0.0")
    with pytest.raises(InputError, match="is the broadcast address"):
        nets.lease(lan, vm=2, ip="10.0.0.255")
    with pytest.raises(InputError, match=r"outside the range of 'lan' \(10\.0\.0\.1-10\.0\.0\.254\)"):
        nets.lease(lan, vm=2, ip="10.0.1.1")
    with pytest.raises(InputError, match="octet 256 is over 255"):
        nets.lease(lan, vm=2, ip="10.0.0.256")
    assert ips(nets.leases(lan)) == ["10.0.0.77"]


def test_ip_start_end_bound_the_leases(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=r\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\nIP_START=10.0.0.10\nIP_END=10.0.0.11\n")
    assert ips(nets.lease_many("r", 2, vm=1)) == ["10.0.0.10", "10.0.0.11"]
    with pytest.raises(InputError, match="outside the range"):
        nets.lease("r", vm=1, ip="10.0.0.12")


def test_hold_and_release(nets: Networks, lan: str) -> None:
    held = nets.hold(lan, "10.0.0.1", note="router")
    assert (held.vm, held.state, held.note) == (None, "hold", "router")
    assert nets.lease(lan).state == "hold"  # no VM: a hold
    with pytest.raises(OperationError, match="is taken: held \\(router\\)"):
        nets.lease(lan, vm=3, ip="10.0.0.1")
    assert nets.lease(lan, vm=3).ip == "10.0.0.3"
    assert nets.release(lan, "10.0.0.1").state == "hold"  # a hold needs no force
    with pytest.raises(OperationError, match="is leased to VM 3: use --force"):
        nets.release(lan, "10.0.0.3")
    with pytest.raises(OperationError, match=r"10\.0\.0\.99 is not leased"):
        nets.release(lan, "10.0.0.99")
    assert nets.release(lan, "10.0.0.3", force=True).vm == 3
    assert ips(nets.leases(lan)) == ["10.0.0.2"]
    usage = nets.usage(lan)
    assert (usage.size, usage.used, usage.held, usage.free) == (254, 0, 1, 253)


def test_release_vm_frees_its_leases_in_every_network(nets: Networks, lan: str, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=other\nBRIDGE=br1\nNETWORK_ADDRESS=10.9.0.0/24\n")
    nets.lease(lan, vm=5)
    nets.lease(lan, vm=6)
    nets.lease("other", vm=5)
    nets.hold(lan, "10.0.0.50")
    released = nets.release_vm(5)
    assert sorted((x.network, x.ip) for x in released) == [("lan", "10.0.0.1"), ("other", "10.9.0.1")]
    assert ips(nets.leases(lan)) == ["10.0.0.2", "10.0.0.50"]
    assert nets.release_vm(5) == []


def test_a_batch_is_all_or_none(nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME=s\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0\nNETWORK_SIZE=5\n")
    nets.lease("s", vm=1, ip="10.0.0.3")
    journal = nets.book("s").file.journal_path
    before = journal.read_bytes()
    with pytest.raises(OperationError, match="has only 4 free addresses, 5 asked: nothing leased"):
        nets.lease_many("s", 5, vm=2)
    assert journal.read_bytes() == before
    assert ips(nets.leases("s")) == ["10.0.0.3"]
    # A given address does not move the next-fit cursor (as in OpenNebula).
    assert ips(nets.lease_many("s", 4, vm=2)) == ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5"]
    with pytest.raises(OperationError, match="network 's' is full: all 5 addresses are leased"):
        nets.lease("s", vm=3)


def test_fixed_network_hands_out_its_listed_pairs(nets: Networks, tmp_path: Path) -> None:
    text = "NAME=pub\nTYPE=FIXED\nBRIDGE=eth1\nLEASES=[IP=130.10.0.4]\nLEASES=[IP=130.10.0.1,MAC=50:20:20:20:20:20]\n"
    create(nets, tmp_path, text)
    first = nets.lease("pub", vm=1)
    assert (first.ip, first.mac) == ("130.10.0.1", "50:20:20:20:20:20")
    assert nets.lease("pub", vm=2).mac == "02:00:82:0a:00:04"
    with pytest.raises(OperationError, match="is full"):
        nets.lease("pub", vm=3)
    with pytest.raises(InputError, match="outside the range of 'pub' \\(2 fixed addresses\\)"):
        nets.hold("pub", "130.10.0.2")


def test_two_networks_never_share_lease_state(nets: Networks, tmp_path: Path) -> None:
    """OpenNebula bug #220: two FIXED networks listing the same IP corrupted each other's leases."""
    for name, bridge in (("seven", "br7"), ("eight", "br8")):
        create(nets, tmp_path, f"NAME={name}\nTYPE=FIXED\nBRIDGE={bridge}\nLEASES=[IP=130.10.0.1]\n")
    nets.lease("seven", vm=1)
    nets.lease("eight", vm=2)
    nets.release("seven", "130.10.0.1", force=True)
    assert [(x.ip, x.vm) for x in nets.leases("eight")] == [("130.10.0.1", 2)]
    assert nets.leases("seven") == []
    with pytest.raises(OperationError, match="is full"):
        nets.lease("eight", vm=3)
    assert nets.lease("seven", vm=3).ip == "130.10.0.1"


def test_bad_vm_ids_and_counts_are_refused(nets: Networks, lan: str) -> None:
    with pytest.raises(InputError, match="a VM id is a number 0 or more"):
        nets.lease(lan, vm=-1)
    with pytest.raises(InputError, match="must be 1 or more"):
        nets.lease_many(lan, 0, vm=1)
    with pytest.raises(InputError, match="no network named 'nope' \\(networks: 'lan'\\)"):
        nets.lease("nope", vm=1)
    assert nets.leases(lan) == []


def test_the_snapshot_is_a_plain_tinydb_file(nets: Networks, lan: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leasefile, "COMPACT_MIN_BYTES", 2000)
    nets.lease_many(lan, 30, vm=4)  # one journal line past 2,000 bytes: compacted
    assert nets.book(lan).file.journal_path.stat().st_size == 0
    db = TinyDB(nets.book(lan).file.snapshot_path)
    assert db.table("10.0.0").get(doc_id=0x0A000005)["mac"] == "02:00:0a:00:00:05"
    assert db.table("_meta").get(doc_id=1) == {"cursor": 30}
    db.close()


def test_a_lease_parses_only_the_tables_it_uses(home: Home, nets: Networks, tmp_path: Path) -> None:
    # Loading a network need not parse every lease to hand out the next one: with 60,000 in use, a new process
    # leasing one address parses the /24 the next-fit cursor points into (and the cursor's own table).
    create(nets, tmp_path, "NAME = big\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = B\n")
    nets.lease_many("big", 60000, vm=1)  # one journal line past the threshold: compacted
    fresh = Networks(Home(home.root))
    assert fresh.lease("big", vm=2).ip == "10.1.234.97"
    assert sorted(fresh.book("big").file.data) == ["10.1.234", "_meta"]
    assert fresh.book("big").get("10.1.3.4").vm == 1
    assert sorted(fresh.book("big").file.data) == ["10.1.234", "10.1.3", "_meta"]
    assert len(fresh.leases("big")) == 60001


def test_a_damaged_table_of_the_snapshot_is_found_when_used(home: Home, nets: Networks, tmp_path: Path) -> None:
    create(nets, tmp_path, "NAME = big\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = B\n")
    nets.lease_many("big", 60000, vm=1)  # compacted: one table a line
    snapshot = nets.book("big").file.snapshot_path
    raw = snapshot.read_bytes()
    start = raw.index(b'"10.1.3":{') + len(b'"10.1.3":{')
    snapshot.write_bytes(raw[:start] + b"garbage" + raw[start + 7 :])
    fresh = Networks(Home(home.root))
    assert fresh.lease("big", vm=2).ip == "10.1.234.97"  # another /24: nothing it could clash with
    with pytest.raises(OperationError, match=r"table 10\.1\.3 of the lease snapshot does not load"):
        fresh.lease("big", vm=3, ip="10.1.3.7")
    assert fresh.book("big").get("10.1.3.7") is None  # what loaded stays readable
    assert [f.kind for f in fresh.doctor() if f.kind != "orphan"] == ["damaged"]  # (VM 1 does not exist)


def test_compaction_keeps_every_change_whatever_was_parsed(
    home: Home, nets: Networks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compaction writes the tables it never parsed as the text they had; a table changed by this process, or by
    # another one through the journal, is written from its documents. Plain TinyDB sees the same leases.
    create(nets, tmp_path, "NAME = big\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = B\n")
    monkeypatch.setattr(leasefile, "COMPACT_MIN_BYTES", 4000)
    other = Networks(Home(home.root))
    rng = random.Random(7)
    for step in range(300):
        actor = nets if step % 3 else other
        choice = rng.random()
        if choice < 0.15:
            actor.lease_many("big", rng.randint(1, 700), vm=step)
        elif choice < 0.6:  # a given address among the first /24s: leased if free, else released
            address = f"10.1.{rng.randint(0, 8)}.{rng.randint(1, 254)}"
            if actor.book("big").get(address) is None:
                actor.lease("big", vm=step, ip=address)
            else:
                actor.release("big", address, force=True)
        else:
            actor.lease("big", vm=step)
    expected = {(x.ip, x.mac, x.vm) for x in nets.leases("big")}
    assert {(x.ip, x.mac, x.vm) for x in Networks(Home(home.root)).leases("big")} == expected
    assert {(x.ip, x.mac, x.vm) for x in other.leases("big")} == expected
    monkeypatch.setattr(leasefile, "COMPACT_MIN_BYTES", 1)
    file = nets.book("big").file
    while file.journal_path.stat().st_size:  # lease until the journal outgrows the snapshot and is folded into it
        nets.lease_many("big", 2000, vm=1)
    expected = {(x.ip, x.mac, x.vm) for x in nets.leases("big")}
    db = TinyDB(file.snapshot_path)
    plain = {(d["ip"], d["mac"], d["vm"]) for name in db.tables() if name != "_meta" for d in db.table(name).all()}
    db.close()
    assert plain == expected


def test_a_lease_object_has_every_field(nets: Networks, lan: str) -> None:
    lease = nets.lease(lan, vm=1, note="n")  # made without the dataclass's __init__, for speed
    assert vars(lease).keys() == {f.name for f in dataclasses.fields(Lease)}
    assert lease == Lease(**vars(lease)) and hash(lease) == hash(Lease(**vars(lease)))


def test_changes_reach_another_instance_through_tail_reload_and_compaction(
    home: Home, nets: Networks, lan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Networks(home)
    assert other.leases(lan) == []
    stamp = other.stamp()
    nets.lease(lan, vm=1)
    assert other.stamp() != stamp
    assert ips(other.leases(lan)) == ["10.0.0.1"]  # appended line read
    monkeypatch.setattr(leasefile, "COMPACT_MIN_BYTES", 1)
    nets.lease(lan, vm=2)  # compacts: a new journal file
    assert ips(other.leases(lan)) == ["10.0.0.1", "10.0.0.2"]
    assert other.lease(lan, vm=3).ip == "10.0.0.3"
    assert ips(nets.leases(lan)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_a_torn_journal_tail_is_ignored_and_cut(home: Home, nets: Networks, lan: str) -> None:
    nets.lease(lan, vm=1)
    journal = nets.book(lan).file.journal_path
    with open(journal, "ab") as f:
        f.write(b'{"t":{"10.0.0":{"167772162":{"ip":"10.0.0.2","mac"')  # a writer killed mid-line
    fresh = Networks(home)
    assert ips(fresh.leases(lan)) == ["10.0.0.1"]
    assert fresh.lease(lan, vm=2).ip == "10.0.0.2"
    assert journal.read_bytes().count(b"\n") == 2
    assert all(json.loads(line) for line in journal.read_bytes().splitlines())
    assert ips(Networks(home).leases(lan)) == ["10.0.0.1", "10.0.0.2"]


def test_a_corrupt_line_inside_the_journal_is_reported_and_stops_new_leases(
    home: Home, nets: Networks, lan: str, tmp_path: Path
) -> None:
    # It was skipped without a word: the lease it held vanished from `vnet show`, doctor found no problem, the next
    # lease could take its address and the next compaction made the loss permanent.
    create(nets, tmp_path, "NAME = wan\nBRIDGE = br1\nNETWORK_ADDRESS = 10.9.0.0/24\n")
    for _ in range(3):
        nets.lease(lan, note="t")
    journal = nets.book(lan).file.journal_path
    lines = journal.read_bytes().split(b"\n")
    lines[1] = b"\x00garbage" + b"x" * (len(lines[1]) - 8)
    journal.write_bytes(b"\n".join(lines))
    fresh = Networks(home)
    assert ips(fresh.leases(lan)) == ["10.0.0.1", "10.0.0.3"]  # what loaded is kept and shown
    (finding,) = fresh.doctor()
    assert (finding.kind, finding.network, finding.fixed) == ("damaged", "lan", False)
    assert finding.message.startswith(f"{journal}:2: journal line does not parse ({len(lines[1])} bytes): the lease")
    with pytest.raises(OperationError, match=f"{journal}:2: journal line does not parse"):
        fresh.lease(lan, note="t")
    assert fresh.lease("wan", note="t").ip == "10.9.0.1"  # one damaged network does not block the others
    assert journal.read_bytes() == b"\n".join(lines)  # nothing written or compacted over it
    (fixed,) = fresh.doctor(fix=True)
    (aside,) = journal.parent.glob(f"{journal.name}.damaged-*")
    assert fixed.fixed and fixed.message.endswith(f"the damaged files are kept as {aside}")
    assert aside.read_bytes() == b"\n".join(lines)
    assert Networks(home).doctor() == []
    assert Networks(home).lease(lan, note="t").ip == "10.0.0.4"  # the cursor was in the damaged line's neighbours
    assert ips(Networks(home).leases(lan)) == ["10.0.0.1", "10.0.0.3", "10.0.0.4"]


def test_an_empty_snapshot_is_reported_with_what_was_kept(
    home: Home, nets: Networks, lan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leasefile, "COMPACT_MIN_BYTES", 0)  # compact at once: leases .1-.10 go to the snapshot
    nets.lease_many(lan, 10)
    nets.lease(lan, note="t")
    monkeypatch.setattr(leasefile, "COMPACT_MIN_BYTES", 4 << 20)
    file = nets.book(lan).file
    assert file.snapshot_path.stat().st_size > 0
    journaled = [lease.ip for lease in nets.leases(lan)][10:]
    for _ in range(2):
        journaled.append(nets.lease(lan, note="t").ip)
    file.snapshot_path.write_bytes(b"")
    fresh = Networks(home)
    assert ips(fresh.leases(lan)) == journaled
    (finding,) = fresh.doctor()
    assert finding.kind == "damaged" and finding.message == (
        f"{file.snapshot_path}: the lease snapshot is empty (0 bytes): every lease compacted into it is lost; "
        "the journal's are kept"
    )
    with pytest.raises(OperationError, match="lease snapshot is empty"):
        fresh.lease(lan, note="t")


def test_a_compaction_killed_midway_leaves_no_stray_file(home: Home, nets: Networks, lan: str) -> None:
    nets.lease(lan, vm=1)
    file = nets.book(lan).file
    strays = [file.journal_path.with_name(f".{file.journal_path.name}.999999.tmp")]
    strays.append(file.snapshot_path.with_name(f".{file.snapshot_path.name}.999999.1234.tmp"))
    for stray in strays:
        stray.write_bytes(b"{half")
    Networks(home).lease(lan, vm=2)
    assert not any(stray.exists() for stray in strays)


def test_a_stray_file_of_a_killed_compaction_is_removed_by_the_next_read(home: Home, nets: Networks, lan: str) -> None:
    """The next open cleans up, not only the next lease: a network only read afterwards kept it for good."""
    nets.lease(lan, vm=1)
    file = nets.book(lan).file
    stray = file.snapshot_path.with_name(f".{file.snapshot_path.name}.999999.1234.tmp")
    stray.write_bytes(b"{half")
    assert ips(Networks(home).leases(lan)) == ["10.0.0.1"]
    assert not stray.exists()


def test_threads_never_get_the_same_address(nets: Networks, lan: str, home: Home) -> None:
    got: list[str] = []
    lock = threading.Lock()

    def worker(vm: int) -> None:
        for _ in range(25):
            ip = nets.lease(lan, vm=vm).ip
            with lock:
                got.append(ip)

    threads = [threading.Thread(target=worker, args=(vm,)) for vm in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 200
    assert sorted(ips(Networks(home).leases(lan))) == sorted(got)


CHILD = """
import sys
from engine.networks import lease_file as leasefile
from engine.home import Home
from engine.networks.manager import Networks
leasefile.COMPACT_MIN_BYTES = int(sys.argv[5])  # small: compactions happen while others lease or get killed
nets = Networks(Home(sys.argv[1]))
vm, rounds, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(rounds):
    leases = nets.lease_many("big", batch, vm=vm) if batch > 1 and i % 2 else [nets.lease("big", vm=vm)]
    for lease in leases:
        print(lease.ip, lease.vm, flush=True)  # acknowledged: the lease returned
"""


def spawn(home: Home, vm: int, rounds: int, batch: int = 1, compact_bytes: int = 30_000) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home.root), str(vm), str(rounds), str(batch), str(compact_bytes)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture
def big(nets: Networks, tmp_path: Path) -> str:
    create(nets, tmp_path, "NAME=big\nBRIDGE=br0\nNETWORK_ADDRESS=10.8.0.0/16\n")
    return "big"


def test_four_processes_leasing_at_once(home: Home, big: str, monkeypatch: pytest.MonkeyPatch) -> None:
    children = [spawn(home, vm, 150, batch=7) for vm in range(4)]
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0, 0]
    acknowledged = [tuple(line.split()) for out in outputs for line in out.splitlines()]
    assert len(acknowledged) == 4 * (75 + 75 * 7)
    assert len({ip for ip, _ in acknowledged}) == len(acknowledged)  # never handed out twice
    fresh = Networks(home)
    stored = {(x.ip, str(x.vm)) for x in fresh.leases(big)}
    assert stored == set(acknowledged)  # none lost, none extra
    assert fresh.book(big).file.snapshot_path.exists()  # compactions ran among the writers


def test_kill_9_keeps_every_acknowledged_lease(home: Home, big: str) -> None:
    rng = random.Random(1234)
    acknowledged: set[str] = set()
    for vm in range(6):
        child = spawn(home, vm, 100000, batch=rng.choice([1, 40]))
        first = child.stdout.readline()  # it runs
        time.sleep(rng.uniform(0.02, 0.25))
        child.send_signal(signal.SIGKILL)
        rest = child.communicate()[0]
        child.wait()
        acknowledged |= {line.split()[0] for line in (first + rest).splitlines()}
        fresh = Networks(home)  # loads whatever the kill left
        stored = {x.ip for x in fresh.leases(big)}
        assert acknowledged <= stored
        # Beyond those: per killed child at most one batch, committed but not yet printed when the kill came.
        assert len(stored - acknowledged) <= 40 * (vm + 1)
        fresh.close()
    assert len(acknowledged) > 100


def fdatasyncs(call: Callable[[], object]) -> int:
    """How many times `call` calls os.fdatasync, as the interpreter's profiler sees it (the real call runs)."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "c_call" and arg is os.fdatasync:
            calls += 1

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("setting", ["yes", "no"])
def test_power_loss_durability_is_a_setting(home: Home, tmp_path: Path, setting: str) -> None:
    home.config_path.write_text(f"LEASE_SYNC = {setting}\n")
    nets = Networks(Home(home.root))
    assert nets.sync is (setting == "yes")
    create(nets, tmp_path, "NAME=lan\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    synced = fdatasyncs(lambda: nets.lease("lan", vm=1))
    assert nets.leases("lan")[0].ip == "10.0.0.1"
    assert os.path.getsize(nets.book("lan").file.journal_path) > 0
    assert synced == (1 if setting == "yes" else 0)  # each acknowledged lease is on the disk, not only in the cache


def test_a_well_formed_line_of_the_wrong_shape_is_skipped(home: Home, nets: Networks, lan: str) -> None:
    nets.lease(lan, vm=1)
    with open(nets.book(lan).file.journal_path, "ab") as f:
        f.write(b'{"t": {"10.0.0": [1, 2]}}\n[]\n')
    fresh = Networks(home)
    assert ips(fresh.leases(lan)) == ["10.0.0.1"]
    assert fresh.book(lan).file.skipped_lines == 2


def test_changes_are_published_as_events(home: Home, tmp_path: Path) -> None:
    from engine.events import EventBus
    from engine.networks.manager import NetworkChanged

    bus = EventBus()
    seen: list[NetworkChanged] = []
    bus.subscribe(seen.append)
    nets = Networks(home, events=bus)
    create(nets, tmp_path, "NAME=lan\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    nets.lease("lan", vm=1)
    nets.lease_many("lan", 2, vm=2)
    nets.hold("lan", "10.0.0.9")
    nets.release_vm(2)
    nets.delete("lan", force=True)
    assert [(e.network, e.change, e.ips) for e in seen] == [
        ("lan", "created", ()),
        ("lan", "leased", ("10.0.0.1",)),
        ("lan", "leased", ("10.0.0.2", "10.0.0.3")),
        ("lan", "leased", ("10.0.0.9",)),
        ("lan", "released", ("10.0.0.2", "10.0.0.3")),
        ("lan", "deleted", ()),
    ]
