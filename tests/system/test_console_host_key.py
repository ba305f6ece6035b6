"""The console offers an unknown host key for acceptance, as `host test --accept-new-key` does, on a real sshd."""

from __future__ import annotations

from engine.transfers.hosts import Hosts
from screens.hosts import HostsScreen
from tui.app import HeadnodeApp
from tui.widgets.confirm import ConfirmScreen
from tui.widgets.keyed_table import KeyedTable


async def test_unknown_key_is_offered_and_recorded_only_when_accepted(world, own_user) -> None:
    known_hosts = own_user / ".ssh" / "known_hosts"  # a copy: accepting here leaves the other tests' alone
    host03 = world["hosts"]["host03"]  # its key is not in known_hosts
    Hosts(world["home"]).create(host03.record())
    known_before = known_hosts.read_text()
    app = HeadnodeApp(world["home"])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        assert isinstance(app.screen, HostsScreen)
        table = app.screen.query_one(KeyedTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        table.move_cursor(row=names.index("host03"))
        await pilot.press("t")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "Accept the key of host host03?" in app.screen.title_text
        await pilot.press("n")
        await pilot.pause()
        assert known_hosts.read_text() == known_before  # refused: nothing recorded
        await pilot.press("t")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.host_reports["host03"].ok
        assert known_hosts.read_text().startswith(known_before)
        assert len(known_hosts.read_text().splitlines()) == len(known_before.splitlines()) + 1
