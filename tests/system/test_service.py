"""The engine service with real processes: `headnode` clients, the service they start in the background, and
copies from a slow HTTP server to an sshd host, interrupted in every way a user would."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from engine.service.protocol import ServicePaths
from engine.service.server import lock_holder
from engine.store.database import Store
from engine.transfers.hosts import Host, Hosts
from engine.transfers.journal import TABLE, Journal
from engine.transfers.progress import RunOutcome
from tests.conftest import HEADNODE, ROOT, site_driver, stop_service
from tests.engine.test_vms import FLAKY, TTYLINUX
from tests.tui.terminal import Terminal, headnode_argv

MiB = 1 << 20


def _env(world) -> dict[str, str]:
    return {**os.environ, "HEADNODE_HOME": str(world["home"].root)}


def slow_clone(world, http_server, tmp_path: Path, size: int, holes: bool = False) -> tuple[Path, Path, bytes]:
    """A script cloning `size` random bytes from the slow HTTP path (about 1 MB/s) to host01; with `holes`, every
    other MiB is zeros."""
    data = os.urandom(size)
    if holes:
        data = b"".join(data[i : i + MiB] if i % (2 * MiB) else bytes(MiB) for i in range(0, size, MiB))
    (http_server["root"] / "big.img").write_bytes(data)
    d = world["hosts"]["host01"].vm_dir
    script = tmp_path / "job.script"
    script.write_text(f"CLONE {http_server['url']}/slow/big.img host01:{d}/9/images/disk.0\n")
    return script, d / "9/images/disk.0", data


def runs(headnode) -> list[dict]:
    r = headnode("transfers", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def copied(headnode, run_id: str) -> int:
    (run,) = [r for r in runs(headnode) if r["run"] == run_id]
    return run["bytes_done"]


def service_pid(world) -> int:
    pid = lock_holder(ServicePaths(world["home"]))
    assert pid is not None and pid > 0
    return pid


def follow_to_the_end(headnode) -> list[dict]:
    r = headnode("transfers", "--follow", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


@pytest.fixture
def service(world, http_server):
    """The world and its HTTP server, with the home's service stopped before the server goes away."""
    yield world
    stop_service(world["home"])


def test_detached_run_goes_on_after_its_client_exits(service, http_server, headnode, tmp_path):
    script, dest, data = slow_clone(service, http_server, tmp_path, 2 << 20)
    r = headnode("run", str(script), "--vm", "9", "--detach", "--json")
    assert r.returncode == 0, r.stderr
    accepted = json.loads(r.stdout)
    assert accepted["event"] == "accepted" and accepted["vm"] == 9
    assert not dest.exists()  # the client is gone long before the copy ends
    status = json.loads(headnode("daemon", "status", "--json").stdout)
    assert status["runs_active"] == 1 and status["pid"] == service_pid(service)
    assert {"pid", "socket", "uptime", "runs_active"} <= status.keys()
    (run,) = [r for r in follow_to_the_end(headnode) if r["run"] == accepted["run"]]
    assert run["state"] == "done" and run["bytes_done"] == run["bytes_total"] == len(data)
    assert [line["state"] for line in run["lines"]] == ["done"] and run["vm"] == 9
    assert dest.read_bytes() == data
    audit = json.loads(headnode("log", "--json").stdout)
    assert [(e["action"], e["target"]) for e in audit] == [("run", str(script))]
    assert audit[0]["user"] and audit[0]["client"].startswith("cli ")


def test_cancel_a_run_by_its_vm(service, http_server, headnode, tmp_path):
    script, dest, _ = slow_clone(service, http_server, tmp_path, 16 << 20)
    run_id = json.loads(headnode("run", str(script), "--vm", "9", "--detach", "--json").stdout)["run"]
    wait_for(lambda: copied(headnode, run_id) > 0, what="the copy to start")
    r = headnode("cancel", "²")  # '²'.isdigit() holds: int('²') was an internal error while a run was active
    assert (r.returncode, r.stderr) == (2, "headnode: no run ² in the service\n")
    r = headnode("cancel", "9")
    assert (r.returncode, r.stdout) == (0, f"run {run_id}: cancelling\n")
    (run,) = [r for r in follow_to_the_end(headnode) if r["run"] == run_id]
    assert run["state"] == "cancelled" and run["lines"][0]["state"] == "cancelled"
    assert not dest.exists() and not list(dest.parent.glob(".*part"))
    r = headnode("cancel", "9")
    assert r.returncode == 2 and "nothing running for 9" in r.stderr


