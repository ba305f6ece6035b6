"""The home directory: where all of headnode's state lives, and its configuration.

`--home DIR`, else `$HEADNODE_HOME`, else the platform's user data dir. First use creates it with the default
configuration copied from `data/`.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from engine.errors import InputError, Problem
from engine.language.template import Template, load_template

CONFIG_NAME = "headnode.conf"
DATA_PACKAGE = "headnode_data"  # the repository's data/ folder, installed as package data (pyproject.toml)


@dataclass(frozen=True)
class Config:
    """The settings read from the home's headnode.conf."""

    frontend_name: str
    mac_prefix: str
    template: Template


def shipped(name: str) -> Path:
    """A file or folder of `data/`, wherever headnode is installed."""
    # Imported on use: importlib.resources is slow to import, and only a fresh home and the drivers need it.
    from importlib.resources import files

    return Path(str(files(DATA_PACKAGE).joinpath(name)))


def default_home() -> Path:
    from platformdirs import user_data_dir  # only needed when neither --home nor $HEADNODE_HOME is set

    return Path(user_data_dir("headnode", appauthor=False))


class Home:
    """A headnode home directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @classmethod
    def locate(cls, explicit: str | None = None) -> Home:
        """The home named by --home, else $HEADNODE_HOME, else the platform's user data dir."""
        chosen = explicit or os.environ.get("HEADNODE_HOME") or default_home()
        return cls(chosen)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def db_path(self) -> Path:
        return self.root / "headnode.db"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def vms(self) -> Path:
        return self.root / "vms"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def ensure(self) -> Home:
        """Create the home and its folders, and the default configuration, if missing."""
        if self.root.exists() and not self.root.is_dir():
            raise InputError(Problem("home is not a directory", str(self.root)))
        try:
            for folder in (self.root, self.logs, self.vms, self.images, self.cache):
                folder.mkdir(parents=True, exist_ok=True)
            if not self.config_path.exists():
                tmp = self.config_path.with_suffix(".conf.tmp")
                shutil.copyfile(shipped(CONFIG_NAME), tmp)
                os.replace(tmp, self.config_path)
        except OSError as exc:
            raise InputError(Problem(f"cannot create home: {exc.strerror}", str(self.root))) from None
        return self

    @cached_property
    def config(self) -> Config:
        template = load_template(self.config_path)
        return Config(
            frontend_name=template.get("FRONTEND_NAME") or socket.gethostname().split(".")[0],
            mac_prefix=template.get("MAC_PREFIX") or "02:00",
            template=template,
        )
