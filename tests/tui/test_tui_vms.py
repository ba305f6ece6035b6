"""VMs, Transfers, Hosts and the Dashboard against a real home: the embedded default (host local, network
default, the sample image), real scripts run by the engine's executor, then the engine's state checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.widgets import Log

from engine.transfers.hosts import Host
from engine.vms.states import VmState
from screens.dashboard import DashboardScreen
from screens.hosts import HostsScreen
from screens.transfers import TransfersScreen
from screens.vms import VmScreen, VmsScreen
from tests.conftest import BAD_HOST, BAD_HOST_PROBLEMS, site_driver
from tests.tui.conftest import SIZES
from tests.tui.watch import notifications, until
from tui.app import HeadnodeApp
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import FormScreen, PickScreen
from tui.widgets.keyed_table import KeyedTable

SAMPLE = "ttylinux.tmpl"


async def settle(app: HeadnodeApp, pilot) -> None:
    """Wait for the console's engine calls (a VM operation waits for its script) and the redraws after."""
    await app.workers.wait_for_complete()
    await pilot.pause()


def cells(table: KeyedTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def create_sample(app: HeadnodeApp, pilot) -> None:
    await pilot.press("2", "c")
    assert isinstance(app.screen, PickScreen)
    await pilot.press(*["down"] * app.screen.choices.index(SAMPLE), "enter")
    await settle(app, pilot)  # created on a worker thread


async def operate(app: HeadnodeApp, pilot, key: str, host: str | None = None) -> ConfirmScreen:
    """Press an operation's key, pick the host if asked, and return the confirmation (the dry run)."""
    await pilot.press(key)
    await settle(app, pilot)  # the hosts are listed on a worker thread
    if host is not None:
        assert isinstance(app.screen, PickScreen)
        await pilot.press(*["down"] * app.screen.choices.index(host), "enter")
    await settle(app, pilot)
    assert isinstance(app.screen, ConfirmScreen), notifications(app)
    return app.screen


@pytest.mark.parametrize("size", SIZES)
async def test_create_from_a_sample_then_deploy_after_the_dry_run(home, size) -> None:
    app = HeadnodeApp(home)
    app.HOME_POLL_SECONDS = 0.1
    async with app.run_test(size=size) as pilot:
        await create_sample(app, pilot)
        (vm,) = app.vms.list()
        assert vm.state is VmState.PENDING and vm.name == "ttylinux"
        ip = vm.nics()[0].get("IP")
        assert [x.vm for x in app.networks.leases("default")] == [vm.id]
        table = app.screen.query_one(KeyedTable)
        assert cells(table) == [[str(vm.id), "ttylinux", "pending", "", ip, ""]]
        confirm = await operate(app, pilot, "p", "local")
        text = "\n".join(confirm.details)
        assert f"CLONE {app.home.config.frontend_name}:{home.images}/ttylinux.img" in text
        assert f"local:{home.vms}/{vm.id}/images/disk.0    (16.0 MiB)" in text
        assert "MKSWAP 16" in text and "CONTEXT" in text and "Bytes to move: 16.0 MiB" in text
        assert app.vms.get(vm.id).state is VmState.PENDING  # a dry run changes nothing
        await pilot.press("y")
        await settle(app, pilot)
        vm = app.vms.get(vm.id)
        assert vm.state is VmState.RUNNING and vm.host == "local"
        assert (home.vms / str(vm.id) / "images" / "disk.0").stat().st_size == 16 << 20
        await until(pilot, lambda: cells(table)[0][2:4] == ["running", "local"])  # the home's next poll
        # It said "deploy done, running" (and "shutdown done, done").
        assert f"VM {vm.id}: deploy succeeded, now running" in notifications(app)


async def test_details_show_nics_disks_hosts_and_the_transfer_log(home) -> None:
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await create_sample(app, pilot)
        await operate(app, pilot, "p", "local")
        await pilot.press("y")
        await settle(app, pilot)
        await pilot.press("enter")
        assert isinstance(app.screen, VmScreen)
        vm = app.vms.get(0)
        summary = str(app.screen.query_one("#vm-summary").render())
        nic = vm.nics()[0]
        assert f"default: {nic.get('IP')}  {nic.get('MAC')}  bridge virbr0" in summary
        assert "TYPE=swap, SIZE=16, TARGET=hdb" in summary
        assert f"local  {home.vms}" in summary and "deploy on local: success" in summary
        log = app.screen.query_one("#vm-log")
        assert any("Script finished successfully" in line for line in log.lines)
        await pilot.press("escape")
        assert isinstance(app.screen, VmsScreen)


async def test_stop_resume_migrate_shutdown_free_the_leases(home, tmp_path) -> None:
    # Hosts apart from the front end: stopping parks the images in the front end's VM directory (<home>/vms).
    node2, node3 = tmp_path / "node2-vms", tmp_path / "node3-vms"
    app = HeadnodeApp(home)
    app.hosts.create(Host("node2", "shared", str(node2)))
    app.hosts.create(Host("node3", "shared", str(node3)))
    async with app.run_test() as pilot:
        await create_sample(app, pilot)
        await operate(app, pilot, "p", "node2")
        await pilot.press("y")
        await settle(app, pilot)
        assert (node2 / "0" / "images" / "disk.0").exists()
        await operate(app, pilot, "s")
        await pilot.press("y")
        await settle(app, pilot)
        assert app.vms.get(0).state is VmState.STOPPED
        assert (home.vms / "0" / "images" / "disk.0").exists()  # parked on the front end
        await operate(app, pilot, "r", "node2")
        await pilot.press("y")
        await settle(app, pilot)
        assert app.vms.get(0).state is VmState.RUNNING
        await operate(app, pilot, "m", "node3")
        await pilot.press("y")
        await settle(app, pilot)
        vm = app.vms.get(0)
        assert vm.state is VmState.RUNNING and vm.host == "node3"
        assert (node3 / "0" / "images" / "disk.0").exists()
        confirm = await operate(app, pilot, "S")
        ip = vm.nics()[0].get("IP")
        assert f"{ip} ({vm.nics()[0].get('MAC')}) in default" in "\n".join(confirm.details)
        await pilot.press("n")
        assert app.vms.get(0).state is VmState.RUNNING
        await operate(app, pilot, "S")
        await pilot.press("y")
        await settle(app, pilot)
        assert app.vms.get(0).state is VmState.DONE
        assert app.networks.leases("default") == []


async def test_a_failed_deploy_is_reported_and_recover_deletes(home) -> None:
    app = HeadnodeApp(home)
    app.hosts.create(Host("broken", "shared", "/proc/headnode-cannot-write"))
    async with app.run_test() as pilot:
        await create_sample(app, pilot)
        await operate(app, pilot, "p", "broken")
        await pilot.press("y")
        await settle(app, pilot)
        vm = app.vms.get(0)
        assert vm.state is VmState.FAILED
        assert any(n.startswith("deploy VM 0:") for n in notifications(app))
        assert any(e.level == "error" and "VM 0" in e.message for e in app.log_events)
        assert isinstance(app.screen, VmsScreen)  # the console lives on
        await pilot.press("R")
        assert isinstance(app.screen, PickScreen)
        await pilot.press("down", "enter")  # delete
        await settle(app, pilot)  # the VM is read on a worker thread, then the question
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(app, pilot)
        assert app.vms.get(0).state is VmState.DONE
        assert app.networks.leases("default") == []


async def test_delete_a_pending_vm_and_a_bad_template(home, tmp_path) -> None:
    bad = tmp_path / "bad.tmpl"
    bad.write_text('NAME = x\nNIC = [ NETWORK = "nowhere" ]\n')
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        await create_sample(app, pilot)
        await operate(app, pilot, "d")
        assert "(no image script: nothing to copy or remove)" in app.screen.details
        await pilot.press("y")
        await settle(app, pilot)
        assert app.vms.get(0).state is VmState.DONE and app.networks.leases("default") == []
        await pilot.press("c", "end", "enter")
        assert isinstance(app.screen, FormScreen)
        form = app.screen
        form.query_one("Input").value = str(bad)
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(app.vms.list()) == 1
        # The form stays open with the template's problem under the path, to correct it there.
        assert app.screen is form and "nowhere" in form.errors()["path"] and form.values()["path"] == str(bad)


async def test_read_only_vms(home) -> None:
    app = HeadnodeApp(home, read_only=True)
    async with app.run_test() as pilot:
        await pilot.press("2", "c", "p", "d", "S")
        assert isinstance(app.screen, VmsScreen)
        assert sum("read-only" in n for n in notifications(app)) == 4
        assert app.vms.list() == []


@pytest.fixture
def held(home, tmp_path) -> tuple[HeadnodeApp, Path]:
    """A console whose host `slow` has a CLONE program that waits while the returned flag file exists, then
    copies (OpenNebula-style argv): a deploy there stays in its prolog until the test removes the flag."""
    flag = tmp_path / "hold"
    flag.touch()
    site_driver(
        home,
        "slow",
        programs={
            "CLONE": "#!/bin/sh\n"
            f"while [ -e '{flag}' ]; do sleep 0.05; done\n"
            'mkdir -p -- "$(dirname -- "${2#*:}")" && cp -- "${1#*:}" "${2#*:}"\n'
        },
    )
    app = HeadnodeApp(home)
    app.hosts.create(Host("slow", "slow", str(tmp_path / "slow-vms")))
    return app, flag


async def deploy_held(app: HeadnodeApp, pilot) -> None:
    """Create VM 0 from the sample and confirm its deploy to the held host."""
    await create_sample(app, pilot)
    await operate(app, pilot, "p", "slow")
    await pilot.press("y")


async def test_transfers_show_progress_cancel_and_retry(held, tmp_path) -> None:
    app, flag = held
    async with app.run_test(size=(120, 40)) as pilot:
        await deploy_held(app, pilot)
        await pilot.press("3")
        assert isinstance(app.screen, TransfersScreen)
        table = app.screen.query_one(KeyedTable)
        log = app.screen.query_one("#transfer-log", Log)
        await until(pilot, lambda: any("CLONE" in line and "started" in line for line in log.lines))  # the VM's log
        rows = cells(table)
        assert rows[0][:2] == ["VM 0 0/3", "running"]  # the state second: a narrow terminal cuts rate and ETA
        assert rows[1][:2] == [" 1 CLONE", "running"]
        assert app.vms.get(0).state is VmState.PROLOG
        table.focus()
        await pilot.press("c")  # the whole script: named by its VM, not by the plan's placeholder source
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.details[0].startswith("Stops the image script of VM 0: ")
        await pilot.press("n")
        await pilot.press("down", "c")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Stops line 1: CLONE" in "\n".join(app.screen.details)
        await pilot.press("y")
        await settle(app, pilot)
        await until(pilot, lambda: cells(table)[0][1] == "cancelled: line 1")
        assert app.vms.get(0).state is VmState.FAILED
        # Retry once the program no longer waits: the VM runs from the failed line and reaches running.
        flag.unlink()
        await pilot.press("up", "R", "y")
        await settle(app, pilot)
        assert app.vms.get(0).state is VmState.RUNNING
        assert (tmp_path / "slow-vms" / "0" / "images" / "disk.0").exists()


async def test_retry_on_a_finished_run_says_why_not(home) -> None:
    """R on a run that succeeded explains itself (it crashed the console: notify's severity is keyword-only)."""
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await create_sample(app, pilot)
        await operate(app, pilot, "p", "local")
        await pilot.press("y")
        await settle(app, pilot)
        await pilot.press("3")
        table = app.screen.query_one(KeyedTable)
        await until(pilot, lambda: bool(cells(table)) and cells(table)[0][1] == "done")  # the state is second
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("R")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, TransfersScreen)
        assert "Only a VM's failed script is retried here (headnode run --resume for others)" in notifications(app)