def test_daemon_stop_refuses_while_runs_are_active_unless_forced(service, http_server, headnode, tmp_path):
    script, dest, _ = slow_clone(service, http_server, tmp_path, 16 << 20)
    run_id = json.loads(headnode("run", str(script), "--detach", "--json").stdout)["run"]
    pid = service_pid(service)
    r = headnode("daemon", "stop")
    assert r.returncode == 1 and "1 run(s) active" in r.stderr and "--force" in r.stderr
    assert lock_holder(ServicePaths(service["home"])) == pid
    r = headnode("daemon", "stop", "--force")
    assert r.returncode == 0, r.stderr
    assert lock_holder(ServicePaths(service["home"])) is None and not ServicePaths(service["home"]).socket.exists()
    assert headnode("daemon", "status").returncode == 1
    # History survives the restart (the next command starts a new service).
    (run,) = [r for r in runs(headnode) if r["run"] == run_id]
    assert run["state"] == "cancelled" and not dest.exists()
    assert service_pid(service) != pid


@pytest.mark.parametrize("holes", [False, True], ids=["data", "holes"])
def test_service_killed_mid_copy_is_restarted_and_finishes_the_run(service, http_server, headnode, tmp_path, holes):
    """Killed mid-copy, the service's successor resumes the run from the size the partial copy reached (a body
    with holes too: only its data went to the host, before and after)."""
    script, dest, data = slow_clone(service, http_server, tmp_path, (12 if holes else 6) << 20, holes)
    run_id = json.loads(headnode("run", str(script), "--vm", "9", "--detach", "--json").stdout)["run"]
    # With holes, past the first extent (a MiB of data after a MiB of zeros) and the hole after it.
    wait_for(lambda: copied(headnode, run_id) >= (7 << 19 if holes else 1 << 20), what="a MiB of data copied")
    pid = service_pid(service)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: lock_holder(ServicePaths(service["home"])) is None, what="the service to die")
    assert ServicePaths(service["home"]).socket.exists()  # a dead service's socket: the next one replaces it
    assert not dest.exists()

    final = follow_to_the_end(headnode)  # starts a new service, which resumes the run by itself
    assert service_pid(service) != pid
    (old,) = [r for r in final if r["run"] == run_id]
    (new,) = [r for r in final if r.get("resumed_from") == run_id]
    assert old["state"] == "interrupted" and old["resumed_by"] == new["run"]
    assert new["state"] == "done" and new["vm"] == 9
    assert dest.read_bytes() == data
    log = (service["home"].logs / "vm-9.log").read_text()
    assert "resumed at byte" in log and "(extents, http to " in log
    if holes:
        assert dest.stat().st_blocks * 512 <= 7 * MiB  # the 6 MiB of data, not the 12 MiB of the file
    audit = json.loads(headnode("log", "--json").stdout)
    assert ("resume", f"run {run_id}", "service") in [(e["action"], e["target"], e["client"]) for e in audit]


def test_a_vm_deploy_survives_the_service_being_killed(service, headnode, tmp_path):
    """The VM's record stays true: interrupted while no service runs, then running once the new one resumed it."""
    hold = tmp_path / "hold"
    hold.touch()
    site_driver(service["home"], "flaky", programs={"CLONE": FLAKY, "MKIMAGE": FLAKY})
    Hosts(service["home"]).create(Host("flaky1", "flaky", str(tmp_path / "flaky1")))
    assert headnode("vm", "create", TTYLINUX).stdout == "0\n"
    env = {**_env(service), "HOLD": str(hold), "HELD": str(tmp_path / "held")}
    r = subprocess.run([*HEADNODE, "vm", "deploy", "0", "flaky1", "--detach"], env=env, cwd=ROOT, capture_output=True)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "prolog" in headnode("vm", "list").stdout, what="prolog")
    os.kill(service_pid(service), signal.SIGKILL)
    wait_for(lambda: lock_holder(ServicePaths(service["home"])) is None, what="the service to die")
    assert "prolog (interrupted)" in headnode("vm", "show", "0").stdout
    hold.unlink()
    headnode("daemon", "status")  # does not start a service
    assert "prolog (interrupted)" in headnode("vm", "show", "0").stdout
    final = follow_to_the_end(headnode)
    assert [r["state"] for r in final] == ["interrupted", "done"]
    shown = json.loads(headnode("vm", "show", "0", "--json").stdout)
    assert (shown["state"], shown["host"], shown["interrupted"]) == ("running", "flaky1", False)


