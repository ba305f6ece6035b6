"""A fresh home's console paints before its sample image is made (mkfs took 4-7 s on a busy machine, with a blank
screen); the image follows on an engine thread, and a CLI command makes it if the console closed first."""

from __future__ import annotations

import argparse

from engine.cli.context import CliContext
from engine.defaults import SAMPLE_IMAGE, default_state
from engine.home import Home, shipped
from engine.transfers.hosts import Hosts
from tui.app import HeadnodeApp


def _console_home(root: str) -> Home:
    """The home as `headnode` (no command) prepares it for the console."""
    ctx = CliContext(argparse.Namespace(home=root))
    ctx.defer_sample_image = True
    return ctx.home


async def test_the_console_makes_the_sample_image_after_mounting(tmp_path) -> None:
    home = _console_home(str(tmp_path / "home"))
    image = home.images / SAMPLE_IMAGE
    assert not image.exists() and default_state(home) == (True, True)  # it was made before the console started
    assert Hosts(home).find("local") is not None
    app = HeadnodeApp(home, defer_sample_image=True)
    async with app.run_test() as pilot:
        for _ in range(600):
            if default_state(home) == (True, False):
                break
            await pilot.pause(0.1)
    assert image.stat().st_size == 16 << 20 and default_state(home) == (True, False)


def test_a_cli_command_makes_an_image_the_console_still_owed(headnode, home) -> None:
    _console_home(str(home.root))
    assert not (home.images / SAMPLE_IMAGE).exists()
    r = headnode("vm", "create", str(shipped("templates") / "ttylinux.tmpl"))
    assert (r.returncode, r.stdout) == (0, "0\n"), r.stderr
    assert (home.images / SAMPLE_IMAGE).exists() and default_state(home) == (True, False)
