"""The CONTEXT disk: an ISO 9660 image (Joliet and Rock Ridge names) of context.sh and the listed files.

Built on the front end with pycdlib, like OpenNebula's `mkisofs -o dst -J -R isofiles`; URLs among the files are
fetched first. The caller places the finished image at the destination.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from engine.errors import OperationError

VOLUME_ID = "CONTEXT"


def iso_name(name: str, used: set[str]) -> str:
    """An ISO 9660 level-3 name for `name`: upper case, [A-Z0-9_], with a version suffix; unique in `used`."""
    stem, dot, ext = name.upper().rpartition(".") if "." in name else (name.upper(), "", "")
    stem = re.sub(r"[^A-Z0-9_]", "_", stem)[:30] or "FILE"
    ext = re.sub(r"[^A-Z0-9_]", "_", ext)[:3]
    candidate, n = f"{stem}{dot}{ext}", 1
    while candidate in used:
        candidate, n = f"{stem[:26]}_{n}{dot}{ext}", n + 1
    used.add(candidate)
    return f"/{candidate};1"


def build_context_iso(files: list[str], output: BinaryIO, fetch: Callable[[str, str], None]) -> None:
    """Write an ISO holding each file (local paths; URLs fetched with `fetch(url, local_path)`) at its top level
    into the new file `output`."""
    import pycdlib

    with tempfile.TemporaryDirectory(prefix="headnode-context-") as scratch:
        local: list[tuple[str, str]] = []
        seen: set[str] = set()
        for index, item in enumerate(files):
            name = os.path.basename(item.rstrip("/").split("?", 1)[0]) or f"file{index}"
            if name in seen:
                raise OperationError(f"CONTEXT: two files are both named {name!r}")
            seen.add(name)
            if "://" in item and not item.startswith("file://"):
                path = os.path.join(scratch, f"{index}-{name}")
                fetch(item, path)
            else:
                path = item.removeprefix("file://")
            if not os.path.isfile(path):
                raise OperationError(f"CONTEXT: {item} is not a file")
            local.append((name, path))
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, vol_ident=VOLUME_ID, joliet=3, rock_ridge="1.09")
        used: set[str] = set()
        handles = []
        try:
            for name, path in local:
                handle = open(path, "rb")  # noqa: SIM115 - pycdlib reads them at write(); closed below
                handles.append(handle)
                size = os.fstat(handle.fileno()).st_size
                iso.add_fp(handle, size, iso_path=iso_name(name, used), rr_name=name, joliet_path=f"/{name[:64]}")
            iso.write_fp(output)
        finally:
            iso.close()
            for handle in handles:
                handle.close()
