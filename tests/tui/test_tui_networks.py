"""Networks and leases screens against a real home: every action, then the engine's state."""

from __future__ import annotations

import pytest

from engine.home import Home
from engine.networks.definition import DhcpService
from engine.networks.manager import Networks
from screens.networks import DoctorScreen, LeasesScreen, NetworksScreen
from tests.tui.conftest import SIZES
from tests.tui.watch import notifications, until
from tui.app import HeadnodeApp
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import FormScreen
from tui.widgets.keyed_table import KeyedTable
from tui.widgets.virtual_table import VirtualTable

LAN = "NAME = lan\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = C\n"


def make_lan(home: Home) -> Networks:
    path = home.root / "lan.net"
    path.write_text(LAN)
    networks = Networks(home)
    networks.create_from_file(path)
    return networks


async def open_leases(app: HeadnodeApp, pilot) -> VirtualTable:
    await pilot.press("4", "enter")
    await app.workers.wait_for_complete()
    await pilot.pause()
    assert isinstance(app.screen, LeasesScreen)
    return app.screen.query_one(VirtualTable)


async def type_into(pilot, text: str) -> None:
    """Put `text` in the focused field at once (typing a long path key by key is slow under Pilot)."""
    pilot.app.focused.value = text
    await pilot.pause()


