"""The console as a client of the home's engine service (pilot tests; the real terminal: tests/system)."""

from __future__ import annotations

import asyncio

from engine.service.audit import AuditLog
from engine.service.client import ServiceClient
from engine.transfers.hosts import Host, Hosts
from tests.conftest import site_driver
from tests.tui.watch import until
from tui.app import HeadnodeApp
from tui.widgets.form import PickScreen


async def test_lease_changes_made_in_the_console_are_audited(home) -> None:
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        lease = app.networks.lease("default", note="from the console")
        app.networks.release("default", lease.ip)
        await until(pilot, lambda: len(AuditLog(home).entries()) == 2)
    entries = AuditLog(home).entries()
    assert [(e.action, e.target) for e in entries] == [
        ("lease", f"default {lease.ip}"),
        ("release", f"default {lease.ip}"),
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
