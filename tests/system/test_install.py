"""headnode installed the way users install it: a regular (not editable) `pip install .` into a fresh venv, run
from a directory that is not the repository, with the copy it was built from gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache", ".hypothesis"
)


def run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HEADNODE_HOME", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_regular_install_works_from_anywhere(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    # The new venv borrows pip, setuptools and the dependencies from this one through a .pth line, which adds the
    # folder to sys.path without running the .pth files in it: this venv's editable headnode stays out of sight.
    purelib = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path).stdout.strip()
    )
    (purelib / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = run(
        [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation", "--ignore-installed",
         str(source)],
        tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    shutil.rmtree(source)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([python, "-c", "import engine; print(engine.__file__)"], elsewhere)
    assert where.stdout.startswith(str(purelib)), where.stdout + where.stderr

    headnode = str(venv / "bin" / "headnode")
    home = tmp_path / "new-home"
    listed = run([headnode, "--home", str(home), "vnet", "list"], elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert "default" in listed.stdout  # the embedded default, made from the shipped headnode.conf
    # The sample templates and the drivers' confs are shipped too: a sample VM deploys on the front end.
    template = run(
        [python, "-c", "from engine.defaults import sample_templates as s; print(s()['ttylinux.tmpl'])"], elsewhere
    )
    assert template.stdout.startswith(str(purelib)), template.stdout + template.stderr
    created = run([headnode, "--home", str(home), "vm", "create", template.stdout.strip()], elsewhere)
    assert created.returncode == 0, created.stderr
    deployed = run([headnode, "--home", str(home), "vm", "deploy", created.stdout.strip(), "local"], elsewhere)
    assert deployed.returncode == 0, deployed.stderr
    assert (home / "vms" / created.stdout.strip() / "images" / "disk.0").is_file()
