"""Transfer drivers: for each action, a built-in or an external program, read from `tm/<driver>.conf`.

A conf is a template: `BASE = shared|ssh|dummy` (how the driver's hosts' files are reached, and whose built-ins
`builtin` means; ssh when missing, as in OpenNebula's own confs), `VERIFY_LOCAL_COPIES = yes|no` (see
data/tm/shared.conf), `CHECKSUM = cksum|sha256` (how its copies are verified, engine.transfers.checksums),
`CACHE = yes|no` (whether CLONEs from the front end or HTTP go through its hosts' image caches,
engine.transfers.cache; yes by default for an ssh driver whose CLONE is the built-in), `COMPRESS = zstd|no`
(whether streams on its hosts' links are compressed, engine.transfers.compression; no when missing, and a
host's own setting wins), and one line per action:
`CLONE = builtin` or `CLONE = "program"` (a relative program path is looked up next to the conf). Confs in
`<home>/tm/` add drivers or replace the shipped ones in `data/tm/`.

An external program runs with the action's arguments as argv, never through a shell. Each stdout line goes to the
VM's transfer log; a non-zero exit fails the action with the text between OpenNebula's `ERROR MESSAGE --8<------`
and `ERROR MESSAGE ------>8--` markers on stderr, or else the last lines of stderr.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError, OperationError, Problem
from engine.home import Home, shipped
from engine.language.script import ACTION_NAMES
from engine.language.template import load_template
from engine.transfers.checksums import ALGORITHMS, DEFAULT_ALGORITHM
from engine.transfers.compression import COMPRESS_CHOICES
from engine.transfers.job import Job

BASES = ("shared", "ssh", "dummy")
DEFAULT_BASE = "ssh"
BUILTIN = "builtin"
ERROR_START = "ERROR MESSAGE --8<------"
ERROR_END = "ERROR MESSAGE ------>8--"


@dataclass(frozen=True)
class Driver:
    name: str
    base: str
    programs: tuple[tuple[str, str | None], ...]  # (action, program path or None for the built-in)
    source: str
    verify_local: bool = True  # checksum source and copy of a copy made by the kernel on this machine
    checksum: str = DEFAULT_ALGORITHM  # what verifies its copies (engine.transfers.checksums)
    cache: bool = False  # its hosts keep an image cache that the built-in CLONE goes through
    compress: bool = False  # zstd on its hosts' links (engine.transfers.compression)

    def program(self, action: str) -> str | None:
        return dict(self.programs)[action]

    def handles(self, action: str) -> bool:
        return action in dict(self.programs)


def conf_dirs(home: Home) -> list[Path]:
    return [home.root / "tm", shipped("tm")]


def driver_names(home: Home) -> list[str]:
    names = {p.stem for d in conf_dirs(home) if d.is_dir() for p in d.glob("*.conf")}
    return sorted(names)


def load_driver(home: Home, name: str) -> Driver:
    """The driver `name`, or InputError naming the conf's file and line."""
    for folder in conf_dirs(home):
        path = folder / f"{name}.conf"
        if path.is_file():
            return _parse_driver(name, path)
    raise InputError(Problem(f"no transfer driver {name!r}: expected one of {', '.join(driver_names(home))}"))


def _parse_driver(name: str, path: Path) -> Driver:
    template = load_template(path)
    problems = []
    # OpenNebula's own tm_nfs.conf and tm_ssh.conf have no BASE: every OpenNebula host is reachable over SSH, and
    # an NFS host's VM directory is too, so ssh is right for both.
    base = template.get("BASE") or DEFAULT_BASE
    if base not in BASES:
        problems.append(Problem(f"BASE must be one of {', '.join(BASES)}, not {base!r}", str(path)))
    verify = (template.get("VERIFY_LOCAL_COPIES") or "yes").lower()
    if verify not in ("yes", "no"):
        attr = template.all("VERIFY_LOCAL_COPIES")[0]
        problems.append(Problem(f"VERIFY_LOCAL_COPIES must be yes or no, not {verify!r}", str(path), attr.line))
    checksum = (template.get("CHECKSUM") or DEFAULT_ALGORITHM).lower()
    if checksum not in ALGORITHMS:
        attr = template.all("CHECKSUM")[0]
        problems.append(Problem(f"CHECKSUM must be {' or '.join(ALGORITHMS)}, not {checksum!r}", str(path), attr.line))
    cache_text = (template.get("CACHE") or "").lower()
    if cache_text not in ("", "yes", "no"):
        attr = template.all("CACHE")[0]
        problems.append(Problem(f"CACHE must be yes or no, not {cache_text!r}", str(path), attr.line))
    compress = (template.get("COMPRESS") or "no").lower()
    if compress not in COMPRESS_CHOICES:
        attr = template.all("COMPRESS")[0]
        problems.append(
            Problem(f"COMPRESS must be {' or '.join(COMPRESS_CHOICES)}, not {compress!r}", str(path), attr.line)
        )
    programs: list[tuple[str, str | None]] = []
    for attr in template:
        if attr.name in ("BASE", "VERIFY_LOCAL_COPIES", "CHECKSUM", "CACHE", "COMPRESS"):
            continue
        if attr.name not in ACTION_NAMES:
            problems.append(
                Problem(f"unknown action {attr.name}: expected {', '.join(ACTION_NAMES)}", str(path), attr.line)
            )
            continue
        if not isinstance(attr.value, str) or not attr.value:
            problems.append(Problem(f"{attr.name} must be builtin or a program path", str(path), attr.line))
            continue
        if attr.value.lower() == BUILTIN:
            programs.append((attr.name, None))
            continue
        program = attr.value if attr.value.startswith("/") else str(path.parent / attr.value)
        if any(ch < " " or ch == "\x7f" for ch in program):
            problems.append(Problem(f"{attr.name}: {program!r} holds a control character", str(path), attr.line))
        elif not os.access(program, os.X_OK):
            problems.append(Problem(f"{attr.name}: {program} is not an executable program", str(path), attr.line))
        programs.append((attr.name, program))
    if problems:
        raise InputError(problems)
    # Unsaid, a host reached over SSH caches (every byte of a CLONE crosses a link otherwise); a shared file system
    # copies within itself already, and a site's own CLONE program is its own caching mechanism, as in the seed.
    cache = cache_text == "yes" or (cache_text == "" and base == "ssh" and dict(programs).get("CLONE", "") is None)
    return Driver(name, base, tuple(programs), str(path), verify == "yes", checksum, cache, compress == "zstd")


def error_message(stderr: str) -> str:
    """The text between OpenNebula's error markers, else the last lines of stderr."""
    if ERROR_START in stderr and ERROR_END in stderr:
        between = stderr.split(ERROR_START, 1)[1].split(ERROR_END, 1)[0].strip()
        if between:
            return " / ".join(between.splitlines())
    tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
    return " / ".join(tail) if tail else "no error message"


def run_program(program: str, arguments: Sequence[str], job: Job, environment: dict[str, str]) -> None:
    """Run an external action program; raise OperationError with its error message when it fails."""
    from engine.transfers.endpoints import run_local

    name = os.path.basename(program)

    def log(line: str) -> None:  # OpenNebula's tm scripts name themselves on each line already
        job.log(line if line.startswith(f"{name}: ") else f"{name}: {line}")

    result = run_local([program, *arguments], job.cancelled, log, environment)
    if result.status != 0:
        raise OperationError(f"{name} exited with status {result.status}: {error_message(result.stderr)}")
