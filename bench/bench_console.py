"""The console's speed: start to the first painted dashboard on a big home, opening a class B network's
leases, and key-press latency while transfers run.

    .venv/bin/python bench/bench_console.py [--runs N]

Goals (issue 6): first painted dashboard with 65,534 leases and 200 VMs under 1.0 s; a key press answered
under 100 ms while 20 transfers run. Baselines side by side: the same console on an empty home, the bare
interpreter, and Textual's DataTable holding the 65,534 leases (what the lease screen would cost without the
virtual table).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.installed import run_as_installed  # noqa: E402
from engine.core import Engine  # noqa: E402
from engine.defaults import sample_templates  # noqa: E402
from engine.home import Home  # noqa: E402
from engine.networks.manager import Networks  # noqa: E402

CLASS_B = 65534
VMS = 200
TRANSFERS = 20
IMAGE_MB = 512  # per transfer: big enough that 20 copies are still running while ~30 keys are pressed

# Run in a fresh interpreter: the clock starts before the first import, stops once the dashboard has loaded
# its data and painted it.
FIRST_PAINT = """
import time
start = time.perf_counter()
import sys
from engine.home import Home
from tui.app import HeadnodeApp

async def pilot(p):
    await p.app.workers.wait_for_complete()
    await p.pause()
    print(time.perf_counter() - start)
    p.app.exit(0)

