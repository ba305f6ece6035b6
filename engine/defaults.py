"""The embedded default: what a fresh home holds so `vm create` and `vm deploy ID local` work at once.

On first run: the front end as a host named `local` (shared driver, VM directory `<home>/vms`), a ranged network
`default` (the configuration's DEFAULT_NETWORK, 192.168.122.0/24 unless it says otherwise), and a small sample
disk image `<home>/images/ttylinux.img`. Done once per home (a marker in the database), so what the admin later
deletes stays deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from engine.home import Home, shipped
from engine.language.template import Attribute, Template
from engine.store.database import Store
from engine.transfers.hosts import Host

if TYPE_CHECKING:
    from engine.networks.manager import Networks
    from engine.transfers.hosts import Hosts

SAMPLE_IMAGE = "ttylinux.img"
SAMPLE_IMAGE_MB = 16


def sample_templates() -> dict[str, Path]:
    """The sample VM templates headnode ships (data/templates/), by file name."""
    return {path.name: path for path in sorted(shipped("templates").glob("*.tmpl"))}


def make_sample_image(path: Path) -> None:
    """A small sparse ext4 image (a plain sparse file where mkfs.ext4 is missing), placed whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as image:
        image.truncate(SAMPLE_IMAGE_MB * 1024 * 1024)
    mkfs = shutil.which("mkfs.ext4") or next(
        (p for p in ("/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4") if os.path.exists(p)), None
    )
    if mkfs:
        subprocess.run([mkfs, "-q", "-F", "-L", "ttylinux", str(tmp)], check=True, capture_output=True)
    os.replace(tmp, path)


def embedded_default_made(home: Home) -> bool:
    """Whether this home got its embedded default already (one read; the networks and hosts code not loaded)."""
    return default_state(home)[0]


def default_state(home: Home) -> tuple[bool, bool]:
    """(made, image owed): whether the embedded default was made, and whether its sample image still is to be
    made (a console defers it past its first paint), in one read."""
    with Store(home.db_path).read() as db:
        doc = db.table("meta").get(doc_id=1)
    return bool(doc), bool(doc) and doc.get("sample_image") is False  # type: ignore[union-attr]


def ensure_embedded_default(home: Home, hosts: Hosts, networks: Networks, image: bool = True) -> bool:
    """Create the embedded default once per home; returns True when it did. With `image` false the sample
    image is owed: ensure_sample_image makes it (mkfs takes seconds on a busy machine)."""
    if embedded_default_made(home):
        if image:
            ensure_sample_image(home)
        return False
    # Two first commands at once (two clients starting the service) must not both create `local`.
    with _default_lock(home):
        made = not embedded_default_made(home) and _make_embedded_default(home, hosts, networks)
    if image:
        ensure_sample_image(home)
    return made


def ensure_sample_image(home: Home) -> bool:
    """Make the sample image if the embedded default still owes it; returns True when it did."""
    if not default_state(home)[1]:
        return False
    with _default_lock(home):
        if not default_state(home)[1]:
            return False
        path = home.images / SAMPLE_IMAGE
        if not path.exists():
            make_sample_image(path)
        with Store(home.db_path).write() as db:
            db.table("meta").update({"sample_image": True}, doc_ids=[1])
    return True


@contextmanager
def _default_lock(home: Home) -> Iterator[None]:
    with open(home.root / ".default.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _make_embedded_default(home: Home, hosts: Hosts, networks: Networks) -> bool:
    made_image = (home.images / SAMPLE_IMAGE).exists()
    if hosts.find("local") is None:
        hosts.create(Host("local", "shared", str(home.vms)))
    vector = home.config.template.vectors("DEFAULT_NETWORK")
    if vector and not any(n.name == (vector[0].get("NAME") or "default") for n in networks.list()):
        attrs = [Attribute("TYPE", "RANGED"), *(Attribute(k, v) for k, v in vector[0].items)]
        networks.create(Template(attrs, str(home.config_path)))
    with Store(home.db_path).write() as db:
        db.table("meta").insert({"embedded_default": True, "sample_image": made_image})
    return True
