"""One host's image cache, worked through its endpoint: locks, publishing, copying out, listing, removing.

Every operation is a constant `sh -c` script taking its paths as arguments (as engine.transfers.endpoints' scripts
do), run the same way on this machine (a shared host) and over SSH, so there is one piece of code for both. The
names on disk and the rules for trusting an entry are engine.transfers.cache.layout's.

Locks are `flock`s on `.KEY.lock`, held by a command that waits on its stdin (Endpoint.hold): the lock lasts as
long as the holder's connection, so a head node killed mid-fetch releases it with its connection, and what it
left (`.KEY.part`) is never trusted. A lock file removed by an eviction while another waited for it is noticed
by the waiter (its open file is no longer the one named), which then locks the new one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from engine.errors import OperationError
from engine.transfers.cache.layout import LOCK_SUFFIX, BadSidecar, Entry, Listing, Sidecar, is_fetch_key, is_key
from engine.transfers.checksums import SHELL_FUNCTIONS, from_tool_output
from engine.transfers.endpoints import INSIDE, Endpoint, Held, failure_text


class LockMode(Enum):
    EXCLUSIVE = "-x"  # writing the entry (a fetch, a publish, a pin, a removal)
    SHARED = "-s"  # copying out of it
    TRY_EXCLUSIVE = "-xn"  # an eviction: an entry in use is skipped, never waited for


# $1 the cache directory, $2 the lock's key, $3 the flock mode. Header: `busy` (a TRY that failed), else `locked`
# and, when the entry KEY exists, its size and its sidecar's text. Then it holds the lock until stdin closes.
_LOCK = (
    'set -e; [ -d "$1" ] || mkdir -p -- "$1"; cd -- "$1"; l=".$2.lock"; '
    'while :; do if [ -L "$l" ]; then echo "$1/$l is a symbolic link" >&2; exit 4; fi; exec 9>>"$l"; '
    "if ! flock \"$3\" 9; then printf 'busy\\0'; exit 0; fi; "
    '[ "$(stat -L -c %i /dev/fd/9)" = "$(stat -c %i -- "$l" 2>/dev/null)" ] && break; exec 9>&-; done; '
    "printf 'locked\\n'; "
    'if [ -f "$2" ] && [ ! -L "$2" ] && [ -f "$2.json" ] && [ ! -L "$2.json" ]; then stat -c %s -- "$2"; '
    "cat -- \"$2.json\"; fi; printf '\\0'; exec cat >/dev/null"
)
# Publish (the caller holds KEY's lock): $1 the cache directory, $2 the part's name, $3 KEY, $4 the size, $5 the
# checksum's value, $6 the sidecar's text. The part is grown to its size (a trailing hole), checksummed where it
# lies, renamed to KEY only if both match (exit 3 and the checksum found otherwise), then the sidecar is written
# under a name of its own and renamed. Prints the checksum.
_PUBLISH = (
    'set -e; cd -- "$1"; if [ -L "$2" ] || [ ! -f "$2" ]; then echo "$1/$2 is not a file" >&2; exit 4; fi; '
    'truncate -s ">$4" -- "$2"; s=$(stat -c %s -- "$2"); if [ "$s" != "$4" ]; then echo "size $s"; exit 3; fi; '
    'h=$(checksum < "$2"); h=${h%% *}; if [ "$h" != "$5" ]; then echo "$h"; exit 3; fi; mv -T -- "$2" "$3"; '
    'j=".$3.json.$$.part"; rm -f -- "$j"; printf %s "$6" > "$j"; mv -T -- "$j" "$3.json"; echo "$h"'
)
# Rewrite an entry's sidecar (pin, unpin, last use): $1 the cache directory, $2 KEY, $3 the text.
_SIDECAR = (
    'set -e; cd -- "$1"; if [ ! -f "$2" ]; then echo "no entry $2" >&2; exit 3; fi; j=".$2.json.$$.part"; '
    'rm -f -- "$j"; printf %s "$3" > "$j"; mv -T -- "$j" "$2.json"'
)
# Remove an entry (the caller holds its lock): the sidecar first, so what is left is never trusted; its lock file
# last (a waiter notices, see the module's doc).
_REMOVE = 'cd -- "$1" && rm -f -- "$2.json" "$2" ".$2.part" && rm -f -- ".$2.lock"'
# Copy an entry out to a VM's file (the caller holds its lock, shared): $1 the VM directory, $2 the cache
# directory, $3 KEY, $4 the destination (a temporary name), $5 the checksum's value, $6 the sidecar's new text (its
# last use). A reflink where the file system has it, else a copy keeping holes (cp finds the data extents and
# writes zero blocks as holes); then the copy the VM will get is checksummed where it lies (just written, it is
# read from memory; a reflink shares the entry's blocks, so this reads the entry). A mismatch removes the copy,
# prints the checksum found and exits 3. Prints the size and the checksum.
_COPY_OUT = INSIDE + (
    'set -e; d="${4%/*}/"; inside "$1" "$d"; [ -d "$d" ] || mkdir -p -- "$d"; e="$2/$3"; '
    'if [ -L "$e" ] || [ ! -f "$e" ]; then echo "$e is not a file" >&2; exit 4; fi; '
    'if [ -e "$4" ] || [ -L "$4" ]; then rm -f -- "$4"; fi; cp --reflink=auto --sparse=always -- "$e" "$4"; '
    'h=$(checksum < "$4"); h=${h%% *}; if [ "$h" != "$5" ]; then rm -f -- "$4"; echo "$h"; exit 3; fi; '
    'j="$2/.$3.json.$$.part"; rm -f -- "$j"; printf %s "$6" > "$j"; mv -T -- "$j" "$e.json"; '
    'stat -c %s -- "$4"; echo "$h"'
)
# List the cache directory $1 as NUL-separated fields: `df` and df's last line; `F`, `TYPE SIZE` and the name of
# every entry in it; `J`, the name and the text of every sidecar; `B` and the name of every lock held now. Nothing
# when the directory does not exist.
_LIST = (
    'cd -- "$1" 2>/dev/null || exit 0; printf "df\\0%s\\0" "$(df -P -B1 -- . | tail -n 1)"; '
    "find . -mindepth 1 -maxdepth 1 -printf 'F\\0%y %s\\0%P\\0'; "
    'for j in *.json; do if [ -f "$j" ] && [ ! -L "$j" ]; then printf "J\\0%s\\0" "$j"; cat -- "$j"; '
    "printf '\\0'; fi; done; "
    'for l in .*.lock; do if [ -f "$l" ] && ! flock -n -x "$l" true 2>/dev/null; then printf "B\\0%s\\0" "$l"; fi; '
    "done"
)


@dataclass(frozen=True)
class LockState:
    """What a lock's holder found: whether it holds the lock, and the entry as it lies (None: no trusted entry)."""

    held: bool
    entry: Sidecar | None = None
    problem: str | None = None  # why an entry that lies there is not trusted