def test_another_user_cannot_connect(service, headnode, tmp_path):
    home = service["home"].root
    assert headnode("transfers").returncode == 0  # a service is running
    paths = ServicePaths(service["home"])
    os.chmod(home, 0o755)  # a world-readable home
    assert stat.S_IMODE(paths.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.socket.stat().st_mode) == 0o600
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1]); print('got', s.recv(4096), s.recv(4096))\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    # The probe reaches the home through a descriptor it inherits, so the test's own tmp directories (0700)
    # are not what stops it.
    fd = os.open(home, os.O_PATH | os.O_DIRECTORY)
    try:

        def as_nobody() -> str:
            address = f"/proc/self/fd/{fd}/run/engine.sock"
            argv = [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                probe,
                address,
            ]
            done = subprocess.run(argv, pass_fds=[fd], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert as_nobody().startswith("refused 13")  # EACCES: the 0700 directory
        # Even with the directory and the socket opened up, the service checks who is calling.
        os.chmod(paths.directory, 0o777)
        os.chmod(paths.socket, 0o777)
        answer = as_nobody()
        assert answer.startswith("got") and "not the owner" in answer and answer.endswith(" b''\n")  # then closed
    finally:
        os.close(fd)
    log = json.loads(headnode("transfers", "--json").stdout)  # the owner still gets in
    assert log == []


def test_two_clients_starting_at_once_start_one_service(world, tmp_path):
    procs = [
        subprocess.Popen([*HEADNODE, "transfers", "--json"], env=_env(world), cwd=ROOT, stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    pid = service_pid(world)
    home = str(world["home"].root)
    services = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"engine.service" in argv and home.encode() in argv:
                services.append(int(entry.name))
    assert services == [pid]


def test_a_socket_of_a_dead_service_is_replaced(world, headnode):
    paths = ServicePaths(world["home"])
    paths.ensure_directory()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(paths.socket))
    stale.close()  # the file stays, nobody listens
    assert headnode("transfers").stdout == "no runs\n"
    assert service_pid(world) > 0


def test_the_console_shows_runs_from_the_cli_and_quitting_leaves_them_running(service, http_server, headnode, tmp_path):
    script, dest, _ = slow_clone(service, http_server, tmp_path, 64 << 20)
    run_id = json.loads(headnode("run", str(script), "--vm", "9", "--detach", "--json").stdout)["run"]
    argv = headnode_argv("--home", str(service["home"].root))
    (tmp_path / "first").mkdir()
    console = Terminal(argv, {}, tmp_path / "first", size=(200, 30))
    try:
        console.wait_for("1 Dashboard", timeout=30)
        console.send("3")
        console.wait_for(lambda s: "VM 9 0/1" in s and "running" in s and "/64.0 MiB" in s, timeout=30)
        console.send("C-q")
        console.wait_for("running in the service")
        console.send("Enter")  # the first choice: quit, they go on
        assert console.exit_status() == 0
    finally:
        console.close()
    (run,) = runs(headnode)
    assert run["run"] == run_id and run["state"] == "running"
    (tmp_path / "second").mkdir()
    again = Terminal(argv, {}, tmp_path / "second", size=(200, 30))
    try:
        again.wait_for("1 Dashboard", timeout=30)
        again.send("3")
        shown = again.wait_for(lambda s: "VM 9 0/1" in s and "running" in s and "/64.0 MiB" in s, timeout=30)
        assert headnode("cancel", run_id).returncode == 0
        again.wait_for(lambda s: "cancelled" in s, timeout=30)
        again.send("6")  # the Log: changes made before this console opened and while it was open, by the CLI
        log = again.wait_for(lambda s: f"cancel run {run_id}" in s, timeout=30)
        assert f") run {script}" in log
        again.send("C-q")
        assert again.exit_status() == 0
    finally:
        again.close()
    # It showed the bytes the service had copied before this console opened.
    assert float(re.search(r"([\d.]+)/64\.0 MiB", shown).group(1)) > 0
    assert not dest.exists()


def test_a_run_killed_after_a_line_ended_unstarted_is_recorded_interrupted(home, headnode):
    """A line that ended before it started (cancelled while it waited for a slot) has no start in the journal; a
    process killed before its run's own end left such a run marked running, and the next service, reading it back,
    failed on the missing line number and never started (every client then timed out)."""
    journal = Journal(home)
    run = journal.start(None, "MKSWAP 1 gone:/vms/1/images/disk.0\n", source="job.script")
    journal.action_finished(run, 0, RunOutcome.CANCELLED, 0, None, "cancelled", line=1)
    dead = subprocess.Popen(["true"])
    dead.wait()
    with Store(home.db_path).write() as db:
        db.table(TABLE).update({"pid": dead.pid}, lambda d: d["run"] == run)
    r = headnode("transfers", "--json")
    assert r.returncode == 0, r.stderr
    (shown,) = [found for found in json.loads(r.stdout) if found["run"] == run]
    assert shown["state"] == "interrupted" and [(x["line"], x["state"]) for x in shown["lines"]] == [(1, "cancelled")]


def test_the_service_yields_the_cpu_to_its_clients(service, headnode):
    """Its threads and the commands they start run at SERVICE_NICE: 100 copies beside a console at the same
    priority cost the console's key presses (bench/bench_service.py)."""
    from engine.service.server import SERVICE_NICE

    assert headnode("transfers").returncode == 0  # starts the service
    pid = service_pid(service)
    assert os.getpriority(os.PRIO_PROCESS, pid) >= SERVICE_NICE
    threads = os.listdir(f"/proc/{pid}/task")
    assert all(os.getpriority(os.PRIO_PROCESS, int(t)) >= SERVICE_NICE for t in threads)
    # Its own session is its own autogroup, which the kernel weighs against the console's whatever the nice.
    autogroup = Path(f"/proc/{pid}/autogroup")
    if autogroup.exists():
        assert autogroup.read_text().split()[-1] == str(SERVICE_NICE), autogroup.read_text()
