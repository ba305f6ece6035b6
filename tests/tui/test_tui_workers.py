"""The console never waits on the engine: with every lock of the home held by someone else (another headnode
writing, transfers journaling), each changing action returns at once and lands when the locks are free."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest

from engine.home import Home
from engine.networks.manager import Networks
from engine.transfers.hosts import Host
from tui.app import HeadnodeApp

LAN = "NAME = lan\nTYPE = RANGED\nBRIDGE = br0\nNETWORK_ADDRESS = 10.1.0.0\nNETWORK_SIZE = C\n"
LOCKED_AT_MOST = 30.0  # the console of old blocked its event loop (and this test with it) until the locks went


@contextmanager
def home_locked(home: Home) -> Iterator[threading.Event]:
    """Hold every lock file of the home exclusively; the event is set once they are released again."""
    paths = {home.db_path.with_name(home.db_path.name + ".lock"), *home.root.rglob("*.lock")}
    fds = []
    for path in sorted(paths):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        fds.append(fd)
    released = threading.Event()
    guard = threading.Lock()

    def release() -> None:
        with guard:
            if not released.is_set():
                for fd in fds:
                    os.close(fd)
                released.set()

    timer = threading.Timer(LOCKED_AT_MOST, release)
    timer.start()
    try:
        yield released
    finally:
        timer.cancel()
        release()


async def add_host(app: HeadnodeApp, pilot, home: Home) -> Callable[[], bool]:
    await pilot.press("5")
    await app.workers.wait_for_complete()

    async def act() -> None:
        await pilot.press("a")
        for name, value in {"name": "node1", "driver": "shared", "vm_dir": str(home.root / "n1")}.items():
            app.screen.query_one(f"#field-{name}").value = value
        await pilot.press("enter")

    return act, lambda: [h.name for h in app.hosts.list()] == ["local", "node1"]


async def delete_host(app: HeadnodeApp, pilot, home: Home):
    app.hosts.create(Host("node1", "shared", str(home.root / "n1")))
    await pilot.press("5")
    await app.workers.wait_for_complete()
    await pilot.pause()

    async def act() -> None:
        await pilot.press("down", "d", "y")

    return act, lambda: [h.name for h in app.hosts.list()] == ["local"]


async def create_network(app: HeadnodeApp, pilot, home: Home):
    (home.root / "lan.net").write_text(LAN)
    await pilot.press("4")
    await app.workers.wait_for_complete()

    async def act() -> None:
        await pilot.press("n")
        app.screen.query_one("#field-path").value = str(home.root / "lan.net")
        await pilot.press("enter")

    return act, lambda: "lan" in [n.name for n in Networks(home).list()]


async def release_lease(app: HeadnodeApp, pilot, home: Home):
    (home.root / "lan.net").write_text(LAN)
    app.networks.create_from_file(home.root / "lan.net")
    app.networks.hold("lan", "10.1.0.7")
    await pilot.press("4")
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.press("down", "enter")  # lan, after the default network
    await app.workers.wait_for_complete()
    await pilot.pause()

    async def act() -> None:
        app.screen.main_widget().focus()
        await pilot.press("r", "y")

    return act, lambda: Networks(home).leases("lan") == []


async def create_vm(app: HeadnodeApp, pilot, home: Home):
    await pilot.press("2")
    await app.workers.wait_for_complete()

    async def act() -> None:
        await pilot.press("c")
        await pilot.press(*["down"] * app.screen.choices.index("ttylinux.tmpl"), "enter")

    return act, lambda: len(app.vms.list()) == 1


ACTIONS: dict[str, Callable[..., Awaitable]] = {
    "add a host": add_host,
    "delete a host": delete_host,
    "create a network": create_network,
    "release a lease": release_lease,
    "create a VM": create_vm,
}


@pytest.mark.parametrize("action", list(ACTIONS))
async def test_a_changing_action_never_waits_on_the_home_lock(home, action) -> None:
    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        act, done = await ACTIONS[action](app, pilot, home)
        assert not done()
        with home_locked(home) as released:
            await act()
            await pilot.pause()
            assert not released.is_set()  # the keys were answered while the home stayed locked
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert done()
