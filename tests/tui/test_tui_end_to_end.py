"""The real `headnode` console in a real terminal (tmux): start on a fresh home, use it, quit with ctrl+q."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tui.terminal import Terminal, headnode_argv

pytestmark = pytest.mark.e2e


@pytest.fixture
def console(tmp_path) -> Iterator[Terminal]:
    terminal = Terminal(headnode_argv(), {"HEADNODE_HOME": str(tmp_path / "home")}, tmp_path)
    yield terminal
    terminal.close()


def test_console_starts_switches_screens_shows_help_and_quits_with_status_0(console) -> None:
    console.wait_for("1 Dashboard")
    console.wait_for("Hosts")
    console.send("6")
    console.wait_for(lambda s: "Clear view" in s)
    console.send("?")
    console.wait_for("Keys: Log")
    console.send("Escape", "4")
    console.wait_for(lambda s: "Keys: Log" not in s and "Networks" in s)
    console.send("C-q")
    assert console.exit_status() == 0


def test_create_a_vm_from_a_sample_deploy_it_to_local_and_watch_it_run(console) -> None:
    console.wait_for("1 Dashboard")
    console.send("2", "c")
    screen = console.wait_for(lambda s: "Create a VM from a template" in s and "another template file" in s)
    samples = [line for line in screen.splitlines() if ".tmpl" in line]
    console.send(*["Down"] * next(i for i, line in enumerate(samples) if "ttylinux.tmpl" in line), "Enter")
    console.wait_for(lambda s: "pending" in s and "ttylinux" in s)
    console.send("p")
    console.wait_for("to host")
    console.send("Enter")
    console.wait_for("Bytes to move: 16.0 MiB")
    console.send("y")
    console.wait_for(lambda s: "running" in s and "deploy: success" in s, timeout=30)
    console.send("C-q")
    assert console.exit_status() == 0


def test_at_80x24_the_vms_footer_shows_every_key_and_a_form_its_keys(tmp_path) -> None:
    terminal = Terminal(headnode_argv(), {"HEADNODE_HOME": str(tmp_path / "home")}, tmp_path, size=(80, 24))
    try:
        terminal.wait_for("1 Dashboard")
        terminal.send("2")
        footer = terminal.wait_for(lambda s: "Create" in s).splitlines()[-1]
        for key in ("? Keys", "c Create", "p Deploy", "S Shutdown", "d Delete", "R Recover"):
            assert key in footer, footer
        terminal.send("5")
        terminal.wait_for("Add host")
        terminal.send("a")
        terminal.wait_for("Add a host")
        terminal.send(*["Tab"] * 7)
        screen = terminal.wait_for("enter: Save")  # the keys line stays in view under the scrolled fields
        assert "Concurrent transfers at most" in screen
        terminal.send("Escape", "C-q")
        assert terminal.exit_status() == 0
    finally:
        terminal.close()