async def test_quitting_with_a_running_transfer_asks_then_cancels(held) -> None:
    app, _ = held
    async with app.run_test() as pilot:
        await deploy_held(app, pilot)
        await until(pilot, app.executor.active)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "1 image script(s) are running:" in app.screen.details
        assert "  the image script of VM 0" in app.screen.details
        assert not [line for line in app.screen.details if "<plan>" in line]
        await pilot.press("y")
    assert app.return_code == 0
    assert app.vms.get(0).state is VmState.FAILED


async def test_hosts_add_edit_test_delete(home, tmp_path) -> None:
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        assert isinstance(app.screen, HostsScreen)
        table = app.screen.query_one(KeyedTable)
        assert cells(table) == [["local", "shared", "", str(home.vms), "4", ""]]
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, FormScreen)
        for name, value in {
            "name": "node1",
            "driver": "shared",
            "vm_dir": str(tmp_path / "n1"),
            "port": "2222",
        }.items():
            form.query_one(f"#field-{name}").value = value
        await pilot.press("enter")
        await settle(app, pilot)
        node1 = app.hosts.get("node1")
        assert (node1.driver, node1.vm_dir, node1.port) == ("shared", str(tmp_path / "n1"), 2222)
        await pilot.press("down", "e")
        app.screen.query_one("#field-max_transfers").value = "2"
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.hosts.get("node1").max_transfers == 2
        await pilot.press("t")
        await settle(app, pilot)
        assert cells(table)[1][5].startswith("ok, ") and (tmp_path / "n1").is_dir()
        # A bad edit is refused with the engine's reason beside its field and changes nothing; the form stays
        # open with what was typed (it used to close, and the admin typed everything again), and a fix saves.
        await pilot.press("e")
        form = app.screen
        form.query_one("#field-vm_dir").value = "relative/dir"
        form.query_one("#field-port").value = "70000"
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen is form
        assert app.hosts.get("node1").vm_dir == str(tmp_path / "n1")
        errors = form.errors()
        assert set(errors) == {"vm_dir", "port"}
        assert "--vm-dir must be an absolute path" in errors["vm_dir"] and "--port" in errors["port"]
        assert form.query_one("#field-vm_dir").has_focus and form.values()["port"] == "70000"
        form.query_one("#field-vm_dir").value = str(tmp_path / "n1b")
        form.query_one("#field-port").value = "2200"
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, HostsScreen)
        assert (app.hosts.get("node1").vm_dir, app.hosts.get("node1").port) == (str(tmp_path / "n1b"), 2200)
        await pilot.press("d")
        assert "Files on the host and VMs already placed there are left as they are." in app.screen.details
        await pilot.press("y")
        await settle(app, pilot)
        assert [h.name for h in app.hosts.list()] == ["local"]


