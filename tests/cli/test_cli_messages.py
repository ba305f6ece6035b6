"""What the CLI says: no internals leak into messages (`VM None`, `<plan>`, `cancelled: cancelled`, a site
program's name twice, `done: 0 B` for a copy a site program made, `reached not at all`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import HEADNODE, ROOT, site_driver

TTYLINUX_TMPL = "data/templates/ttylinux.tmpl"

SITE_CLONE = """#!/bin/sh
src=${1#*:}; dst=${2#*:}
mkdir -p "$(dirname "$dst")" && cp "$src" "$dst"
echo "site_clone.sh: Executed cp $src $dst"
echo "copied"
"""


def test_resume_without_a_vm_does_not_say_vm_none(headnode, home, tmp_path: Path) -> None:
    script = tmp_path / "http.script"
    script.write_text(f"MKSWAP 1 local:{home.vms}/1/images/disk.1\n")
    r = headnode("run", str(script), "--resume")
    assert (r.returncode, r.stderr) == (2, f"headnode: no unfinished run of {script} to resume\n")


def test_a_site_programs_copy_reports_its_size_and_its_lines_once(headnode, home, tmp_path: Path) -> None:
    site_driver(home, "site", programs={"CLONE": SITE_CLONE})
    assert headnode("host", "create", "h", "--driver", "site", "--vm-dir", str(tmp_path / "vms")).returncode == 0
    script = tmp_path / "clone.script"
    frontend = home.config.frontend_name
    script.write_text(f"CLONE {frontend}:{home.images}/ttylinux.img h:{tmp_path}/vms/5/images/disk.0\n")
    r = headnode("run", str(script), "--vm", "5")
    assert r.returncode == 0, r.stderr
    assert "  site_clone.sh: Executed cp " in r.stdout and "site_clone.sh: site_clone.sh:" not in r.stdout
    assert "  site_clone.sh: copied" in r.stdout  # a line without the name gets it
    assert "  done: 16.0 MiB in " in r.stdout and "(ran site_clone.sh)" in r.stdout  # it said "done: 0 B"
    log = (home.logs / "vm-5.log").read_text()
    assert "site_clone.sh: Executed cp" in log and "site_clone.sh: site_clone.sh:" not in log


def test_a_cancelled_run_says_cancelled_once(home, tmp_path: Path) -> None:
    site_driver(home, "slow", programs={"MKSWAP": "#!/bin/sh\necho started\nexec sleep 60\n"})
    env = {**os.environ, "HEADNODE_HOME": str(home.root)}

    def headnode(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HEADNODE, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert headnode("host", "create", "h", "--driver", "slow", "--vm-dir", str(tmp_path)).returncode == 0
    script = tmp_path / "slow.script"
    script.write_text(f"MKSWAP 1 h:{tmp_path}/4/images/disk.1\n")
    follow = subprocess.Popen(
        [*HEADNODE, "run", str(script), "--vm", "4"],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert follow.stdout is not None and follow.stderr is not None
    for line in follow.stdout:
        if "slow_mkswap.sh: started" in line:
            break
    assert headnode("cancel", "4").returncode == 0
    rest, errors = follow.stdout.read(), follow.stderr.read()
    assert follow.wait(timeout=60) == 1
    assert "  cancelled\n" in rest and "cancelled: cancelled" not in rest
    assert errors == f"{script}:1: script cancelled\n"
    log = (home.logs / "vm-4.log").read_text()
    assert "MKSWAP (line 1) cancelled" in log and "cancelled: cancelled" not in log


def test_a_vm_operation_names_its_script(headnode, home, tmp_path: Path) -> None:
    assert headnode("vm", "create", TTYLINUX_TMPL).returncode == 0
    assert headnode("vm", "deploy", "0", "local").returncode == 0
    log = (home.logs / "vm-0.log").read_text()
    assert "Running deploy script (3 lines" in log and "<plan>" not in log
    missing = tmp_path / "missing.tmpl"
    missing.write_text(f"DISK = [ SOURCE = {tmp_path}/none.img ]\n")
    assert headnode("vm", "create", str(missing)).returncode == 0
    r = headnode("vm", "deploy", "1", "local")
    frontend = home.config.frontend_name
    assert (r.returncode, r.stderr) == (
        2,
        f"headnode: deploy script, line 1: source {frontend}:{tmp_path}/none.img does not exist\n",
    )


def test_testing_a_dummy_host_says_it_reaches_nothing(headnode) -> None:
    assert headnode("host", "create", "d", "--driver", "dummy", "--vm-dir", "/srv/vms").returncode == 0
    r = headnode("host", "test", "d")
    assert (r.returncode, r.stdout) == (0, "host d: driver dummy, which only logs what it would do: nothing to reach\n")