HeadnodeApp(Home(sys.argv[1])).run(headless=True, size=(120, 40), auto_pilot=pilot)
"""


def big_home(root: Path) -> Home:
    home = Home(root).ensure()
    (home.root / "big.net").write_text(
        "NAME = big\nTYPE = RANGED\nBRIDGE = br9\nNETWORK_ADDRESS = 10.2.0.0\nNETWORK_SIZE = B\n"
    )
    networks = Networks(home)
    networks.create_from_file(home.root / "big.net")
    networks.lease_many("big", CLASS_B, vm=1)
    networks.close()
    with Engine(home) as engine:  # VMs from the sample, each leasing its NIC in the default network
        for _ in range(VMS):
            engine.vms.create(sample_templates()["ttylinux.tmpl"])
    return home


def first_paint(home: Home, runs: int) -> float:
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", FIRST_PAINT, str(home.root)], capture_output=True, text=True, cwd=ROOT, check=True
        )
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def interpreter_start(runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def open_leases(home: Home) -> float:
    """Seconds from `enter` on the network to its 65,534 leases on screen."""
    from textual.pilot import Pilot

    from screens.networks import LeasesScreen
    from tui.app import HeadnodeApp
    from tui.widgets.virtual_table import VirtualTable

    app = HeadnodeApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        assert isinstance(pilot, Pilot)
        await pilot.press("4")
        await pilot.pause()
        start = time.perf_counter()
        await pilot.press("enter")

        def shown() -> bool:
            screen = app.screen
            return isinstance(screen, LeasesScreen) and len(screen.query_one(VirtualTable).rows) == CLASS_B

        # The rows load on a worker that may start after the key's own workers finished: wait for them.
        while not shown() and time.perf_counter() - start < 120:
            await app.workers.wait_for_complete()
            await pilot.pause(0.01)
        elapsed = time.perf_counter() - start
        assert shown(), "the lease list did not show every lease within 120 s"
        return elapsed


async def datatable_leases(home: Home) -> float:
    """Baseline: the same rows in a Textual DataTable, to first paint."""
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    from screens.networks import lease_row

    class Table(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable(cursor_type="row")

    app = Table()
    async with app.run_test(size=(120, 40)) as pilot:
        start = time.perf_counter()
        table = app.query_one(DataTable)
        table.add_columns("IP", "MAC", "VM", "State", "Note")
        table.add_rows([lease_row(x) for x in Networks(home).leases("big")])
        await pilot.pause()
        return time.perf_counter() - start


def copy_home(root: Path) -> Home:
    """A home with TRANSFERS disk images of IMAGE_MB each (written, not sparse) and a host `fast` (shared driver)
    that admits TRANSFERS copies at once (the default is 4 per host)."""
    from engine.transfers.hosts import Host

    home = Home(root).ensure()
    chunk = bytes(range(256)) * 4096  # 1 MiB of data that is not a hole
    for n in range(TRANSFERS):
        with open(home.images / f"disk-{n}.img", "wb") as out:
            for _ in range(IMAGE_MB):
                out.write(chunk)
    with Engine(home) as engine:
        engine.hosts.create(Host("fast", "shared", str(home.root / "fast-vms"), max_transfers=TRANSFERS))
    return home


async def switch_screens(app: Any, samples: list[float]) -> None:
    """Press 3 then 1 as the terminal driver sends keys, adding to `samples` the time from each key to its new
    screen painted. (Pilot.press waits for the whole process to go idle, which busy copy threads never let it.)"""
    from textual import events

    from screens.dashboard import DashboardScreen
    from screens.transfers import TransfersScreen

    for key, screen in (("3", TransfersScreen), ("1", DashboardScreen)):
        painted = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        app._driver.send_message(events.Key(key, key))
        while not isinstance(app.screen, screen):
            await asyncio.sleep(0.001)
        app.screen.call_after_refresh(lambda painted=painted: painted.done() or painted.set_result(None))
        await painted
        samples.append(time.perf_counter() - start)
        await asyncio.sleep(0.2)


async def key_latency(home: Home) -> tuple[list[float], list[float], list[int]]:
    """Switch screens with number keys, first idle, then while TRANSFERS copies run in the engine's executor
    (reporting on the console's bus): seconds from the key press to the new screen, and how many copies were
    running at each busy press. The engine's executor admits 15 scripts at once by default; this one, 20."""
    from engine.language.script import Clone, Location, Script
    from engine.transfers.executor import Executor
    from tui.app import HeadnodeApp

    app = HeadnodeApp(home)
    executor = Executor(home, app.bus, max_scripts=TRANSFERS)
    idle: list[float] = []
    busy: list[float] = []
    running: list[int] = []

    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(10):
            await switch_screens(app, idle)
        frontend = home.config.frontend_name

        def submit_all() -> list[Any]:
            return [
                executor.submit(
                    Script.of(
                        [
                            Clone(
                                Location(frontend, str(home.images / f"disk-{n}.img")),
                                Location("fast", str(home.root / "fast-vms" / str(n) / "disk.0")),
                            )
                        ]
                    ),
                    vm_id=n,
                )
                for n in range(TRANSFERS)
            ]

        # Submitted the way the console submits a VM operation: from one of its engine-call threads.
        runs: list[Any] = []
        app.run_engine("submit", submit_all, then=runs.extend)
        await app.workers.wait_for_complete()
        while len(app.transfers.running()) < TRANSFERS and not all(run.done for run in runs):
            await pilot.pause(0.02)
        while len(app.transfers.running()) >= TRANSFERS // 2:
            running.append(len(app.transfers.running()))
            await switch_screens(app, busy)
        for run in runs:
            run.wait()
        await pilot.pause()
    executor.close()
    return idle, busy, running


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        empty = Home(Path(tmp) / "empty").ensure()
        big = big_home(Path(tmp) / "big")
        rows = [
            ("python -c pass (baseline)", interpreter_start(runs), ""),
            ("first dashboard, empty home (baseline)", first_paint(empty, runs), ""),
            (f"first dashboard, {CLASS_B} leases, {VMS} VMs", first_paint(big, runs), "< 1.0 s"),
            (f"open lease list, {CLASS_B} leases", asyncio.run(open_leases(big)), ""),
            (f"DataTable of {CLASS_B} leases (baseline)", asyncio.run(datatable_leases(big)), ""),
        ]
        idle, busy, running = asyncio.run(key_latency(copy_home(Path(tmp) / "keys")))
        rows.append(("key press, no transfers (baseline), median", statistics.median(idle), ""))
        if busy:
            busy.sort()
            rows += [
                (f"key press, {min(running)}-{max(running)} transfers running, median", statistics.median(busy), ""),
                (f"key press, same, 95th percentile of {len(busy)}", busy[int(len(busy) * 0.95)], "< 0.1 s"),
                ("key press, same, worst", busy[-1], ""),
            ]
    print(f"{'measure':<44} {'seconds':>8}  goal")
    for name, seconds, goal in rows:
        print(f"{name:<44} {seconds:>8.3f}  {goal}")
    if not busy:  # a disk (or page cache) that copies 10 GiB in seconds
        print("the copies ended before a key was pressed: bench/bench_service.py measures the same beside copies")
        print("trickled from a server, whatever the disk's speed (its 'in the console's process' rows)")


if __name__ == "__main__":
    run_as_installed()
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    main()
