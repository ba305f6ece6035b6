"""The journal of runs: what a run costs the disk, what is kept of old runs, and damage in a run's file."""

from __future__ import annotations

import json
import os

import pytest

from engine.errors import InputError
from engine.events import EventBus
from engine.home import Home
from engine.language.script import parse_script
from engine.store.database import Store
from engine.transfers.executor import Executor
from engine.transfers.hosts import Host, Hosts
from engine.transfers.journal import FINISHED_KEPT, TABLE, Journal, JournalState
from engine.transfers.progress import RunOutcome


def dummy_script(lines: int, vm: int = 1) -> str:
    return "".join(f"MKSWAP 1 d1:/vms/{vm}/images/disk.{i}\n" for i in range(lines))


@pytest.fixture
def executor(home: Home):
    Hosts(home).create(Host("d1", "dummy", "/vms"))
    executor = Executor(home, EventBus())
    yield executor
    executor.close()


class DiskCalls:
    """Counts the syncs and the whole-file replacements of the database made meanwhile (the real calls run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, db: os.PathLike) -> None:
        self.fsyncs = 0
        self.db_rewrites = 0
        fsync, replace = os.fsync, os.replace

        def counted_fsync(fd: int) -> None:
            self.fsyncs += 1
            fsync(fd)

        def counted_replace(src, dst, **kw) -> None:
            self.db_rewrites += os.fspath(dst) == os.fspath(db)
            replace(src, dst, **kw)

        monkeypatch.setattr(os, "fsync", counted_fsync)
        monkeypatch.setattr(os, "replace", counted_replace)


def test_a_run_costs_one_append_per_action_not_a_rewrite_of_the_database(executor, home, monkeypatch) -> None:
    """`headnode run` rewrote and synced the whole headnode.db at every action's start and end: 4,000 dummy lines
    took 871 s, the cost of each line growing with the lines before it."""
    costs = {}
    for lines in (20, 80):
        calls = DiskCalls(monkeypatch, home.db_path)
        assert executor.submit(parse_script(dummy_script(lines), "dummy.script"), 1).wait(60).ok
        costs[lines] = (calls.db_rewrites, calls.fsyncs)
        monkeypatch.undo()
    (rewrites_20, syncs_20), (rewrites_80, syncs_80) = costs[20], costs[80]
    assert rewrites_20 == rewrites_80 == 2  # the run's record: started, then ended
    assert syncs_80 - syncs_20 == 60  # one sync per line (its end), whatever the lines before it
    (run,) = Journal(home).runs(1)[-1:]
    assert run.state is JournalState.DONE and run.done == tuple(range(80)) and len(run.actions) == 80


def test_the_journal_keeps_what_resuming_needs_and_the_newest_finished_runs(executor, home) -> None:
    """Run records were never pruned, so headnode.db grew for the life of a home."""
    failed = parse_script("MKSWAP 1 d1:/vms/3/images/disk.0\nMKSWAP 1 nowhere:/x/disk.1\n", "failing.script")
    journal = executor.journal
    first = journal.start(3, failed.format(), source="failing.script")  # a run that stopped at its second line
    journal.action_started(first, 0, 1)
    journal.action_finished(first, 0, RunOutcome.DONE, 0, None, None, line=1)
    journal.action_started(first, 1, 2)
    journal.action_finished(first, 1, RunOutcome.FAILED, 0, None, "no host named 'nowhere'", line=2)
    journal.finish(first, JournalState.FAILED)
    for vm in range(FINISHED_KEPT + 30):
        assert executor.submit(parse_script(dummy_script(1, vm + 10)), vm + 10).wait(60).ok
    with Store(home.db_path).read() as db:
        records = db.table(TABLE).all()
    assert len(records) == FINISHED_KEPT + 1  # the newest finished runs, and the one that can still be resumed
    assert sorted(p.stem for p in journal.directory.iterdir()) == sorted(r["run"] for r in records)
    assert {r["vm"] for r in records} == {3} | set(range(40, FINISHED_KEPT + 40))
    resumable = journal.unfinished(3, failed.format())
    assert resumable is not None and resumable.run == first and resumable.done == (0,)


def test_a_torn_last_line_is_the_one_silent_repair_and_other_damage_stops_a_resume(home) -> None:
    journal = Journal(home)
    script = "MKSWAP 1 d1:/vms/1/images/disk.0\nMKSWAP 1 d1:/vms/1/images/disk.1\n"
    run = journal.start(1, script)
    journal.action_started(run, 0, 1)
    journal.action_finished(run, 0, RunOutcome.DONE, 1 << 20, None, None, line=1)
    log = journal.directory / f"{run}.jsonl"
    with open(log, "ab") as out:
        out.write(b'{"position":1,"line":2,"sta')  # killed while writing the second line's start
    entry = journal.unfinished(1, script)
    assert entry is not None and entry.done == (0,) and entry.damage is None
    lines = log.read_bytes().split(b"\n")
    lines[1] = b"\x00garbage"  # the first line's end
    log.write_bytes(b"\n".join(lines))
    with pytest.raises(InputError, match=f"cannot resume run {run}: {log}:2: a line of the run's journal does not"):
        journal.unfinished(1, script)


def test_records_written_before_the_files_load_as_they_did(home) -> None:
    """A home's older runs keep their actions inline in headnode.db."""
    old = {
        "run": "0123456789ab",
        "vm": 5,
        "script": "MKSWAP 1 d1:/vms/5/images/disk.0\n",
        "source": "old.script",
        "pid": 1,
        "done": [0],
        "state": "failed",
        "started": 1.0,
        "actions": [{"position": 0, "line": 1, "started": 1.0, "ended": 2.0, "outcome": "done", "bytes": 0}],
    }
    with Store(home.db_path).write() as db:
        db.table(TABLE).insert(old)
    (entry,) = Journal(home).runs(5)
    assert (entry.done, entry.actions[0]["outcome"], entry.damage) == ((0,), "done", None)
    assert json.loads(home.db_path.read_text())[TABLE]["1"]["actions"] == old["actions"]
