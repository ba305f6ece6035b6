"""Every screen at 80x24 and 120x40, with fixed data in a home at a fixed path (sync: snap_compare runs its
own event loop). Update with `pytest tests/tui/test_snapshots.py --snapshot-update` after reading the report."""

from __future__ import annotations

import pytest
from textual.widgets import Log

from engine.core import Engine
from engine.defaults import sample_templates
from engine.events import Level, LogEvent
from engine.home import Home
from tests.tui.conftest import SIZES
from tests.tui.watch import until
from tui.app import HeadnodeApp

SCREEN_KEYS = {"dashboard": "1", "vms": "2", "transfers": "3", "networks": "4", "hosts": "5", "log": "6", "images": "7"}


def fixed_data(home: Home) -> None:
    """The same records in every run, made through the engine: two networks with leases, and two VMs (one
    deployed) beside the embedded default. The front end gets a fixed name, not this machine's."""
    home.config_path.write_text(home.config_path.read_text().replace('FRONTEND_NAME = ""', "FRONTEND_NAME = head"))
    (home.root / "lan.net").write_text(
        "NAME = lan\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = C\n"
    )
    (home.root / "dmz.net").write_text("NAME = dmz\nTYPE = FIXED\nBRIDGE = br1\nLEASES = [ IP = 10.9.0.5 ]\n")
    with Engine(home) as engine:
        engine.networks.create_from_file(home.root / "lan.net")
        engine.networks.create_from_file(home.root / "dmz.net")
        for vm in range(1, 4):
            engine.networks.lease("lan", vm=vm, note=f"web-{vm}")
        engine.networks.hold("lan", "10.1.0.200", note="gateway")
        first = engine.vms.create(sample_templates()["ttylinux.tmpl"])
        engine.vms.create(sample_templates()["ttylinux.tmpl"])
        engine.vms.deploy(first.id, "local")


def log_some(app: HeadnodeApp) -> None:
    app.bus.publish(LogEvent("network default created (254 addresses)", source="vnet", at=3600.0))
    app.bus.publish(LogEvent("host local: VM directory not writable", level=Level.WARNING, source="host", at=3661.0))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREEN_KEYS))
def test_screen(snap_compare, fixed_home, screen, size) -> None:
    fixed_data(fixed_home)
    app = HeadnodeApp(fixed_home)

    async def prepare(pilot) -> None:
        pilot.app.animation_level = "none"
        log_some(pilot.app)
        await pilot.pause()

    assert snap_compare(app, press=[SCREEN_KEYS[screen]], terminal_size=size, run_before=prepare)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_transfers_after_a_deploy(snap_compare, fixed_home, size) -> None:
    fixed_data(fixed_home)

    async def deployed(pilot) -> None:
        app = pilot.app
        app.run_engine("deploy", app.vms.deploy, 1, "local")
        await app.workers.wait_for_complete()
        await pilot.press("3")
        # The transfer log beside starts every line with the wall-clock time; the Pilot tests check its lines.
        log = app.screen.query_one("#transfer-log", Log)
        await until(pilot, lambda: any("Script finished successfully" in line for line in log.lines))
        log.clear()

    assert snap_compare(HeadnodeApp(fixed_home), terminal_size=size, run_before=deployed)


def test_deploy_dry_run(snap_compare, fixed_home) -> None:
    fixed_data(fixed_home)

    async def planned(pilot) -> None:
        await pilot.press("2", "down", "p")
        await pilot.app.workers.wait_for_complete()  # the hosts to pick from are listed on a worker thread
        await pilot.pause()
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(HeadnodeApp(fixed_home), terminal_size=(120, 40), run_before=planned)


def test_help(snap_compare, fixed_home) -> None:
    assert snap_compare(HeadnodeApp(fixed_home), press=["6", "question_mark"], terminal_size=(80, 24))


def test_read_only(snap_compare, fixed_home) -> None:
    assert snap_compare(HeadnodeApp(fixed_home, read_only=True), press=["6"], terminal_size=(80, 24))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_leases(snap_compare, fixed_home, size) -> None:
    fixed_data(fixed_home)

    async def leases_loaded(pilot) -> None:
        await pilot.press("4", "enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(HeadnodeApp(fixed_home), terminal_size=size, run_before=leases_loaded)
