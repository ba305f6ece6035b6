"""The console frame: navigation, help, palette, read-only, quitting, errors, and the engine's events."""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import Input, Log

from engine.events import Level, LogEvent
from engine.language.template import load_template
from engine.networks.manager import Networks
from screens.dashboard import DashboardScreen
from screens.hosts import HostsScreen
from screens.images import ImagesScreen
from screens.log import LogScreen
from screens.networks import LeasesScreen, NetworksScreen
from screens.transfers import TransfersScreen
from screens.vms import VmsScreen
from tests.tui.conftest import SIZES
from tests.tui.watch import notifications, until
from tui.app import HeadnodeApp
from tui.commands import HeadnodeCommands
from tui.widgets.form import FormScreen
from tui.widgets.help import HelpScreen


@pytest.mark.parametrize("size", SIZES)
async def test_number_keys_and_tab_switch_screens(home, size) -> None:
    app = HeadnodeApp(home)
    async with app.run_test(size=size) as pilot:
        assert isinstance(app.screen, DashboardScreen)
        expected = [VmsScreen, TransfersScreen, NetworksScreen, HostsScreen, LogScreen, ImagesScreen, DashboardScreen]
        for key, screen_type in zip("2345671", expected, strict=True):
            await pilot.press(key)
            assert isinstance(app.screen, screen_type), key
        await pilot.press("tab")
        assert isinstance(app.screen, VmsScreen)
        await pilot.press("shift+tab", "shift+tab")
        assert isinstance(app.screen, ImagesScreen)


async def test_help_lists_every_key_of_the_current_screen(home) -> None:
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        await pilot.press("6", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = {row[0]: row[1] for row in app.screen.rows}
        for key, does in {
            "c": "Clear view",
            "e": "Errors only",
            "/": "Filter",
            "ctrl+q": "Quit",
            "4": "Networks",
        }.items():
            assert keys[key] == does
        await pilot.press("escape")
        assert isinstance(app.screen, LogScreen)


async def test_ctrl_q_quits_with_status_0(home) -> None:
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        await pilot.press("3", "ctrl+q")
    assert app.return_code == 0


async def test_palette_lists_every_action_of_every_screen_and_runs_one(home) -> None:
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        app.bus.publish(LogEvent("one", at=0.0))
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        names = [hit.text async for hit in HeadnodeCommands(app.screen).discover()]
        for _, title, binding in app.screen_actions():
            assert f"{title}: {binding.description}" in names
        assert "Go to Hosts" in names
        await pilot.press(*"log: clear view")
        found = app.screen.query_one(CommandList)
        await until(pilot, lambda: found.option_count and "Clear view" in str(found.get_option_at_index(0).prompt))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LogScreen)
        assert list(app.log_events) == []


async def test_engine_log_events_reach_the_log_screen_filtered(home) -> None:
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        app.bus.publish(LogEvent("lease 10.0.0.1 taken", source="vnet", at=0.0))
        app.bus.publish(LogEvent("copy failed", level=Level.ERROR, source="tm", at=1.0))
        await pilot.press("6")
        log = app.screen.query_one(Log)
        assert log.lines == ["00:00:00 [I] vnet: lease 10.0.0.1 taken", "00:00:01 [E] tm: copy failed"]
        await pilot.press("slash", *"lease")
        assert app.screen.query_one(Input).has_focus
        assert log.lines == ["00:00:00 [I] vnet: lease 10.0.0.1 taken"]
        await pilot.press("enter")
        assert log.has_focus and log.lines == ["00:00:00 [I] vnet: lease 10.0.0.1 taken"]
        await pilot.press("slash", "escape")
        assert len(log.lines) == 2
        await pilot.press("e")
        assert log.lines == ["00:00:01 [E] tm: copy failed"]
        # Events published while the Log screen is on view, from another thread, arrive too.
        await pilot.press("e")
        import threading

        thread = threading.Thread(target=app.bus.publish, args=(LogEvent("from a thread", at=2.0),))
        thread.start()
        thread.join()
        await pilot.pause()
        assert log.lines[-1] == "00:00:02 [I] engine: from a thread"


async def test_engine_errors_become_a_notification_and_a_log_entry(home, tmp_path) -> None:
    bad = tmp_path / "bad.tmpl"
    bad.write_text("NAME = [ unclosed\n")
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        outcome = app.attempt("load template", load_template, bad)
        await pilot.pause()
        assert not outcome.ok
        assert any(str(bad) in n and n.startswith("load template:") for n in notifications(app))
        assert any(e.level == "error" and str(bad) in e.message for e in app.log_events)
        # A slow call on a worker thread reports the same way, and the app lives on.
        app.run_engine("load template", load_template, tmp_path / "missing.tmpl")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert sum(e.level == "error" for e in app.log_events) == 2
        await pilot.press("6")
        assert isinstance(app.screen, LogScreen)


