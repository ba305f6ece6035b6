"""The per-VM transfer log, `<home>/logs/vm-<id>.log`, in OpenNebula's style:

    Tue Nov 24 09:27:48 2026 [TM][I]: CLONE fe:/img/a.img host01:/vms/12/images/disk.0 (line 1) started

A run without a VM logs to `<home>/logs/transfers.log`. Lines are appended whole (one write each), so runs of
different scripts for one VM interleave but never mix within a line.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from engine.home import Home

_lock = threading.Lock()


def log_path(home: Home, vm_id: int | None) -> Path:
    return home.logs / ("transfers.log" if vm_id is None else f"vm-{vm_id}.log")


class TransferLog:
    def __init__(self, home: Home, vm_id: int | None) -> None:
        self.path = log_path(home, vm_id)

    def write(self, message: str, error: bool = False) -> None:
        stamp = time.strftime("%a %b %d %H:%M:%S %Y")
        level = "E" if error else "I"
        text = "".join(f"{stamp} [TM][{level}]: {line}\n" for line in message.splitlines() or [""])
        with _lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
