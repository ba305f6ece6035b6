"""The agent whose keys let one host log in to the next: no private key is ever copied to a host.

A chain's hosts log in to their neighbours with the admin's identity through a forwarded agent, and only while the
links are opened (hop.py's LINK; the stages then reuse those connections). The admin's own agent serves when it
holds keys; otherwise a private `ssh-agent` is started for the run, in a 0700 directory of its own, loaded
with the identities the head itself uses for these hosts (their records' identity files, else ~/.ssh's default
keys), and killed after. A key with a passphrase cannot be loaded without a prompt: the error says to load it
into the admin's agent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

from engine.errors import OperationError

AGENT_START_WAIT = 10.0


def _has_keys(socket: str) -> bool:
    env = {**os.environ, "SSH_AUTH_SOCK": socket}
    result = subprocess.run(["ssh-add", "-l"], env=env, stdin=subprocess.DEVNULL, capture_output=True)
    return result.returncode == 0


@contextlib.contextmanager
def agent(identities: Sequence[str]) -> Iterator[str]:
    """The SSH_AUTH_SOCK to forward: the admin's agent if it holds keys, else a private one with `identities`
    loaded, ended when the block ends."""
    admin = os.environ.get("SSH_AUTH_SOCK")
    if admin and os.path.exists(admin) and _has_keys(admin):
        yield admin
        return
    if not identities:
        raise OperationError("no SSH identity for the hosts to log in to each other: no agent holds a key")
    directory = tempfile.mkdtemp(prefix="headnode-agent-")  # mode 0700
    socket = os.path.join(directory, "agent")
    process = subprocess.Popen(
        ["ssh-agent", "-D", "-a", socket], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + AGENT_START_WAIT
        while not os.path.exists(socket):
            if process.poll() is not None or time.monotonic() > deadline:
                said = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
                raise OperationError(f"ssh-agent did not start: {said or 'no socket'}")
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": socket, "SSH_ASKPASS_REQUIRE": "never", "DISPLAY": ""}
        for identity in identities:
            added = subprocess.run(["ssh-add", "-q", identity], env=env, stdin=subprocess.DEVNULL, capture_output=True)
            if added.returncode != 0:
                lines = added.stderr.decode(errors="replace").strip().splitlines()
                raise OperationError(
                    f"cannot load {identity} into a private ssh-agent ({lines[-1] if lines else 'failed'}); if it has "
                    "a passphrase, load it into your own agent (ssh-add) and run again"
                )
        yield socket
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
