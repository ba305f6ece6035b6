"""The CONTEXT disk: an ISO 9660 image (Joliet and Rock Ridge names) of context.sh and the listed files.

Built on the front end with pycdlib, like OpenNebula's `mkisofs -o dst -J -R isofiles`; URLs among the files are
fetched first, and a directory is copied whole, as tm_context.sh's `cp -R` did. The caller places the finished
image at the destination.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

from engine.errors import OperationError

VOLUME_ID = "CONTEXT"


def iso_name(name: str, used: set[str], directory: bool = False) -> str:
    """An ISO 9660 level-3 name for `name`: upper case, [A-Z0-9_], a file's with a version suffix; unique in
    `used` (the names of one directory)."""
    if directory:
        stem, dot, ext = re.sub(r"[^A-Z0-9_]", "_", name.upper())[:31] or "DIR", "", ""
    else:
        stem, dot, ext = name.upper().rpartition(".") if "." in name else (name.upper(), "", "")
        stem = re.sub(r"[^A-Z0-9_]", "_", stem)[:30] or "FILE"
        ext = re.sub(r"[^A-Z0-9_]", "_", ext)[:3]
    candidate, n = f"{stem}{dot}{ext}", 1
    while candidate in used:
        candidate, n = f"{stem[:26]}_{n}{dot}{ext}", n + 1
    used.add(candidate)
    return f"/{candidate}" if directory else f"/{candidate};1"


def build_context_iso(files: list[str], output: BinaryIO, fetch: Callable[[str, str], None]) -> None:
    """Write an ISO holding each file or directory (local paths; URLs fetched with `fetch(url, local_path)`) at
    its top level into the new file `output`."""
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
            if not (os.path.isfile(path) or os.path.isdir(path)):
                raise OperationError(f"CONTEXT: {item} is neither a file nor a directory")
            local.append((name, path))
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, vol_ident=VOLUME_ID, joliet=3, rock_ridge="1.09")
        used: set[str] = set()
        handles: list[BinaryIO] = []
        try:
            for name, path in local:
                _add(iso, "", "", name, path, used, handles)
            iso.write_fp(output)
        finally:
            iso.close()
            for handle in handles:
                handle.close()


def _add(
    iso: Any, iso_dir: str, joliet_dir: str, name: str, path: str, used: set[str], handles: list[BinaryIO]
) -> None:
    """Add file or directory `path` as `name` inside the ISO's directory `iso_dir` (Joliet: `joliet_dir`)."""
    joliet = f"{joliet_dir}/{name[:64]}"
    if os.path.isdir(path) and not os.path.islink(path):
        iso_path = iso_dir + iso_name(name, used, directory=True)
        iso.add_directory(iso_path, rr_name=name, joliet_path=joliet)
        inner: set[str] = set()
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            _add(iso, iso_path, joliet, entry.name, entry.path, inner, handles)
        return
    if not os.path.isfile(path):
        raise OperationError(f"CONTEXT: {path} is neither a file nor a directory")
    handle = open(path, "rb")  # noqa: SIM115 - pycdlib reads them at write(); the caller closes them
    handles.append(handle)
    size = os.fstat(handle.fileno()).st_size
    iso.add_fp(handle, size, iso_path=iso_dir + iso_name(name, used), rr_name=name, joliet_path=joliet)
