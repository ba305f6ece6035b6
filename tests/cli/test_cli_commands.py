"""The CLI as a whole, through the real command: the console's terminal check, usage, --json on every command,
exit statuses and messages."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from tests.conftest import HEADNODE, ROOT, site_driver

FOLLOWED = ("deploy", "stop", "resume", "migrate", "shutdown", "delete", "recover")  # the service's runs, followed
NET = "NAME = lab\nBRIDGE = br7\nNETWORK_ADDRESS = 10.7.0.0/24\n"


def test_the_console_refuses_without_a_terminal(home) -> None:
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}
    piped = subprocess.run(HEADNODE, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, input="")
    primary, secondary = os.openpty()  # stdin a terminal, stdout a pipe: still no console
    try:
        half = subprocess.run(HEADNODE, stdin=secondary, capture_output=True, text=True, env=env, timeout=60)
    finally:
        os.close(primary)
        os.close(secondary)
    for done in (piped, half):
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "the console needs a terminal" in done.stderr


def test_a_noun_without_a_verb_is_a_usage_error(headnode) -> None:
    for noun, verb in (("vm", "create"), ("host", "test"), ("vnet", "mac2ip"), ("script", "check")):
        r = headnode(noun)
        assert (r.returncode, r.stdout) == (2, "")
        assert r.stderr.startswith(f"headnode {noun}: error: a verb is needed: ") and verb in r.stderr
        assert r.stderr.count("\n") == 1


def test_help_says_where_the_home_is_by_default(headnode) -> None:
    from engine.cli import _tilde
    from engine.home import default_home

    r = headnode("--help")
    assert r.returncode == 0 and f"else {_tilde(default_home())})" in " ".join(r.stdout.split())


def test_every_command_honours_json(headnode, home, tmp_path: Path) -> None:
    """Each verb of the parser, run with --json on one home, prints JSON on stdout (JSON lines for run)."""
    from engine.cli import build_parser

    vm_dir = tmp_path / "other"
    (tmp_path / "lab.net").write_text(NET)
    script = tmp_path / "swap.script"
    script.write_text(f"MKSWAP 1 local:{home.vms}/77/images/disk.1\n")
    template = tmp_path / "vm.tmpl"
    template.write_text(f"NAME = x\nDISK = [ TYPE = swap, SIZE = 1 ]\nDISK = [ SOURCE = {home.images}/ttylinux.img ]\n")
    site_driver(home, "broken", programs={"MKSWAP": "#!/bin/sh\necho no >&2\nexit 3\n"})
    site_driver(home, "slow", programs={"MKSWAP": "#!/bin/sh\nexec sleep 60\n"})
    site_driver(home, "cached", CACHE="yes")  # a shared host that keeps an image cache
    slow = tmp_path / "slow.script"
    slow.write_text(f"MKSWAP 1 slow:{tmp_path}/slow/78/images/disk.1\n")
    commands = [
        ("plan", str(template), "--vm", "0", "--host", "h", "--vm-dir", "/v"),
        ("script", "check", str(script)),
        ("run", str(script), "--vm", "77"),
        ("host", "create", "h2", "--driver", "shared", "--vm-dir", str(vm_dir)),
        ("host", "create", "bad", "--driver", "broken", "--vm-dir", str(tmp_path / "bad")),
        ("host", "create", "slow", "--driver", "slow", "--vm-dir", str(tmp_path / "slow")),
        ("host", "list"),
        ("host", "show", "h2"),
        ("host", "test", "h2"),
        ("vnet", "create", str(tmp_path / "lab.net")),
        ("vnet", "list"),
        ("vnet", "show", "lab"),
        ("vnet", "lease", "lab"),
        ("vnet", "hold", "lab", "10.7.0.9"),
        ("vnet", "release", "lab", "10.7.0.9"),
        ("vnet", "export", "lab", "--format", "hosts"),
        ("vnet", "doctor"),
        ("vnet", "dhcp", "lab", "--stop"),  # serving needs an interface: tests/system/test_dhcp.py
        ("vnet", "mac2ip", "02:00:0a:07:00:01"),
        ("vnet", "ip2mac", "10.7.0.1"),
        ("vm", "create", str(template)),
        ("host", "create", "hc", "--driver", "cached", "--vm-dir", str(tmp_path / "hc")),
        ("cache", "warm", f"{home.images}/ttylinux.img", "hc"),
        ("cache", "list"),
        ("cache", "pin", "hc", f"{home.images}/ttylinux.img"),
        ("cache", "unpin", "hc", f"{home.images}/ttylinux.img"),
        ("cache", "evict", "hc", "--dry-run"),
        ("cache", "evict", "hc"),
        ("vm", "list"),
        ("vm", "show", "0"),
        ("vm", "deploy", "0", "local"),
        ("vm", "log", "0"),
        ("vm", "stop", "0"),
        ("vm", "resume", "0", "local"),
        ("vm", "migrate", "0", "h2"),
        ("vm", "shutdown", "0"),
        ("vm", "create", str(template)),
        ("vm", "delete", "1"),
        ("vm", "create", str(template)),
        ("vm", "deploy", "2", "bad"),  # fails (exit 1): the recover below has a failed VM
        ("vm", "recover", "2", "--delete"),
        ("host", "delete", "bad"),
        ("vnet", "delete", "lab", "--force"),
        ("run", str(slow), "--vm", "78", "--detach"),
        ("transfers",),
        ("cancel", "78"),
        ("log",),
        ("daemon", "status"),
        ("daemon", "stop"),
    ]
    verbs = _every_command(build_parser())
    assert {c[:2] if (c[0],) not in verbs else c[:1] for c in commands} == verbs  # a new verb joins this list
    for command in commands:
        r = headnode(*command, "--json")
        expected = 1 if command[:3] == ("vm", "deploy", "2") else 0
        assert r.returncode == expected, (command, r.stderr)
        followed = command[0] == "run" or (command[0] == "vm" and command[1] in FOLLOWED)
        if "--detach" in command:
            assert json.loads(r.stdout)["event"] == "accepted"
        elif followed and expected == 0:  # JSON lines, one per event
            last = [json.loads(line)["event"] for line in r.stdout.splitlines()][-1]
            assert last == ("script_finished" if command[0] == "run" else "vm_operation_finished")
        elif expected == 0:
            json.loads(r.stdout)
    assert json.loads(headnode("vnet", "mac2ip", "02:00:0a:07:00:01", "--json").stdout) == {
        "mac": "02:00:0a:07:00:01",
        "ip": "10.7.0.1",
    }
    checked = json.loads(headnode("script", "check", str(script), "--json").stdout)
    assert checked == [{"file": str(script), "valid": True, "lines": 1, "problems": []}]


def _every_command(parser: argparse.ArgumentParser) -> set[tuple[str, ...]]:
    """(noun, verb) for each verb of each noun, (noun,) for a command without verbs."""
    found: set[tuple[str, ...]] = set()
    for noun, sub in _subcommands(parser).items():
        verbs = _subcommands(sub)
        found |= {(noun, verb) for verb in verbs} if verbs else {(noun,)}
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def test_script_check_json_lists_problems_and_still_fails(headnode, tmp_path: Path) -> None:
    bad = tmp_path / "bad.script"
    bad.write_text("FROB x\n")
    r = headnode("script", "check", str(bad), "--json")
    assert r.returncode == 2 and r.stderr.startswith(f"{bad}:1:")
    (report,) = json.loads(r.stdout)
    assert report["valid"] is False and report["problems"] == [r.stderr.strip()]


def test_exit_statuses_of_bad_input(headnode, tmp_path: Path) -> None:
    (tmp_path / "lab.net").write_text(NET)
    assert headnode("vnet", "create", str(tmp_path / "lab.net")).returncode == 0
    r = headnode("vnet", "release", "lab", "10.9.9.9")
    assert r.returncode == 2 and "outside the range of 'lab'" in r.stderr
    r = headnode("vnet", "release", "lab", "10.7.0.5")  # in the range, not leased: the operation fails
    assert r.returncode == 1 and "is not leased" in r.stderr

    r = headnode("host", "create", "h", "--driver", "ssh", "--vm-dir", "/v", "--identity", "/nonexistent/key")
    assert (r.returncode, r.stderr) == (2, "headnode: --identity /nonexistent/key: no such file\n")
    assert "h" not in [h["name"] for h in json.loads(headnode("host", "list", "--json").stdout)]


def test_run_reports_its_failure_on_stderr(headnode, home, tmp_path: Path) -> None:
    site_driver(home, "broken", programs={"MKSWAP": "#!/bin/sh\necho 'disk full' >&2\nexit 3\n"})
    assert headnode("host", "create", "bad", "--driver", "broken", "--vm-dir", str(tmp_path)).returncode == 0
    script = tmp_path / "s.script"
    script.write_text(f"MKSWAP 1 bad:{tmp_path}/3/images/disk.1\n")
    r = headnode("run", str(script))
    assert r.returncode == 1
    assert r.stderr == f"{script}:1: script failed: broken_mkswap.sh exited with status 3: disk full\n"
