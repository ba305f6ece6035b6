"""Shared fixtures: a fresh home per test, the real `headnode` command, and a test server's thread."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.home import Home, shipped

if importlib.util.find_spec("headnode_data") is None:
    pytest.exit("data/ is not installed as headnode_data: run pip install -e '.[test]' (tests/run.sh does)", 2)

ROOT = Path(__file__).resolve().parent.parent
HEADNODE = [sys.executable, "-c", "from tui.main import main; main()"]

# A host the CLI and the console both refuse, with the same reasons (the engine parses both front ends' input).
BAD_HOST = {
    "name": "n1",
    "driver": "shared",
    "vm_dir": "relative/dir",
    "port": "22x",
    "max_transfers": "0",
    "compress": "gzip",
}
BAD_HOST_PROBLEMS = [
    "--port must be a whole number, not '22x'",
    "--vm-dir must be an absolute path without control characters, not 'relative/dir'",
    "--max-transfers must be at least 1, not 0",
    "--compress must be zstd or no, not 'gzip'",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests in tests/system/ are marked `system`, those in tests/tui/ `tui` (pyproject.toml says what each means)."""
    for item in items:
        folder = item.path.relative_to(ROOT / "tests").parts[0]
        if folder in ("system", "tui"):
            item.add_marker(folder)


def stop_service(home: Home, timeout: float = 30) -> None:
    """Stop the home's engine service if one runs: SIGTERM (its runs are cancelled cleanly), then SIGKILL."""
    from engine.service.protocol import ServicePaths
    from engine.service.server import lock_holder

    paths = ServicePaths(home)
    pid = lock_holder(paths)
    if pid is None or pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while lock_holder(paths) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _stop_services(request):
    """Every service a test started (homes under its tmp_path) is stopped when the test ends."""
    tmp_path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp_path is not None:
        for lock in [*tmp_path.glob("run/engine.lock"), *tmp_path.glob("*/run/engine.lock")]:
            stop_service(Home(lock.parent.parent))


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").ensure()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def headnode(home: Home):
    """Run the real CLI in a subprocess against the test's home."""

    def run(*args: str, input: str | None = None, cwd: Path | None = None, timeout: float = 120) -> Result:
        env = {**os.environ, "HEADNODE_HOME": str(home.root)}
        done = subprocess.run(
            [*HEADNODE, *args], capture_output=True, text=True, input=input, env=env, cwd=cwd or ROOT, timeout=timeout
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


def site_driver(home: Home, name: str, base: str = "shared", programs: dict[str, str] | None = None, **settings: str):
    """Define driver NAME in `<home>/tm/`: the shipped `data/tm/<base>.conf`, with the given actions handed to
    site programs (action -> shell script text, made executable beside the conf) and other settings replaced."""
    tm = home.root / "tm"
    tm.mkdir(exist_ok=True)
    conf = (shipped("tm") / f"{base}.conf").read_text()
    for action, text in (programs or {}).items():
        program = tm / f"{name}_{action.lower()}.sh"
        program.write_text(text)
        program.chmod(0o755)
        conf = conf.replace(f"{action} = builtin", f'{action} = "{program.name}"')
    for key, value in settings.items():
        conf = "\n".join(f"{key} = {value}" if line.startswith(f"{key} =") else line for line in conf.splitlines())
    (tm / f"{name}.conf").write_text(conf + "\n")


@contextlib.contextmanager
def serving(server: http.server.HTTPServer) -> Iterator[int]:
    """Serve on a thread of its own until the block ends; yields the loopback port."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
