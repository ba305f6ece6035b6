"""Drive the real `headnode` in a real terminal: a detached tmux session, keys in, screen text out."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """One tmux server of its own (its socket in a new folder in `folder`) running one command; `close()` ends the
    server.

    Its own server, not the user's: a session gets the environment of the process that started the server, so a
    server shared by two test runs would give the second run's console the first run's home."""

    def __init__(self, argv: list[str], env: dict[str, str], folder: Path, size: tuple[int, int] = (100, 30)) -> None:
        self.name = "headnode-test"
        own = Path(tempfile.mkdtemp(prefix="tty", dir=folder))  # short: a socket's path has at most 107 bytes
        self.tmux = ["tmux", "-S", str(own / "socket")]
        self.status_file = own / "exit-status"
        # The shell only records the command's exit status; every argument is quoted.
        command = f"{shlex.join(argv)}; echo $? > {shlex.quote(str(self.status_file))}; sleep 60"
        exports = {**os.environ, **env, "TERM": "xterm-256color"}
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]), command],
            check=True,
            env=exports,
            cwd=ROOT,
        )

    def send(self, *keys: str) -> None:
        """tmux key names: "1", "?", "Escape", "Enter", "C-q"."""
        for key in keys:
            subprocess.run([*self.tmux, "send-keys", "-t", self.name, key], check=True)
            # A bare ESC followed at once by a key reads as alt+key; give the terminal parser time to decide.
            time.sleep(0.4 if key == "Escape" else 0.05)

    def text(self) -> str:
        done = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        return done.stdout

    def wait_for(self, predicate: Callable[[str], bool] | str, timeout: float = 15.0) -> str:
        """The screen once `predicate` holds (or the text appears); fails with the last screen otherwise."""
        check = (lambda screen: predicate in screen) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; screen was:\n{screen}")
            time.sleep(0.1)

    def exit_status(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while not self.status_file.exists() or not self.status_file.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"the program did not exit; screen was:\n{self.text()}")
            time.sleep(0.1)
        return int(self.status_file.read_text())

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def headnode_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "from tui.main import main; main()", *args]