async def test_host_form_refuses_what_host_create_refuses(home) -> None:
    """The engine parses the form's text as it parses `host create`'s options: every problem at once, the form
    open (port '22x' reached the record as a string and failed as an internal error)."""
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5", "a")
        form = app.screen
        assert isinstance(form, FormScreen)
        for name, value in BAD_HOST.items():
            form.query_one(f"#field-{name}").value = value
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.screen is form
        assert sorted(form.errors().values()) == sorted(BAD_HOST_PROBLEMS)
        assert set(form.errors()) == {"port", "vm_dir", "max_transfers", "compress"}
        assert not any("internal error" in n for n in notifications(app))
        assert [h.name for h in app.hosts.list()] == ["local"]
        form.query_one("#field-port").value = "22"
        form.query_one("#field-vm_dir").value = "/srv/n1"
        form.query_one("#field-max_transfers").value = ""  # blank: the default, as in the CLI
        form.query_one("#field-compress").value = "zstd"
        await pilot.press("enter")
        await settle(app, pilot)
        added = app.hosts.get("n1")
        assert (added.port, added.vm_dir, added.max_transfers, added.compress) == (22, "/srv/n1", 4, "zstd")


async def test_dashboard_shows_hosts_networks_vms_and_transfers(held) -> None:
    app, flag = held
    app.HOME_POLL_SECONDS = 0.1
    async with app.run_test(size=(120, 40)) as pilot:
        await deploy_held(app, pilot)
        await pilot.press("1")
        assert isinstance(app.screen, DashboardScreen)
        vms, transfers = app.screen.query_one("#dash-vms"), app.screen.query_one("#dash-transfers")
        # The deploy waits for its script: no settle() while the flag holds it.
        await until(pilot, lambda: "1 script(s), 1 action(s) running" in str(transfers.render()))
        await until(pilot, lambda: "prolog 1" in str(vms.render()))
        networks = cells(app.screen.query_one("#dash-networks", KeyedTable))
        assert networks == [["default", "virbr0", "█░░░░░░░░░░░ 1/253", "252"]]
        await pilot.press("t")
        hosts = app.screen.query_one("#dash-hosts", KeyedTable)
        await until(pilot, lambda: cells(hosts)[0][2].startswith("ok, "))
        assert cells(hosts)[0][:2] == ["local", "shared"]
        flag.unlink()
        await settle(app, pilot)
        await until(pilot, lambda: "running 1" in str(vms.render()))  # the home's next poll
        assert "No transfers running" in str(transfers.render())


