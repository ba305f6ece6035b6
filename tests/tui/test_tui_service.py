"""The console as a client of the home's engine service (pilot tests; the real terminal: tests/system)."""

from __future__ import annotations

import asyncio

from engine.service.audit import AuditLog
from engine.service.client import ServiceClient
from engine.transfers.hosts import Host, Hosts
from screens.networks import LeasesScreen
from tests.conftest import site_driver
from tests.tui.watch import until
from tui.app import HeadnodeApp
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import FormScreen, PickScreen


async def test_changes_made_in_the_console_are_audited(home, tmp_path) -> None:
    """Through the screens, as a user makes them: a host added, edited and deleted, an address leased and
    released; each recorded once with the console as its client, in the words the CLI's commands use."""
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5", "a")
        form = app.screen
        assert isinstance(form, FormScreen)
        for name, value in {"name": "n1", "driver": "shared", "vm_dir": str(tmp_path / "n1")}.items():
            form.query_one(f"#field-{name}").value = value
        await pilot.press("enter")
        await until(pilot, lambda: "n1" in [h.name for h in app.hosts.list()])
        await until(pilot, lambda: not isinstance(app.screen, FormScreen))
        await until(pilot, lambda: app.screen.main_widget().row_count == 2)
        table = app.screen.main_widget()
        table.focus()
        table.move_cursor(row=table.get_row_index("n1"))
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, FormScreen))
        app.screen.query_one("#field-max_transfers").value = "2"
        await pilot.press("enter")
        await until(pilot, lambda: app.hosts.get("n1").max_transfers == 2)
        await until(pilot, lambda: not isinstance(app.screen, FormScreen))
        table.focus()
        table.move_cursor(row=table.get_row_index("n1"))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: [h.name for h in app.hosts.list()] == ["local"])
        await pilot.press("4", "enter")
        await until(pilot, lambda: isinstance(app.screen, LeasesScreen))
        await pilot.press("l", "tab", "7", "enter")  # the next free address, to VM 7
        await until(pilot, lambda: len(app.networks.leases("default")) == 1)
        await until(pilot, lambda: isinstance(app.screen, LeasesScreen) and app.screen.main_widget().rows)
        (lease,) = app.networks.leases("default")
        app.screen.main_widget().focus()
        await pilot.press("home", "r", "y")
        await until(pilot, lambda: app.networks.leases("default") == [])
        await until(pilot, lambda: len(AuditLog(home).entries()) == 5)
    entries = AuditLog(home).entries()
    assert [(e.action, e.target, e.detail) for e in entries] == [
        ("host create", "n1", "driver shared"),
        ("host update", "n1", "driver shared"),
        ("host delete", "n1", ""),
        ("lease", f"default {lease.ip}", "for VM 7"),
        ("release", f"default {lease.ip}", "--force"),
    ]
    assert all(e.client.startswith("console ") for e in entries)


async def test_the_console_sees_the_services_runs_and_quitting_offers_to_leave_them(home, tmp_path) -> None:
    source = tmp_path / "src.img"
    source.write_bytes(b"x" * 4096)
    hold = tmp_path / "hold"
    hold.touch()
    # A site CLONE that waits for `hold` to go, so the run is still running when the console looks.
    wait = (
        f"#!/bin/sh\nwhile [ -e {hold} ]; do sleep 0.05; done\n"
        'mkdir -p "$(dirname "${2#*:}")"\nexec cp "${1#*:}" "${2#*:}"\n'
    )
    site_driver(home, "slow", programs={"CLONE": wait})
    Hosts(home).create(Host("slow1", "slow", str(tmp_path / "slow1")))
    client = ServiceClient(home, "test")
    script = f"CLONE local:{source} slow1:{tmp_path}/slow1/5/images/disk.0\n"
    run = client.call("submit", script=script, source="job.script", vm=5)["run"]

    app = HeadnodeApp(home, service=True)
    async with app.run_test() as pilot:
        for _ in range(200):
            if run in app.transfers.runs:
                break
            await pilot.pause(0.05)
        assert app.transfers.runs[run].state == "running" and app.transfers.runs[run].vm == 5
        assert [r.id for r in app.executor.active()] == [run]
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, PickScreen)
        assert app.screen.choices == ["Quit: they go on in the background", "Cancel them, then quit"]
        await pilot.press("escape")  # stay
        assert not isinstance(app.screen, PickScreen)
    assert client.call("status")["runs_active"] == 1  # the console went, the run did not
    hold.unlink()
    for _ in range(200):
        (state,) = [r["state"] for r in client.call("runs")["runs"] if r["run"] == run]
        if state != "running":
            break
        await asyncio.sleep(0.05)
    assert state == "done" and (tmp_path / "slow1/5/images/disk.0").read_bytes() == source.read_bytes()
