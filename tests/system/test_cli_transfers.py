"""The real `headnode host` and `headnode run` commands against sshd hosts."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

from engine.transfers.hosts import Hosts
from tests.conftest import HEADNODE, ROOT


def write_script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.script"
    path.write_text(text)
    return path


def test_host_records_from_the_cli(world, headnode):
    h2 = world["hosts"]["host02"]
    r = headnode(
        "host",
        "create",
        "n2",
        "--address",
        "127.0.0.1",
        "--port",
        str(h2.port),
        "--driver",
        "ssh",
        "--vm-dir",
        str(h2.vm_dir),
        "--max-transfers",
        "2",
    )
    assert r.returncode == 0, r.stderr
    listing = json.loads(headnode("host", "list", "--json").stdout)
    assert {h["name"] for h in listing} >= {"host01", "host02", "nfs01", "dummy01", "n2"}
    shown = json.loads(headnode("host", "show", "n2", "--json").stdout)
    assert shown["port"] == h2.port and shown["max_transfers"] == 2 and shown["driver"] == "ssh"
    assert "n2" in headnode("host", "list").stdout
    dup = headnode("host", "create", "n2", "--driver", "ssh", "--vm-dir", "/x")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    bad = headnode("host", "create", "b@d", "--driver", "nfs", "--vm-dir", "/", "--port", "70000")
    assert bad.returncode == 2
    for text in ("bad host name", "unknown driver 'nfs'", "must not be /", "--port must be 1-65535"):
        assert text in bad.stderr
    assert "Traceback" not in bad.stderr
    assert headnode("host", "delete", "n2").returncode == 0
    gone = headnode("host", "show", "n2")
    assert gone.returncode == 2 and "no host named 'n2'" in gone.stderr


def test_host_test_reports_space_and_round_trip(world, headnode):
    r = headnode("host", "test", "host01", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and report["writable"] and report["free_bytes"] > 0 and report["round_trip_ms"] > 0
    text = headnode("host", "test", "nfs01").stdout
    assert "VM directory writable: yes" in text and "free space" in text


def test_host_test_refuses_unknown_key_until_accepted(world, headnode, own_user):
    h3 = world["hosts"]["host03"]
    Hosts(world["home"]).create(h3.record())
    refused = headnode("host", "test", "host03")
    assert refused.returncode == 1 and "is not in" in refused.stderr and "--accept-new-key" in refused.stderr
    accepted = headnode("host", "test", "host03", "--accept-new-key")
    assert accepted.returncode == 0, accepted.stderr
    assert headnode("host", "test", "host03").returncode == 0


def test_run_plain_and_json(world, headnode, tmp_path):
    fe, d = world["fe"], world["hosts"]["host01"].vm_dir
    base = world["images"] / "base.img"
    base.write_bytes(os.urandom(2 << 20))
    script = write_script(
        tmp_path, f"CLONE {fe}:{base} host01:{d}/9/images/disk.0\nMKSWAP 4 host01:{d}/9/images/disk.1\n"
    )
    plain = headnode("run", str(script), "--vm", "9")
    assert plain.returncode == 0, plain.stderr
    assert f"vm 9 line 1: CLONE {fe}:{base}" in plain.stdout and "script done" in plain.stdout
    r = headnode("run", str(script), "--vm", "9", "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["event"] == "script_started" and events[-1]["event"] == "script_finished"
    progress = [e for e in events if e["event"] == "action_progress" and e["line"] == 1]
    assert progress and {"vm", "line", "action", "bytes_done", "bytes_total", "rate", "eta"} <= progress[-1].keys()
    assert progress[-1]["bytes_done"] == progress[-1]["bytes_total"] == 2 << 20 and progress[-1]["vm"] == 9
    assert (world["home"].logs / "vm-9.log").exists()


def test_run_exit_statuses(world, headnode, tmp_path):
    d = world["hosts"]["host01"].vm_dir
    failing = write_script(tmp_path, f"CLONE host01:{d}/none.img host01:{d}/9/images/disk.0\n")
    r = headnode("run", str(failing), "--vm", "9")
    # The failure goes to stderr as FILE:LINE: (it was on stdout only); stdout keeps the line's progress.
    assert r.returncode == 1 and r.stderr.startswith(f"{failing}:1: script failed: ") and "  failed: " in r.stdout
    outside = write_script(tmp_path, f"MKSWAP 4 host01:{d}/../../x.swap\nDELETE host01:/\n")
    r = headnode("run", str(outside))
    assert r.returncode == 2
    assert f"{outside}:1: host01:{d}/../../x.swap is outside the VM directory" in r.stderr
    assert f"{outside}:2:" in r.stderr and r.stdout == ""
    unknown = write_script(tmp_path, "MKSWAP 4 nowhere:/vms/1/images/disk.1\nFROB x\n")
    r = headnode("run", str(unknown))
    assert r.returncode == 2 and "unknown action 'FROB'" in r.stderr


def test_a_vm_directory_holding_a_space_works_over_ssh(world, headnode, tmp_path):
    """Paths with white space travel in quotes in a script line and as whole arguments to the hosts' scripts; an
    unquoted one is refused with the way to write it."""
    h1 = world["hosts"]["host01"]
    vm_dir = h1.vm_dir / "my vms"
    vm_dir.mkdir()
    Hosts(world["home"]).create(replace(h1.record(vm_dir=str(vm_dir)), name="spaced"))
    source = world["images"] / "my disk.img"
    source.write_bytes(os.urandom(3 << 20))
    images = f"spaced:{vm_dir}/7 a/images"
    unquoted = write_script(tmp_path, f"CLONE {world['fe']}:{source} {images}/disk.0\n")
    r = headnode("script", "check", str(unquoted))
    assert r.returncode == 2 and 'put it in double quotes, "h:/a b"' in r.stderr, r.stderr
    script = write_script(
        tmp_path,
        f'CLONE "{world["fe"]}:{source}" "{images}/disk.0"\n'
        f'MKSWAP 4 "{images}/disk.1"\n'
        f'MV "{images}/disk.0" "{images}/disk 2"\n'
        f'DELETE "{images}/disk.1"\n',
    )
    r = headnode("run", str(script))
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in (vm_dir / "7 a" / "images").iterdir()) == ["disk 2"]
    assert (vm_dir / "7 a" / "images" / "disk 2").read_bytes() == source.read_bytes()
    template = tmp_path / "vm.tmpl"
    template.write_text(f'DISK = [ SOURCE = "{source}" ]\n')
    r = headnode("plan", str(template), "--vm", "1", "--host", "spaced", "--vm-dir", str(vm_dir))
    assert r.returncode == 0 and f'CLONE "{world["fe"]}:{source}" "spaced:{vm_dir}/1/images/disk.0"' in r.stdout


def test_run_resume_from_the_cli(world, headnode, tmp_path):
    d = world["hosts"]["host01"].vm_dir
    src = d / "later.img"
    script = write_script(
        tmp_path, f"MKSWAP 4 host01:{d}/9/images/disk.1\nCLONE host01:{src} host01:{d}/9/images/disk.0\n"
    )
    assert headnode("run", str(script), "--vm", "9").returncode == 1
    src.write_bytes(b"data" * 1000)
    r = headnode("run", str(script), "--vm", "9", "--resume")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "line 1:" not in r.stdout and "line 2:" in r.stdout
    assert "Line 1 was done by the interrupted run; skipping" in (world["home"].logs / "vm-9.log").read_text()


def _env(world) -> dict[str, str]:
    return {**os.environ, "HEADNODE_HOME": str(world["home"].root)}


def run_slow_clone(world, http_server, tmp_path, data: bytes, until_bytes: int):
    """Start `headnode run --json` cloning `data` from the slow HTTP path to host01; return once it reported
    `until_bytes` copied, with the running process, the script and host01's VM directory. Ctrl-C reaches it as
    in an interactive shell, also when the tests run as a background job (which ignores SIGINT, and so would
    the child)."""
    (http_server["root"] / "big.img").write_bytes(data)
    d = world["hosts"]["host01"].vm_dir
    script = write_script(tmp_path, f"CLONE {http_server['url']}/slow/big.img host01:{d}/9/images/disk.0\n")
    proc = subprocess.Popen(
        [*HEADNODE, "run", str(script), "--vm", "9", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(world),
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "action_progress" and event["bytes_done"] >= until_bytes:
            break
    return proc, script, d


def test_ctrl_c_stops_following_then_cancel_cancels_cleanly(world, http_server, headnode, tmp_path):
    # Ctrl-C used to cancel the run; the run now belongs to the service and goes on, `headnode cancel` stops it.
    proc, _, d = run_slow_clone(world, http_server, tmp_path, os.urandom(16 << 20), 1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert "goes on in the service" in proc.stderr.read()
    running = json.loads(headnode("transfers", "--json").stdout)
    assert [run["state"] for run in running] == ["running"]
    assert headnode("cancel", running[0]["run"]).returncode == 0
    finished = json.loads(headnode("transfers", "--follow", "--json").stdout.splitlines()[-1])
    assert [run["state"] for run in finished] == ["cancelled"]
    assert not (d / "9/images/disk.0").exists() and not list((d / "9/images").glob(".*part"))
    headnode("daemon", "stop", "--force")


def test_progress_bars_on_a_terminal(world, tmp_path):
    fe, d = world["fe"], world["shared"]
    base = world["images"] / "base.img"
    base.write_bytes(os.urandom(4 << 20))
    script = write_script(tmp_path, f"CLONE {fe}:{base} nfs01:{d}/9/images/disk.0\n")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*HEADNODE, "run", str(script), "--vm", "9"], stdout=follower, stderr=follower, env=_env(world), cwd=ROOT
    )
    os.close(follower)
    output = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        output += data
    assert proc.wait(30) == 0
    text = output.decode()
    assert "\r\x1b[K" in text and "100.0%" in text and "[##############################]" in text


def test_kill_9_of_a_following_client_leaves_the_run_going(world, headnode, http_server, tmp_path):
    # Killing the client used to interrupt the copy (resumed with run --resume); now the service goes on with it.
    # A killed service is resumed by the next one: tests/system/test_service.py.
    data = os.urandom(3 << 20)
    proc, _, d = run_slow_clone(world, http_server, tmp_path, data, 1 << 19)
    proc.kill()
    proc.wait(30)
    assert not (d / "9/images/disk.0").exists()
    finished = json.loads(headnode("transfers", "--follow", "--json").stdout.splitlines()[-1])
    assert [run["state"] for run in finished] == ["done"]
    assert (d / "9/images/disk.0").read_bytes() == data
    headnode("daemon", "stop")