def rows(table: KeyedTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.mark.parametrize("size", SIZES)
async def test_networks_list_with_usage_and_create_from_a_template(home, tmp_path, size) -> None:
    nets = make_lan(home)
    nets.lease("lan", vm=3)
    nets.set_dhcp("lan", DhcpService("br0"))  # served, but no service runs its dnsmasq: shown as down
    other = tmp_path / "dmz.net"
    other.write_text("NAME = dmz\nTYPE = FIXED\nBRIDGE = br1\nLEASES = [ IP = 10.9.0.5 ]\n")
    app = HeadnodeApp(home)
    async with app.run_test(size=size) as pilot:
        await pilot.press("4")
        table = app.screen.query_one(KeyedTable)
        # lan, then the embedded default every fresh home gets
        assert rows(table) == [
            ["lan", "RANGED", "br0", "10.1.0.1-10.1.0.254", "█░░░░░░░░░░░ 1/254", "253", "down br0"],
            ["default", "RANGED", "virbr0", "192.168.122.2-192.168.122.254", "░░░░░░░░░░░░ 0/253", "253", "-"],
        ]
        await pilot.press("n")
        await type_into(pilot, str(other))
        await pilot.press("enter")
        await app.workers.wait_for_complete()  # created on a worker thread
        await pilot.pause()
        assert [n.name for n in Networks(home).list()] == ["lan", "default", "dmz"]
        assert [r[0] for r in rows(table)] == ["lan", "default", "dmz"]
        assert "network dmz created" in notifications(app)


async def test_a_bad_template_is_reported_and_changes_nothing(home, tmp_path) -> None:
    bad = tmp_path / "bad.net"
    bad.write_text("NAME = bad\nTYPE = RANGED\nNETWORK_ADDRESS = 10.0.0.300\n")
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        await pilot.press("4", "n")
        await type_into(pilot, str(bad))
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        # The form stays open with the problem under the path (it used to close on it); the Log has it too.
        form = app.screen
        assert isinstance(form, FormScreen) and form.values()["path"] == str(bad)
        assert str(bad) in form.errors()["path"] and "300" in form.errors()["path"]
        assert [n.name for n in Networks(home).list()] == ["default"]
        assert any(e.level == "warning" and str(bad) in e.message for e in app.log_events)
        await pilot.press("escape")
        assert isinstance(app.screen, NetworksScreen)


async def test_lease_hold_and_release_with_confirmation(home) -> None:
    networks = make_lan(home)
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        table = await open_leases(app, pilot)
        assert table.rows == []
        await pilot.press("l", "tab", "7", "tab", *"web", "enter")  # next free address, to VM 7
        await app.workers.wait_for_complete()  # the form closes once the engine took it
        await pilot.press("h", *"10.1.0.200", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        leases = {x.ip: (x.vm, x.state, x.note) for x in networks.leases("lan")}
        assert leases == {"10.1.0.1": (7, "used", "web"), "10.1.0.200": (None, "hold", "")}
        assert [r[0] for r in table.rows] == ["10.1.0.1", "10.1.0.200"]
        # Releasing a VM's lease says so, and `n` keeps it.
        table.focus()
        await pilot.press("home", "r")
        assert isinstance(app.screen, ConfirmScreen)
        assert "leased to VM 7" in "\n".join(app.screen.details)
        assert "Frees 10.1.0.1 (02:00:0a:01:00:01)" in app.screen.details[0]
        await pilot.press("n")
        assert len(networks.leases("lan")) == 2
        await pilot.press("r", "y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [x.ip for x in networks.leases("lan")] == ["10.1.0.200"]
        assert [r[0] for r in table.rows] == ["10.1.0.200"]
        # An address outside the network is refused with the engine's message beside the IP, the note kept;
        # nothing changes until a good address is given.
        await pilot.press("h", *"10.2.0.1", "tab", *"gw", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormScreen) and "10.2.0.1" in form.errors()["ip"]
        assert form.values() == {"ip": "10.2.0.1", "note": "gw"} and form.query_one("#field-ip").has_focus
        assert [x.ip for x in networks.leases("lan")] == ["10.1.0.200"]
        form.query_one("#field-ip").value = "10.1.0.201"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, LeasesScreen)
        assert [(x.ip, x.note) for x in networks.leases("lan")] == [("10.1.0.200", ""), ("10.1.0.201", "gw")]
        await pilot.press("escape")
        assert isinstance(app.screen, NetworksScreen)


async def test_lease_filter(home) -> None:
    networks = make_lan(home)
    for vm in range(1, 6):
        networks.lease("lan", vm=vm)
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        table = await open_leases(app, pilot)
        await pilot.press("slash", *"10.1.0.3")
        assert [r[0] for r in table.rows] == ["10.1.0.3"]
        await pilot.press("escape")
        assert len(table.rows) == 5


async def test_leases_of_an_ipv6_network_show_the_global_address(home) -> None:
    path = home.root / "lan.net"
    path.write_text(LAN + "GLOBAL_PREFIX = 2001:db8:1::\n")
    networks = Networks(home)
    networks.create_from_file(path)
    networks.lease("lan", vm=1)
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_leases(app, pilot)
        assert [c.label for c in table.columns][-1] == "IPv6"
        assert list(table.rows) == [("10.1.0.1", "02:00:0a:01:00:01", "1", "used", "", "2001:db8:1::aff:fe01:1")]
        assert "2001:db8:1::aff:fe01:1" in table.render_line(1).text


async def test_export_to_a_file_and_to_the_clipboard(home, tmp_path) -> None:
    networks = make_lan(home)
    networks.lease("lan", vm=4)
    target = tmp_path / "ethers"
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        await pilot.press("4", "x")
        await pilot.pause()
        await pilot.press("down", "down", "enter")  # ethers
        await type_into(pilot, str(target))
        await pilot.press("enter")
        await app.workers.wait_for_complete()  # the export is written on a worker thread
        await pilot.pause()
        assert target.read_text() == networks.export("ethers", "lan") == "02:00:0a:01:00:01 10.1.0.1\n"
        await pilot.press("x", "enter", "enter")  # dnsmasq, to the clipboard
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.clipboard == networks.export("dnsmasq", "lan")
        assert "dhcp-host=02:00:0a:01:00:01,10.1.0.1,one-4" in app.clipboard


async def test_doctor_lists_findings_and_fixes_them_when_asked(home) -> None:
    networks = make_lan(home)
    networks.lease("lan", vm=42)  # VM 42 does not exist: the doctor's "VM gone" finding
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4", "D")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, DoctorScreen)
        assert len(app.screen.findings) == 1 and app.screen.findings[0].ip == "10.1.0.1"
        await pilot.press("escape")
        assert len(networks.leases("lan")) == 1
        await pilot.press("D")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("f")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert networks.doctor() == []


async def test_delete_network_says_what_is_freed(home) -> None:
    networks = make_lan(home)
    networks.lease("lan", vm=1)
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        await pilot.press("4", "d")
        await app.workers.wait_for_complete()  # the usage is read on a worker thread, then the question
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "1 address(es) in use are freed" in "\n".join(app.screen.details)
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [n.name for n in Networks(home).list()] == ["default"]
        assert [r[0] for r in rows(app.screen.query_one(KeyedTable))] == ["default"]


async def test_read_only_refuses_every_change_with_a_notification(home) -> None:
    networks = make_lan(home)
    app = HeadnodeApp(home, read_only=True)
    async with app.run_test() as pilot:
        await pilot.press("4")
        # Changing actions are left out of the footer (they used to show greyed out), the others stay.
        enabled = {a.binding.action: a.enabled for a in app.screen.active_bindings.values()}
        assert "create" not in enabled and "delete" not in enabled and enabled["export"] is True
        await pilot.press("d", "n")
        assert isinstance(app.screen, NetworksScreen)
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.press("l", "h", "r")
        await pilot.pause()
        assert isinstance(app.screen, LeasesScreen)
        assert sum("read-only" in n for n in notifications(app)) == 5
        assert networks.leases("lan") == [] and [n.name for n in networks.list()] == ["lan", "default"]


async def test_a_second_headnode_is_seen_without_a_key_press(home, headnode) -> None:
    make_lan(home)
    app = HeadnodeApp(home)
    app.HOME_POLL_SECONDS = 0.1
    async with app.run_test() as pilot:
        await pilot.press("4")
        table = app.screen.query_one(KeyedTable)
        r = headnode("vnet", "lease", "lan", "--vm", "9")
        assert r.returncode == 0, r.stderr
        await until(pilot, lambda: "1/254" in rows(table)[0][4])  # the home's next poll


async def test_the_networks_screen_says_which_lease_file_is_damaged(home) -> None:
    """The screen showed a damaged network's short counts without a word; it says what `vnet list` says."""
    networks = make_lan(home)
    for _ in range(3):
        networks.lease("lan", note="t")
    journal = networks.book("lan").file.journal_path
    lines = journal.read_bytes().split(b"\n")
    lines[1] = b"\x00garbage" + b"x" * (len(lines[1]) - 8)
    journal.write_bytes(b"\n".join(lines))
    (warning,) = Networks(home).usage("lan").warnings("lan")
    assert warning.startswith(f"network lan: {journal}:2: journal line does not parse")
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await app.workers.wait_for_complete()
        await pilot.pause()
        damage = app.screen.query_one("#networks-damage")
        assert damage.display and str(damage.render()) == f"⚠ {warning}"
        await open_leases(app, pilot)
        assert str(app.screen.query_one("#leases-damage").render()) == f"⚠ {warning}"
        await pilot.press("escape")
        assert Networks(home).doctor(fix=True)  # another process repairs it: the screen sees it at its poll
        await app.workers.wait_for_complete()
        await until(pilot, lambda: not app.screen.query_one("#networks-damage").display)
