"""The home's TinyDB store: atomic, shared by threads and processes, never deadlocking on itself."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from engine.store.database import Store

WORKER = """
from engine.store.database import Store
store = Store(path)
for i in range(n):
    with store.write() as db:
        table = db.table("counter")
        doc = table.get(doc_id=1)
        if doc:
            table.update({"n": doc["n"] + 1}, doc_ids=[1])
        else:
            table.insert({"n": 1})
"""


def test_write_is_on_disk_when_the_block_ends(tmp_path) -> None:
    store = Store(tmp_path / "h.db")
    with store.write() as db:
        db.table("hosts").insert({"name": "a"})
    assert json.loads((tmp_path / "h.db").read_text()) == {"hosts": {"1": {"name": "a"}}}


def test_an_exception_inside_a_write_changes_nothing(tmp_path) -> None:
    store = Store(tmp_path / "h.db")
    with store.write() as db:
        db.table("hosts").insert({"name": "a"})
    with pytest.raises(ValueError), store.write() as db:
        db.table("hosts").insert({"name": "b"})
        raise ValueError("boom")
    with store.read() as db:
        assert [d["name"] for d in db.table("hosts").all()] == ["a"]


def test_unserialisable_documents_are_refused_before_they_are_kept(tmp_path) -> None:
    store = Store(tmp_path / "h.db")
    with pytest.raises(TypeError), store.write() as db:
        db.table("t").insert({"bad": {1, 2}})
    assert not (tmp_path / "h.db").exists()


def test_a_read_inside_a_write_sees_committed_state_and_a_nested_write_is_refused(tmp_path) -> None:
    one, two = Store(tmp_path / "h.db"), Store(tmp_path / "h.db")
    with one.write() as db:
        db.table("t").insert({"x": 1})
    with one.write() as db:
        with two.read() as inner:
            assert len(inner.table("t")) == 1
        with pytest.raises(RuntimeError, match="nested"), two.write():
            pass


def test_threads_and_processes_never_lose_an_update(tmp_path) -> None:
    path = tmp_path / "h.db"
    code = "import sys\npath, n = sys.argv[1], int(sys.argv[2])\n" + WORKER
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), "50"]) for _ in range(3)]
    threads = [threading.Thread(target=exec, args=(WORKER, {"path": path, "n": 50})) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(60) == 0 for p in procs)
    with Store(path).read() as db:
        assert db.table("counter").get(doc_id=1)["n"] == 5 * 50


def test_a_corrupt_database_is_reported_with_its_path(tmp_path) -> None:
    from engine.errors import InputError

    (tmp_path / "h.db").write_text("{not json")
    with pytest.raises(InputError, match="database is damaged: it does not load"), Store(tmp_path / "h.db").read():
        pass


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "it is empty (0 bytes)"),
        (b"[]", "it is JSON but not tables of documents"),
        (b'{"networks": [1, 2]}', "it is JSON but not tables of documents"),
        (b'{"networks": {"1": 7}}', "it is JSON but not tables of documents"),
    ],
)
def test_a_damaged_database_is_reported_and_left_alone(tmp_path, content: bytes, why: str) -> None:
    from engine.store.database import DamagedDatabase

    path = tmp_path / "h.db"
    with Store(path).write() as db:
        db.table("networks").insert({"name": "lan"})
    with Store(path).write() as db:
        db.table("networks").insert({"name": "wan"})
    path.write_bytes(content)
    for transaction in (Store(path).read, Store(path).write):
        with pytest.raises(DamagedDatabase) as caught, transaction():
            pass
        (problem,) = caught.value.problems
        assert problem.file == str(path) and problem.message.startswith(f"database is damaged: {why}; nothing was")
        assert f"restore it with `cp -p {path}.bak {path}`" in problem.message
    assert path.read_bytes() == content
    # The backup is the version before the last write: restoring it loses that write only.
    with Store(tmp_path / "h.db.bak").read() as db:
        assert [doc["name"] for doc in db.table("networks").all()] == ["lan"]


def test_a_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path) -> None:
    path = tmp_path / "h.db"
    stray = tmp_path / ".h.db.4242.140000.tmp"
    stray.write_text('{"half": ')
    with Store(path).write() as db:
        db.table("t").insert({"n": 1})
    assert not stray.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.db", "h.db.lock"]


def test_a_temporary_file_of_a_killed_writer_is_removed_by_the_next_read(tmp_path) -> None:
    """A home only read afterwards (`vnet list`, a read-only console) kept it for good."""
    path = tmp_path / "h.db"
    with Store(path).write() as db:
        db.table("t").insert({"n": 1})
    stray = tmp_path / ".h.db.4242.140000.tmp"
    stray.write_text('{"half": ')
    with Store(path).read() as db:
        assert db.table("t").all() == [{"n": 1}]
    assert not stray.exists()