def test_os_user_can_not_write_proc() -> None:
    # The failed-deploy test relies on /proc refusing a new directory, even to root.
    with pytest.raises(OSError):
        os.mkdir("/proc/headnode-cannot-write")


def test_the_dry_run_says_what_a_download_and_a_move_really_move(home, tmp_path) -> None:
    from engine.core import Engine
    from engine.defaults import sample_templates
    from engine.presentation import preview_lines

    web = tmp_path / "web.tmpl"
    web.write_text('NAME = web\nDISK = [ SOURCE = "http://127.0.0.1:9/web.img", TARGET = hda ]\n')
    with Engine(home) as engine:
        engine.hosts.create(Host("node2", "shared", str(tmp_path / "node2-vms")))
        # A download's size is known only once it starts: the total says so, not "0 B".
        downloaded = engine.vms.create(web)
        lines = preview_lines(engine.vms.preview(downloaded.id, "deploy", "node2"))
        assert lines[0].endswith("(size unknown until it starts)")
        assert lines[-1] == "Bytes to move: unknown (line 1: size unknown until it runs)"
        # A stop from a host whose VM directory this machine sees (shared) renames the VM's directory: nothing
        # is copied, and the line says so (over ssh it moves every file: tests/system/test_vm_lifecycle.py).
        vm = engine.vms.create(sample_templates()[SAMPLE])
        engine.vms.deploy(vm.id, "node2")
        lines = preview_lines(engine.vms.preview(vm.id, "stop"))
        assert lines[0].startswith(" 1  MV node2:") and lines[0].endswith("(renamed in place, nothing copied)")
        assert lines[-1] == "Bytes to move: 0 B"


