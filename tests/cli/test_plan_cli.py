"""`headnode plan` and `headnode script check` through the real command."""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).parent.parent / "engine" / "golden"
VM12 = ["--vm", "12", "--host", "host01", "--vm-dir", "/srv/cloud/one/var/"]
FE = ["--frontend", "onefrontend", "--frontend-dir", "/srv/cloud/one/var"]


def test_plan_reproduces_example_a(headnode) -> None:
    r = headnode("plan", str(GOLDEN / "vm12.tmpl"), *VM12, *FE)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == (GOLDEN / "vm12.prolog").read_text()


def test_plan_reproduces_example_b(headnode) -> None:
    for op in ("epilog", "stop", "resume"):
        r = headnode("plan", str(GOLDEN / "vm12.tmpl"), *VM12, *FE, "--op", op)
        assert r.stdout == (GOLDEN / f"vm12.{op}").read_text()


def test_plan_migrate_from_a_previous_host(headnode) -> None:
    args = ["--vm", "13", "--host", "host02", "--vm-dir", "/srv/cloud/one/var", *FE]
    r = headnode("plan", str(GOLDEN / "vm13.tmpl"), *args, "--op", "migrate", "--from", "host01")
    assert r.stdout == (GOLDEN / "vm13.migrate").read_text()


def test_plan_json_carries_context_sh(headnode) -> None:
    r = headnode("plan", str(GOLDEN / "vm12.tmpl"), *VM12, *FE, "--json")
    out = json.loads(r.stdout)
    assert out["script"] == (GOLDEN / "vm12.prolog").read_text().splitlines()
    assert out["context_sh"] == (GOLDEN / "vm12.context.sh").read_text()


def test_plan_defaults_to_the_home_and_hostname(headnode, home) -> None:
    import socket

    r = headnode("plan", str(GOLDEN / "vm13.tmpl"), "--vm", "13", "--host", "h", "--vm-dir", "/v", "--write-context")
    assert r.stdout.startswith(f"CLONE {socket.gethostname().split('.')[0]}:/srv/cloud/images/ubuntu/ubuntu.img ")
    r = headnode("plan", str(GOLDEN / "vm12.tmpl"), *VM12, "--write-context")
    assert r.returncode == 0
    assert (home.vms / "12" / "context.sh").read_text() == (GOLDEN / "vm12.context.sh").read_text()


def test_plan_bad_template_is_exit_2_with_file_line_column(headnode, tmp_path) -> None:
    bad = tmp_path / "web.tmpl"
    bad.write_text('NAME = web\nDISK = [ SOURCE = "/a ]\n')
    r = headnode("plan", str(bad), *VM12)
    assert r.returncode == 2
    assert r.stderr == f"{bad}:2:19: unterminated quoted value\n"
    assert r.stdout == ""


def test_plan_unplannable_template_lists_every_problem(headnode, tmp_path) -> None:
    bad = tmp_path / "t.tmpl"
    bad.write_text("DISK = [ TYPE = swap ]\nDISK = [ TYPE = fs, SIZE = 1 ]\n")
    r = headnode("plan", str(bad), *VM12)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"{bad}:1: DISK 0: a swap disk needs SIZE (MiB)",
        f"{bad}:2: DISK 1: an fs disk needs SIZE (MiB) and FORMAT; missing FORMAT",
    ]


def test_usage_errors_are_one_line_and_exit_2(headnode) -> None:
    r = headnode("plan", "x.tmpl")
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1
    assert "--vm" in r.stderr
    r = headnode("plan", str(GOLDEN / "vm12.tmpl"), "--vm", "1", "--host", "h", "--vm-dir", "relative")
    assert (r.returncode, r.stderr) == (2, "headnode: --vm-dir must be an absolute path, not 'relative'\n")


def test_script_check_is_silent_on_valid_scripts(headnode) -> None:
    r = headnode("script", "check", str(GOLDEN / "all_actions.script"), str(GOLDEN / "vm12.prolog"))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_script_check_reports_every_problem_of_every_file(headnode, tmp_path) -> None:
    other = tmp_path / "other.script"
    other.write_text("DELETE host01:/srv/my disk\n")
    r = headnode("script", "check", "bad.script", str(other), cwd=GOLDEN)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines[:12] == (GOLDEN / "bad.expected").read_text().splitlines()
    assert lines[12].startswith(f"{other}:1: DELETE takes host:path, got 2 arguments (a path holding white space")


def test_script_check_missing_file(headnode) -> None:
    r = headnode("script", "check", "/nonexistent.script")
    assert (r.returncode, r.stderr) == (2, "/nonexistent.script: cannot read script: No such file or directory\n")


def test_options_work_after_the_verb(headnode, tmp_path) -> None:
    other_home = tmp_path / "other-home"
    r = headnode("plan", str(GOLDEN / "vm12.tmpl"), *VM12, "--home", str(other_home), "--write-context")
    assert r.returncode == 0
    assert (other_home / "vms" / "12" / "context.sh").exists()
    assert (other_home / "headnode.conf").exists()


def test_version(headnode) -> None:
    r = headnode("--version")
    assert (r.returncode, r.stdout) == (0, "headnode 0.1.0\n")
