"""The Images screen: each host's cache as its files are, warm, pin, and evict after a confirmed dry run."""

from __future__ import annotations

import json

from engine.transfers.cache.layout import CACHE_DIR_NAME
from engine.transfers.hosts import Host, Hosts
from screens.images import ImagesScreen
from tests.conftest import site_driver
from tests.tui.watch import notifications, until
from tui.app import HeadnodeApp
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.form import FormScreen
from tui.widgets.keyed_table import KeyedTable


def cells(table: KeyedTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_warm_pin_and_evict_an_image_from_the_images_screen(home, tmp_path) -> None:
    site_driver(home, "cached", CACHE="yes")  # a shared host that keeps an image cache: its files are here
    vm_dir = tmp_path / "hc"
    Hosts(home).create(Host("hc", "cached", str(vm_dir)))
    image = tmp_path / "a.img"
    image.write_bytes(b"x" * (1 << 20))
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("7")
        assert isinstance(app.screen, ImagesScreen)
        table = app.screen.query_one(KeyedTable)
        await until(pilot, lambda: "hc: 0 entries" in str(app.screen.query_one("#images-summary").render()))
        await pilot.press("w")
        assert isinstance(app.screen, FormScreen)
        await pilot.press(*str(image), "enter")
        await until(pilot, lambda: table.row_count == 1)
        row = cells(table)[0]
        assert row[:3] == ["hc", f"{home.config.frontend_name}:{image}", "1.0 MiB"] and row[5] == ""
        assert any("hc: fetched" in note for note in notifications(app))

        await pilot.press("p")
        await until(pilot, lambda: cells(table)[0][5] == "pinned")
        sidecar = next((vm_dir / CACHE_DIR_NAME).glob("*.json"))
        assert json.loads(sidecar.read_text())["pinned"] is True

        await pilot.press("E")  # all of the host's: the pinned entry stays, so there is nothing to evict
        await until(pilot, lambda: any("nothing to evict on hc (1 kept)" in n for n in notifications(app)))
        await pilot.press("e")  # the entry named: it goes, once confirmed
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert any(row[-2] in line for line in app.screen.details)  # the dry run lists it
        assert sidecar.exists()  # nothing changed yet
        await pilot.press("y")
        await until(pilot, lambda: table.row_count == 0)
        assert not sidecar.exists() and not list((vm_dir / CACHE_DIR_NAME).glob("cksum-*"))