@pytest.mark.parametrize("size", SIZES)
async def test_transfers_show_every_column_and_whole_log_lines(home, size) -> None:
    from engine.transfers.progress import (
        ActionFinished,
        ActionProgress,
        ActionStarted,
        RunOutcome,
        ScriptFinished,
        ScriptStarted,
    )

    gib = 1 << 30
    app = HeadnodeApp(home)
    async with app.run_test(size=size) as pilot:
        # The widest rows a busy console shows: a copy with its rate and ETA beside a run cancelled at a line.
        for event in (
            ScriptStarted("r1", 12, "<plan>", 3),
            ActionStarted("r1", 12, 1, "CONTEXT", "CONTEXT ...", "node1", "ssh"),
            ActionFinished("r1", 12, 1, "CONTEXT", RunOutcome.CANCELLED, 0, 1.0),
            ScriptFinished("r1", 12, RunOutcome.CANCELLED, failed_line=1),
            ScriptStarted("r2", 13, "<plan>", 3),
            ActionStarted("r2", 13, 1, "CLONE", "CLONE ...", "node1", "ssh"),
            ActionProgress("r2", 13, 1, "CLONE", 3 * gib // 2, 10 * gib, 112.3 * (1 << 20), 3725.0),
        ):
            app.transfers.apply(event)
        await pilot.press("3")
        table = app.screen.query_one(KeyedTable)
        await until(pilot, lambda: "cancelled: line 1" in [row[1] for row in cells(table)])
        assert "112.3 MiB/s" in cells(table)[1] and "1h02m" in cells(table)[1]

        def needed() -> int:
            return sum(column.get_render_width(table) for column in table.ordered_columns)

        await until(pilot, lambda: needed() <= table.scrollable_content_region.width)  # once the columns are fitted
        # The VM's transfer log under the table has the screen's width: its lines show past their timestamps.
        assert app.screen.query_one("#transfer-log").size.width >= size[0] - 2
