"""The executor's own bookkeeping: what it keeps of runs once they are done."""

from __future__ import annotations

import gc
import threading
import weakref

from engine.core import Engine
from engine.events import EventBus
from engine.home import Home
from engine.language.script import parse_script


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