class CacheLock:
    """A held lock on one key of a host's cache (release() or a `with` block ends it)."""

    def __init__(self, held: Held, key: str) -> None:
        self._held = held
        header = held.header
        if header == "busy":
            self.state = LockState(False)
            return
        lines = header.removeprefix("locked\n")
        size_text, _, text = lines.partition("\n")
        if not size_text:
            self.state = LockState(True)
            return
        try:
            sidecar = Sidecar.from_json(text, key)
        except BadSidecar as exc:
            self.state = LockState(True, None, f"its sidecar is damaged: {exc}")
            return
        if not size_text.isdigit() or int(size_text) != sidecar.size:
            self.state = LockState(True, None, f"it holds {size_text} bytes, its sidecar says {sidecar.size}")
            return
        self.state = LockState(True, sidecar)

    def release(self) -> None:
        self._held.release()

    def __enter__(self) -> CacheLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class CopyMismatch(OperationError):
    """A copy out of the cache whose checksum was not its entry's: the entry is damaged."""


@dataclass(frozen=True)
class CopiedOut:
    size: int
    checksum: str


class HostCache:
    """The cache of one host at `directory`, reached through `endpoint` (the host's own endpoint: the cache's
    scripts confine themselves to the cache directory, the copy out to the VM directory)."""

    def __init__(self, endpoint: Endpoint, directory: str) -> None:
        self.endpoint = endpoint
        self.directory = directory
        self.host = endpoint.host

    def _run(self, script: str, *args: str, algorithm: str | None = None) -> tuple[int, str]:
        text = (SHELL_FUNCTIONS[algorithm] if algorithm else "") + script
        result = self.endpoint.execute(["sh", "-c", text, "sh", *args])
        if result.status not in (0, 3):
            raise OperationError(f"host {self.host.name}: cache: {failure_text(result, ['sh'])}")
        return result.status, result.stdout

    def lock(self, key: str, mode: LockMode, cancel: Callable[[], bool] = lambda: False) -> CacheLock:
        """Take the lock of `key` (an entry's key, or a fetch's: engine.transfers.cache.layout)."""
        held = self.endpoint.hold(["sh", "-c", _LOCK, "sh", self.directory, key, mode.value], cancel)
        return CacheLock(held, key)

    def publish(self, part: str, sidecar: Sidecar) -> None:
        """Make the file `part` (a name in the cache directory) the entry `sidecar` describes: verified where it
        lies, renamed, then the sidecar written. The caller holds the entry's lock, exclusive. OperationError if
        the part is not the entry's size and checksum (the part is left for the caller to remove)."""
        status, out = self._run(
            _PUBLISH,
            self.directory,
            part,
            sidecar.key,
            str(sidecar.size),
            sidecar.checksum.partition(":")[2],
            sidecar.to_json(),
            algorithm=sidecar.algorithm,
        )
        if status == 3:
            found = out.strip()
            raise OperationError(
                f"host {self.host.name}: the fetched image is not {sidecar.checksum} of {sidecar.size} bytes "
                f"({found if found.startswith('size') else f'{sidecar.algorithm}:{found}'}); not cached"
            )

    def write_sidecar(self, sidecar: Sidecar) -> None:
        """Rewrite an entry's sidecar (the caller holds its lock, exclusive)."""
        status, _ = self._run(_SIDECAR, self.directory, sidecar.key, sidecar.to_json())
        if status == 3:
            raise OperationError(f"host {self.host.name}: no cache entry {sidecar.key}")

    def remove(self, key: str) -> None:
        """Remove an entry and what lies beside it (the caller holds its lock, exclusive)."""
        if not is_key(key) and not is_fetch_key(key):
            raise ValueError(f"not a cache key: {key!r}")
        self._run(_REMOVE, self.directory, key)

    def remove_name(self, name: str) -> None:
        """Remove one file of the cache directory by name (a left-over part)."""
        self._run('cd -- "$1" && rm -f -- "$2"', self.directory, posixpath.basename(name))

    def copy_out(self, sidecar: Sidecar, dest: str) -> CopiedOut:
        """Copy the entry to `dest` (a temporary name in the VM directory), checksummed where it lies; its last use
        is recorded. CopyMismatch when the copy is not the entry's checksum (the copy is removed). The caller
        holds the entry's lock (shared or exclusive)."""
        used = sidecar.used()
        value = sidecar.checksum.partition(":")[2]
        status, out = self._run(
            _COPY_OUT,
            self.endpoint.host.vm_dir,
            self.directory,
            sidecar.key,
            dest,
            value,
            used.to_json(),
            algorithm=sidecar.algorithm,
        )
        lines = out.split()
        if status == 3:
            found = from_tool_output(sidecar.algorithm, lines[0] if lines else "")
            raise CopyMismatch(f"host {self.host.name}: cache entry {sidecar.key} reads back as {found}")
        checksum = from_tool_output(sidecar.algorithm, lines[1] if len(lines) > 1 else "")
        if checksum is None or not lines[0].isdigit():
            raise OperationError(f"host {self.host.name}: the copy out of the cache printed {out!r}")
        return CopiedOut(int(lines[0]), checksum)

    def listing(self, budget: Callable[[int, int], int]) -> Listing:
        """The host's entries as they lie, and what else is there; `budget(free, usage)` gives its budget."""
        _, out = self._run(_LIST, self.directory)
        fields = out.split("\0")
        free = 0
        files: dict[str, tuple[str, int]] = {}
        sidecars: dict[str, str] = {}
        busy: set[str] = set()
        i = 0
        while i < len(fields):
            tag = fields[i]
            if tag == "df" and i + 1 < len(fields):
                words = fields[i + 1].split()
                free = int(words[3]) if len(words) > 3 and words[3].isdigit() else 0
                i += 2
            elif tag == "F" and i + 2 < len(fields):
                kind, _, size = fields[i + 1].partition(" ")
                files[fields[i + 2]] = (kind, int(size) if size.isdigit() else 0)
                i += 3
            elif tag == "J" and i + 2 < len(fields):
                sidecars[fields[i + 1]] = fields[i + 2]
                i += 3
            elif tag == "B" and i + 1 < len(fields):
                busy.add(fields[i + 1])
                i += 2
            else:
                i += 1
        entries: list[Entry] = []
        trusted_names: set[str] = set()
        for name, (kind, length) in sorted(files.items()):
            if not is_key(name) or kind != "f":
                continue
            text = sidecars.get(f"{name}.json")
            if text is None:
                continue
            try:
                sidecar = Sidecar.from_json(text, name)
            except BadSidecar:
                continue
            if sidecar.size != length:
                continue
            path = posixpath.join(self.directory, name)
            entries.append(Entry(self.host.name, path, sidecar, f".{name}{LOCK_SUFFIX}" in busy))
            trusted_names.update((name, f"{name}.json", f".{name}.lock"))
        untrusted = sorted(n for n in files if n not in trusted_names and not _lock_file(n))
        usage = sum(e.sidecar.size for e in entries)
        return Listing(self.host.name, self.directory, entries, untrusted, budget(free, usage), free)


def _lock_file(name: str) -> bool:
    """A lock file of an entry being written (or left by one, empty): no damage to list."""
    return name.startswith(".") and name.endswith(LOCK_SUFFIX)