async def test_palette_offers_lease_hold_and_release_of_every_network_and_only_named_rows(home) -> None:
    lan = home.root / "lan.net"
    lan.write_text("NAME = lan\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = C\n")
    Networks(home).create_from_file(lan)
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        provider = HeadnodeCommands(app.screen)
        await provider.startup()
        names = [hit.text async for hit in provider.discover()]
        for network in ("lan", "default"):
            for does in ("Lease", "Hold", "Release"):
                assert f"Leases of {network}: {does}" in names
        # The palette itself is on top of the stack: nothing of it is offered as the screen's own action.
        assert not [name for name in names if name.startswith("None")]
        await pilot.press(*"leases of lan: hold")
        found = app.screen.query_one(CommandList)
        await until(pilot, lambda: found.option_count and "lan: Hold" in str(found.get_option_at_index(0).prompt))
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, FormScreen)
        assert isinstance(app.screen_stack[-2], LeasesScreen) and app.screen_stack[-2].network == "lan"
        await pilot.press(*"10.1.0.9", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert [(x.ip, x.state) for x in Networks(home).leases("lan")] == [("10.1.0.9", "hold")]


async def test_read_only_footer_leaves_changing_keys_out_and_help_names_them(home) -> None:
    app = HeadnodeApp(home, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        shown = {key for key, active in app.screen.active_bindings.items()}
        assert not {"c", "p", "s", "r", "m", "S", "d", "R"} & shown
        assert {"slash", "question_mark", "ctrl+q"} <= shown
        await pilot.press("question_mark")
        rows = {row[0]: row[1:] for row in app.screen.rows}
        assert rows["c"] == ("Create", "read-only") and rows["p"] == ("Deploy", "read-only")


async def test_long_log_lines_wrap_at_80_columns_and_rewrap_when_wider(home) -> None:
    message = "deploy VM 3: " + " ".join(f"word{i}" for i in range(40))
    app = HeadnodeApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        app.bus.publish(LogEvent(message, level=Level.ERROR, source="console", at=0.0))
        await pilot.press("6")
        log = app.screen.query_one(Log)
        await until(pilot, lambda: len(log.lines) > 3)
        assert all(len(line) < 80 for line in log.lines)
        assert log.lines[1].startswith(" " * 13)  # continued under the message, not under the time
        assert " ".join(line.strip() for line in log.lines) == f"00:00:00 [E] console: {message}"
        narrow = len(log.lines)
        await pilot.resize_terminal(120, 40)
        await until(pilot, lambda: len(log.lines) < narrow)
        assert all(len(line) < 120 for line in log.lines)


@pytest.mark.parametrize("size", SIZES)
async def test_every_key_of_the_vms_screen_fits_its_footer(home, size) -> None:
    app = HeadnodeApp(home)
    async with app.run_test(size=size) as pilot:
        await pilot.press("2")
        await pilot.pause()
        shown = {key.key: key.region for key in app.screen.query("FooterKey")}
        for key in ("question_mark", "c", "p", "s", "r", "m", "S", "d", "R"):
            assert shown[key].right <= size[0], key
        assert "^q quit" in str(app.screen.query_one("#nav").render())


async def test_the_add_host_form_keeps_its_keys_and_the_focused_field_in_view_at_80x24(home) -> None:
    app = HeadnodeApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5", "a")
        form = app.screen
        assert isinstance(form, FormScreen)
        for _ in range(len(form.fields)):
            keys = form.query_one("#form-keys").region
            assert keys.height == 1 and keys.bottom <= 24
            fields = form.query_one(".form-fields").region
            assert fields.contains_region(app.focused.region), app.focused.id
            await pilot.press("tab")


async def test_full_collections_are_rare_while_the_console_runs_and_as_before_after(home) -> None:
    """A full garbage collection every ~2 s (35-100 ms each) fell on key presses beside 100 transfers."""
    import gc

    from tui.collector import FULL_AFTER

    before = gc.get_threshold()
    app = HeadnodeApp(home)
    async with app.run_test() as pilot:
        await until(pilot, lambda: gc.get_freeze_count() > 0)
        assert gc.get_threshold() == (before[0], before[1], FULL_AFTER)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


async def test_switching_screens_keeps_the_footer_and_a_change_of_its_keys_shows(home, monkeypatch) -> None:
    """Textual's Footer rebuilt its keys on every number key (about a sixth of a key press beside 100 transfers)."""
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        keys = list(app.screen.query("FooterKey"))
        assert {key.key for key in keys} >= {"c", "R", "question_mark"}
        await pilot.press("1", "3")
        await pilot.pause()
        assert list(app.screen.query("FooterKey")) == keys  # the same widgets: not built again
        screen = app.screen
        monkeypatch.setattr(screen, "check_action", lambda action, parameters: None if action == "cancel" else True)
        screen.refresh_bindings()  # None: shown disabled
        await until(pilot, lambda: any(k.key == "c" and k.has_class("-disabled") for k in screen.query("FooterKey")))


async def test_a_screen_visited_again_does_not_parse_the_stylesheet_again(home, monkeypatch) -> None:
    """Textual re-parsed the whole stylesheet on each screen's second visit (~50 ms beside 100 transfers)."""
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        for key in "3152":
            await pilot.press(key)
            await pilot.pause()
        refreshed: list[bool] = []
        real = app.refresh_css
        monkeypatch.setattr(app, "refresh_css", lambda animate=True: refreshed.append(True) or real(animate))
        for key in "31525":
            await pilot.press(key)
            await pilot.pause()
        assert refreshed == []


async def test_a_screen_shown_again_is_not_restyled_whole_but_follows_a_theme_change(home, monkeypatch) -> None:
    """Textual restyled every node of a screen it resumed: a third of a key press's work beside 100 transfers."""
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        transfers = app.screen
        assert isinstance(transfers, TransfersScreen)
        await pilot.press("1")
        await pilot.pause()
        restyled: list[object] = []
        real = transfers.update_node_styles
        monkeypatch.setattr(transfers, "update_node_styles", lambda animate=True: restyled.append(1) or real(animate))
        await pilot.press("3")
        await pilot.pause()
        assert restyled == []
        dark = transfers.styles.background
        await pilot.press("1")
        app.theme = "textual-light"
        await pilot.pause()
        await pilot.press("3")
        await pilot.pause()
        assert transfers.styles.background != dark
