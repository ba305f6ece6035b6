"""doctor finds each kind of broken lease on a real database, changes nothing without fix, and repairs with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.home import Home
from engine.networks.addresses import parse_ipv4
from engine.networks.manager import Networks
from engine.store.database import Store


@pytest.fixture
def nets(home: Home, tmp_path: Path) -> Networks:
    nets = Networks(home)
    for i, text in enumerate(
        [
            "NAME=lan\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n",
            "NAME=fix\nTYPE=FIXED\nBRIDGE=br0\nLEASES=[IP=192.168.5.5, MAC=02:00:0a:00:00:01]\n",
        ]
    ):
        path = tmp_path / f"{i}.net"
        path.write_text(text)
        nets.create_from_file(path)
    with Store(home.db_path).write() as db:
        db.table("vms").insert_multiple([{"id": 1}, {"id": 2}, {"id": 3}])
    return nets


def corrupt(nets: Networks) -> None:
    """One lease per kind of problem, written the way a bug or a hand edit would."""
    lan = nets.book("lan")
    for vm in (1, 2, 3):
        nets.lease("lan", vm=vm)  # .1 .2 .3
    good = lan.get("10.0.0.2")
    assert good is not None
    wrong_mac = {**_doc(good), "mac": "02:00:0a:00:00:99"}
    lan.rewrite(parse_ipv4("10.0.0.2"), wrong_mac)
    lan.rewrite(parse_ipv4("10.0.0.255"), {**_doc(good), "ip": "10.0.0.255", "mac": "02:00:0a:00:00:ff"})
    nets.lease("lan", vm=42)  # VM 42 does not exist: .4
    nets.lease("fix", vm=3)  # 192.168.5.5 with MAC 02:00:0a:00:00:01 on br0, the MAC of lan's 10.0.0.1


def _doc(lease) -> dict:
    return {k: getattr(lease, k) for k in ("ip", "mac", "vm", "state", "note", "created", "updated")}


def test_doctor_reports_without_changing_anything(nets: Networks) -> None:
    corrupt(nets)
    journal = nets.book("lan").file.journal_path
    before = journal.read_bytes()
    findings = nets.doctor()
    assert sorted((f.kind, f.network, f.ip, f.fixed) for f in findings) == [
        ("duplicate", "fix", "192.168.5.5", False),
        ("mac", "lan", "10.0.0.2", False),
        ("orphan", "lan", "10.0.0.4", False),
        ("outside", "lan", "10.0.0.255", False),
    ]
    messages = {f.kind: f.message for f in findings}
    assert messages["mac"] == "10.0.0.2 has MAC 02:00:0a:00:00:99, the rule gives 02:00:0a:00:00:02"
    assert messages["orphan"] == "10.0.0.4 is leased to VM 42, which no longer exists"
    assert messages["duplicate"] == "192.168.5.5 (02:00:0a:00:00:01) is also leased in 'lan' on bridge br0"
    assert journal.read_bytes() == before


def test_doctor_fix_repairs_and_then_finds_nothing(home: Home, nets: Networks) -> None:
    corrupt(nets)
    assert {f.kind for f in nets.doctor(fix=True) if f.fixed} == {"duplicate", "mac", "orphan", "outside"}
    fresh = Networks(home)
    assert fresh.doctor() == []
    assert [(x.ip, x.mac, x.vm) for x in fresh.leases("lan")] == [
        ("10.0.0.1", "02:00:0a:00:00:01", 1),
        ("10.0.0.2", "02:00:0a:00:00:02", 2),
        ("10.0.0.3", "02:00:0a:00:00:03", 3),
    ]
    assert fresh.leases("fix") == []  # the newer of the two leases with one MAC on br0


def test_without_a_vms_table_every_vm_lease_is_an_orphan(tmp_path: Path) -> None:
    nets = Networks(Home(tmp_path / "h").ensure())
    (tmp_path / "n.net").write_text("NAME=lan\nBRIDGE=br0\nNETWORK_ADDRESS=10.0.0.0/24\n")
    nets.create_from_file(tmp_path / "n.net")
    nets.lease("lan", vm=0)
    nets.hold("lan", "10.0.0.9")
    assert [(f.kind, f.ip) for f in nets.doctor()] == [("orphan", "10.0.0.1")]


def test_a_record_stored_under_the_wrong_address(nets: Networks) -> None:
    lan = nets.book("lan")
    lease = nets.lease("lan", vm=1)
    lan.rewrite(parse_ipv4("10.0.0.7"), _doc(lease))  # says 10.0.0.1, stored as 10.0.0.7
    findings = nets.doctor(fix=True)
    assert [(f.kind, f.ip) for f in findings] == [("record", "10.0.0.1")]
    assert [x.ip for x in nets.leases("lan")] == ["10.0.0.1"]
