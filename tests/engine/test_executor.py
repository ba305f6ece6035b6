"""The executor's own bookkeeping: what it keeps of runs once they are done."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from dataclasses import replace

from engine.core import Engine
from engine.events import EventBus
from engine.home import Home
from engine.language.script import parse_script
from engine.transfers.hosts import Host, Hosts
from tests.conftest import site_driver


def test_finished_runs_leave_no_worker_thread_behind(home: Home) -> None:
    """An executor serving for days (the service, a console) must not keep every worker thread it ever started."""
    workers: list[weakref.ref[threading.Thread]] = []
    bus = EventBus()
    bus.subscribe(
        lambda e: workers.append(weakref.ref(threading.current_thread())) if e.kind == "script_started" else None
    )
    with Engine(home, bus) as engine:
        for vm in range(3):
            script = parse_script(f"MKSWAP 1 local:{home.vms}/{vm}/images/disk.1\n", "swap.script")
            assert engine.executor.submit(script, vm).wait(60).ok
        assert len(workers) == 3
        for ref in workers:
            thread = ref()
            if thread is not None:
                thread.join(30)
            del thread
        gc.collect()
        assert [ref() for ref in workers] == [None, None, None]


def test_a_changed_max_transfers_holds_from_the_next_transfer(home: Home, tmp_path) -> None:
    """Editing a host's MAX_TRANSFERS (the console's host form: Hosts.update) takes effect at once: the executor
    kept the limit it first read until it restarted."""
    gate = tmp_path / "gate"
    program = f'#!/bin/sh\ntouch "{tmp_path}/started.$$"\nwhile [ ! -e "{gate}" ]; do sleep 0.02; done\n'
    site_driver(home, "gated", programs={"MKSWAP": program})
    hosts = Hosts(home)
    hosts.create(Host("node1", "gated", str(tmp_path / "vms"), max_transfers=1))
    swap = "MKSWAP 1 node1:{}/{}/images/disk.1\n".format
    with Engine(home, EventBus()) as engine:
        gate.touch()
        first = engine.executor.submit(parse_script(swap(tmp_path / "vms", 0)), 0).wait(30)
        assert first is not None and first.ok, first  # the limit of 1 is read
        gate.unlink()
        for started in tmp_path.glob("started.*"):
            started.unlink()
        hosts.update("node1", replace(hosts.get("node1"), max_transfers=3))
        runs = [engine.executor.submit(parse_script(swap(tmp_path / "vms", vm)), vm) for vm in (1, 2, 3)]
        try:
            deadline = time.monotonic() + 10
            while len(list(tmp_path.glob("started.*"))) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(list(tmp_path.glob("started.*"))) == 3  # all three at once, as the new limit allows
        finally:
            gate.touch()
        assert all(run.wait(30).ok for run in runs)


def test_runs_submitted_together_start_when_the_block_ends_from_any_thread(home: Home) -> None:
    """`together()`: a batch's runs (submitted here, and on another thread as the service's VM operations are) are
    all active, none started, until the block ends; then every one runs; and the remaining lines are what the
    gathering looks ahead at."""
    started: list[str] = []
    bus = EventBus()
    bus.subscribe(lambda e: started.append(e.run) if e.kind == "script_started" else None)
    script = "MKSWAP 1 local:{}/{}/images/disk.1\nMKSWAP 1 local:{}/{}/images/disk.2\n".format
    with Engine(home, bus) as engine:
        executor = engine.executor
        with executor.together():
            runs = [executor.submit(parse_script(script(home.vms, 1, home.vms, 1)), 1)]
            other = threading.Thread(
                target=lambda: runs.append(executor.submit(parse_script(script(home.vms, 2, home.vms, 2)), 2))
            )
            other.start()
            other.join(30)
            time.sleep(0.2)
            assert started == [] and {run.id for run in executor.active()} == {run.id for run in runs}
            assert [len(run.remaining()) for run in runs] == [2, 2]
        assert all(run.wait(60).ok for run in runs)
        assert sorted(started) == sorted(run.id for run in runs)
