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

import contextlib
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from engine.errors import OperationError
from engine.language.numbers import whole_number
from engine.transfers.cache.layout import (
    LOCK_SUFFIX,
    BadSidecar,
    Entry,
    EntryPaths,
    Listing,
    Sidecar,
    is_fetch_key,
    is_key,
    key_checksum,
)
from engine.transfers.checksums import SHELL_FUNCTIONS, from_tool_output
from engine.transfers.endpoints import INSIDE, Endpoint, Held, failure_text


class LockMode(Enum):
    EXCLUSIVE = "-x"  # writing the entry (a fetch, a publish, a pin, a removal)
    SHARED = "-s"  # copying out of it
    # An eviction: an entry in use is skipped, not waited for; but a holder of a moment (a listing's look at the
    # lock, a last use recorded) is waited out, or an eviction beside a refreshing screen skipped it as "in use".
    TRY_EXCLUSIVE = "-xw2"


# Take the lock of key $3 in the cache directory $2 (made if missing) with flock mode $4, as fd 9; a lock file
# removed meanwhile (an eviction) is noticed and the new one locked. Prints `busy` and exits where a TRY fails.
_TAKE = (
    '[ -d "$2" ] || mkdir -p -- "$2" || exit 1; cd -- "$2" || exit 1; l=".$3.lock"; '
    'while :; do if [ -L "$l" ]; then echo "$2/$l is a symbolic link" >&2; exit 4; fi; exec 9>>"$l"; '
    "if ! flock \"$4\" 9; then printf 'busy\\0'; exit 0; fi; "
    '[ "$(stat -L -c %i /dev/fd/9)" = "$(stat -c %i -- "$l" 2>/dev/null)" ] && break; exec 9>&-; done; '
)
# Whether the entry $3 lies whole in the current (cache) directory: its image and its sidecar, plain files.
_WHOLE = '[ -f "$3" ] && [ ! -L "$3" ] && [ -f "$3.json" ] && [ ! -L "$3.json" ]'
# copyout VM_DIR ENTRY DEST VALUE: copy an entry to DEST (a temporary name in the VM directory): a reflink where
# the file system has it, else a copy keeping holes (cp copies the data extents in the kernel: an entry's zero
# blocks are holes already, as every receiver writes them);
# then the copy the VM will get is checksummed where it lies (just written, it is read from memory; a reflink
# shares the entry's blocks, so this reads the entry). Prints `copied SIZE CHECKSUM`, or `mismatch CHECKSUM`
# after removing a copy that is not VALUE; a verified copy is renamed to $final when the script set one (the
# VM's file: placed in the same command). used KEY TIME: record the entry's last use in its sidecar.
_FUNCTIONS = INSIDE + (
    'copyout() { d="${3%/*}/"; inside "$1" "$d"; { [ -d "$d" ] || mkdir -p -- "$d"; } || exit 1; '
    'if [ -L "$2" ] || [ ! -f "$2" ]; then echo "$2 is not a file" >&2; exit 4; fi; '
    'if [ -e "$3" ] || [ -L "$3" ]; then rm -f -- "$3" || exit 1; fi; '
    'cp --reflink=auto --sparse=auto -- "$2" "$3" || exit 1; h=$(checksum < "$3") || exit 1; h=${h%% *}; '
    'if [ "$h" != "$4" ]; then rm -f -- "$3"; echo "mismatch $h"; return 0; fi; n=$(stat -c %s -- "$3"); '
    'if [ -n "$final" ]; then mv -T -- "$3" "$final" || exit 1; fi; echo "copied $n $h"; '
    "}; "
    'used() { j=".$1.json.$$.part"; sed -E "s/\\"last_used\\": [0-9.eE+-]+/\\"last_used\\": $2/" -- "$1.json" > "$j" '
    '&& mv -T -- "$j" "$1.json"; }; '
)
# What the cache holds, for its budget: a line with the free bytes of its file system (df's fourth column), a line
# with the size of every whole entry.
_USAGE = (
    "df -P -B1 -- . | tail -n 1; "
    'for f in cksum-* sha256-*; do if [ -f "$f" ] && [ -f "$f.json" ]; then printf "%s " "$(stat -c %s -- "$f")"; '
    "fi; done; echo; "
)
# A hit, or the lock for a miss, in one command: $1 the VM directory, $2 the cache directory, $3 KEY, $4 the
# destination (empty: a warm, nothing copied), $5 KEY's value, $6 the time now, $7 the VM's file the copy is
# renamed to (empty: it stays at $4). Locks KEY shared and prints the
# usage; when the entry lies whole, copyout's line (`present SIZE VALUE` without a destination), the sidecar's text
# (its use recorded) and a NUL, and ends. Otherwise (no entry, or its copy did not checksum as KEY: `mismatch`) it
# turns the lock exclusive, looks again (another deploy may have fetched it meanwhile), and prints `locked` and its
# findings, a NUL, and holds the lock for the fetch until its stdin closes. `retry`: the lock file went meanwhile.
_CLAIM = (
    _FUNCTIONS
    + 'final=$7; hit() { if [ -z "$4" ]; then r="present $(stat -c %s -- "$3") $5"; '
    + 'else r=$(copyout "$1" "$2/$3" "$4" "$5"); '
    + 'fi; echo "$r"; case "$r" in copied*|present*) cat -- "$3.json"; used "$3" "$6" || :; return 0;; esac; '
    + "return 1; }; "
    + _TAKE.replace('"$4" 9', "-s 9")
    + _USAGE
    + "if "
    + _WHOLE
    + "; then if hit \"$@\"; then printf '\\0'; exit 0; fi; else echo miss; fi; "
    + "flock -x 9 || exit 1; "
    + '[ "$(stat -L -c %i /dev/fd/9)" = "$(stat -c %i -- ".$3.lock" 2>/dev/null)" ] || { printf "retry\\0"; exit 0; }; '
    + "echo locked; if "
    + _WHOLE
    + '; then case "$r" in mismatch*) ;; *) if hit "$@"; then printf '
    "'\\0'"
    "; exit 0; fi;; esac; fi; " + "printf '\\0'; exec cat >/dev/null"
)
# Hold a lock: $1 unused, $2 the cache directory, $3 the key, $4 the mode. Header: `busy` (a TRY that failed),
# else `locked`, the usage and, when the entry KEY lies whole, its size and its sidecar's text. Then it holds the
# lock until its stdin closes.
_LOCK = (
    _TAKE
    + "printf 'locked\\n'; "
    + _USAGE
    + "if "
    + _WHOLE
    + '; then stat -c %s -- "$3"; cat -- "$3.json"; fi; printf \'\\0\'; exec cat >/dev/null'
)
# Publish (the caller holds KEY's lock): $1 the VM directory, $2 the cache directory, $3 the part's name, $4 KEY,
# $5 the size, $6 the checksum's value, $7 the sidecar's text, $8 where to copy the entry out to (empty: nowhere),
# $9 the VM's file that copy is renamed to (empty: none).
# The part is grown to its size (a trailing hole), checksummed where it lies, renamed to KEY only if both match
# (else `mismatch` and what was found, exit 3), then the sidecar is written under a name of its own and renamed;
# prints `published CHECKSUM`, copyout's line (with $8; else an empty line), and the usage after.
_PUBLISH = (
    _FUNCTIONS
    + (
        'final=$9; cd -- "$2" || exit 1; '
        'if [ -L "$3" ] || [ ! -f "$3" ]; then echo "$2/$3 is not a file" >&2; exit 4; fi; '
        'truncate -s ">$5" -- "$3" || exit 1; s=$(stat -c %s -- "$3"); '
        'if [ "$s" != "$5" ]; then echo "mismatch size $s"; exit 3; fi; '
        'h=$(checksum < "$3") || exit 1; h=${h%% *}; if [ "$h" != "$6" ]; then echo "mismatch $h"; exit 3; fi; '
        'mv -T -- "$3" "$4" || exit 1; j=".$4.json.$$.part"; rm -f -- "$j"; printf %s "$7" > "$j" && '
        'mv -T -- "$j" "$4.json" || exit 1; echo "published $h"; if [ -n "$8" ]; then copyout "$1" "$2/$4" "$8" "$6"; '
        "else echo; fi; "
    )
    + _USAGE
)
# Copy an entry out (the caller holds its lock): $1 the VM directory, $2 the cache directory, $3 KEY, $4 the
# destination, $5 KEY's value, $6 the time now, $7 the VM's file it is renamed to (empty: none).
_COPY_OUT = _FUNCTIONS + (
    'final=$7; cd -- "$2" || exit 1; r=$(copyout "$1" "$2/$3" "$4" "$5"); echo "$r"; '
    'case "$r" in copied*) used "$3" "$6" || :;; esac'
)
# Rewrite an entry's sidecar (pin, unpin): $1 the cache directory, $2 KEY, $3 the text.
_SIDECAR = (
    'set -e; cd -- "$1"; if [ ! -f "$2" ]; then echo "no entry $2" >&2; exit 3; fi; j=".$2.json.$$.part"; '
    'rm -f -- "$j"; printf %s "$3" > "$j"; mv -T -- "$j" "$2.json"'
)
# Remove an entry (the caller holds its lock): the sidecar first, so what is left is never trusted; its lock file
# last (a waiter notices, see _TAKE), unless the caller keeps it ($3 = keep: a damaged entry fetched again).
_REMOVE = 'cd -- "$1" && rm -f -- "$2.json" "$2" ".$2.part" && if [ "$3" != keep ]; then rm -f -- ".$2.lock"; fi'
# List the cache directory $1 as NUL-separated fields: `df` and df's last line; `F`, `TYPE SIZE` and the name of
# every entry in it; `J`, the name and the text of every sidecar; `B` and the name of every lock held longer than a
# moment (another listing's look holds one for a moment). Nothing when the directory does not exist.
_LIST = (
    'cd -- "$1" 2>/dev/null || exit 0; printf "df\\0%s\\0" "$(df -P -B1 -- . | tail -n 1)"; '
    "find . -mindepth 1 -maxdepth 1 -printf 'F\\0%y %s\\0%P\\0'; "
    'for j in *.json; do if [ -f "$j" ] && [ ! -L "$j" ]; then printf "J\\0%s\\0" "$j"; cat -- "$j"; '
    "printf '\\0'; fi; done; "
    'for l in .*.lock; do if [ -f "$l" ] && ! flock -w 0.5 -x "$l" true 2>/dev/null; then printf "B\\0%s\\0" "$l"; fi; '
    "done"
)


@dataclass(frozen=True)
class Usage:
    """What a host's cache holds and what its file system has free, in bytes."""

    free: int
    used: int


def _usage(lines: list[str]) -> Usage:
    """The usage from _USAGE's two lines."""
    words = lines[0].split() if lines else []
    free = (whole_number(words[3]) if len(words) > 3 else None) or 0
    sizes = lines[1].split() if len(lines) > 1 else []
    return Usage(free, sum(whole_number(size) or 0 for size in sizes))


def _trusted(size_text: str, text: str, key: str) -> tuple[Sidecar | None, str | None]:
    """The entry's sidecar if the entry can be trusted (its sidecar parses, names it, and gives its size), else
    why not."""
    try:
        sidecar = Sidecar.from_json(text, key)
    except BadSidecar as exc:
        return None, f"its sidecar is damaged: {exc}"
    if whole_number(size_text) != sidecar.size:
        return None, f"it holds {size_text} bytes, its sidecar says {sidecar.size}"
    return sidecar, None


@dataclass(frozen=True)
class LockState:
    """What a lock's holder found: whether it holds the lock, the entry as it lies (None: no trusted entry), and
    the cache's usage."""

    held: bool
    entry: Sidecar | None = None
    problem: str | None = None  # why an entry that lies there is not trusted
    usage: Usage = Usage(0, 0)


class CacheLock:
    """A held lock on one key of a host's cache (release() or a `with` block ends it)."""

    def __init__(self, held: Held, key: str, usage: Usage | None = None) -> None:
        self._held = held
        if usage is not None:  # a claim's: it reported what it found itself
            self.state = LockState(True, usage=usage)
            return
        if held.header == "busy":
            self.state = LockState(False)
            return
        lines = held.header.removeprefix("locked\n").split("\n", 3)
        usage = _usage(lines[:2])
        if len(lines) < 3 or not lines[2]:
            self.state = LockState(True, usage=usage)
            return
        sidecar, problem = _trusted(lines[2], lines[3] if len(lines) > 3 else "", key)
        self.state = LockState(True, sidecar, problem, usage)

    def alive(self) -> bool:
        """Whether the lock is still held: its holder's connection may have dropped (a fetch that retried)."""
        return self._held.alive()

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


@dataclass(frozen=True)
class Published:
    """A published entry: the cache's usage after it, and the copy out, when one was asked for."""

    usage: Usage
    copied: CopiedOut | None = None


@dataclass(frozen=True)
class Claim:
    """What a claim on an entry found: the entry copied out (`copied`, a hit; `waited` when another's fetch of it
    ended while this waited), or the entry's lock held exclusive for a fetch (`lock`), and the cache's usage."""

    usage: Usage
    copied: CopiedOut | None = None
    entry: Sidecar | None = None
    waited: bool = False
    lock: CacheLock | None = None
    damaged: bool = False  # an entry lay there but cannot be trusted: drop it, fetch again (`problem` says why)
    problem: str | None = None


class HostCache:
    """The cache of one host at `directory`, reached through `endpoint` (the host's own endpoint: the cache's
    scripts confine themselves to the cache directory, the copy out to the VM directory)."""

    def __init__(self, endpoint: Endpoint, directory: str) -> None:
        self.endpoint = endpoint
        self.directory = directory
        self.host = endpoint.host

    def paths(self, key: str) -> EntryPaths:
        return EntryPaths(self.directory, key)

    def _run(self, script: str, *args: str, algorithm: str | None = None) -> tuple[int, str]:
        text = (SHELL_FUNCTIONS[algorithm] if algorithm else "") + script
        result = self.endpoint.execute(["sh", "-c", text, "sh", *args])
        if result.status not in (0, 3):
            raise OperationError(f"host {self.host.name}: cache: {failure_text(result, ['sh'])}")
        return result.status, result.stdout

    def lock(self, key: str, mode: LockMode, cancel: Callable[[], bool] = lambda: False) -> CacheLock:
        """Take the lock of `key` (an entry's key, or a fetch's: engine.transfers.cache.layout)."""
        argv = ["sh", "-c", _LOCK, "sh", "", self.directory, key, mode.value]
        return CacheLock(self.endpoint.hold(argv, cancel), key)

    def claim(
        self, key: str, dest: str | None, cancel: Callable[[], bool] = lambda: False, final: str | None = None
    ) -> Claim:
        """Copy the entry `key` out to `dest` (a temporary name in the VM directory) if it lies whole, else hold
        its lock exclusive for a fetch: one command either way (_CLAIM). The copy is checksummed where it lies,
        renamed to `final` when given, and its use recorded; with no `dest`, only whether the entry lies whole (a
        warm)."""
        algorithm, _, value = key_checksum(key).partition(":")
        argv = [
            "sh",
            "-c",
            SHELL_FUNCTIONS[algorithm] + _CLAIM,
            "sh",
            self.host.vm_dir,
            self.directory,
            key,
            dest or "",
            value,
            f"{time.time():.3f}",
            final or "",
        ]
        while True:
            held = self.endpoint.hold(argv, cancel)
            if held.header != "retry":
                break
            held.release()
        lines = held.header.split("\n")
        usage = _usage(lines[:2])
        found, rest = (lines[2] if len(lines) > 2 else ""), lines[3:]
        waited = bool(rest) and rest[0] == "locked"
        if waited and not found.startswith("mismatch"):  # what it found once the lock was its own
            found, rest = (rest[1] if len(rest) > 1 else ""), rest[2:]
        words = found.split()
        if words and words[0] in ("copied", "present"):
            held.release()  # the command has ended: the copy is made
            copied = _copied_line(["copied", *words[1:]], algorithm, self.host.name)
            sidecar, problem = _trusted(str(copied.size), "\n".join(rest), key)
            if sidecar is not None:
                return Claim(usage, copied=copied, entry=sidecar, waited=waited)
            if dest:  # the bytes are right, its record is not: fetched again, under the lock taken now
                with contextlib.suppress(Exception):
                    self.remove_name(dest, self.host.vm_dir)
            return Claim(usage, lock=self.lock(key, LockMode.EXCLUSIVE, cancel), damaged=True, problem=problem)
        lock = CacheLock(held, key, usage)
        if words and words[0] == "mismatch":
            return Claim(usage, lock=lock, damaged=True, problem=f"a copy of it reads as {algorithm}:{words[-1]}")
        return Claim(usage, lock=lock)

    def publish(self, part: str, sidecar: Sidecar, copy_to: str | None = None, final: str | None = None) -> Published:
        """Make the file `part` (a name in the cache directory) the entry `sidecar` describes: verified where it
        lies, renamed, then the sidecar written; and, with `copy_to`, copy the entry out there (as copy_out) in the
        same command. The caller holds the entry's lock, exclusive. OperationError if the part is not the entry's
        size and checksum (the part is left for the caller to remove); CopyMismatch if the copy out is not."""
        status, out = self._run(
            _PUBLISH,
            self.host.vm_dir,
            self.directory,
            part,
            sidecar.key,
            str(sidecar.size),
            sidecar.checksum.partition(":")[2],
            sidecar.to_json(),
            copy_to or "",
            final or "",
            algorithm=sidecar.algorithm,
        )
        lines = out.splitlines()
        if status == 3:
            found = lines[0].removeprefix("mismatch ") if lines else "?"
            raise OperationError(
                f"host {self.host.name}: the fetched image is not {sidecar.checksum} of {sidecar.size} bytes "
                f"({found if found.startswith('size') else f'{sidecar.algorithm}:{found}'}); not cached"
            )
        usage = _usage(lines[2:4])
        if copy_to is None:
            return Published(usage)
        return Published(usage, self._copied(lines[1].split() if len(lines) > 1 else [], sidecar))

    def _copied(self, words: list[str], sidecar: Sidecar) -> CopiedOut:
        if words and words[0] == "mismatch":
            found = f"{sidecar.algorithm}:{words[-1]}"
            raise CopyMismatch(f"host {self.host.name}: cache entry {sidecar.key} reads back as {found}")
        return _copied_line(words, sidecar.algorithm, self.host.name)

    def copy_out(self, sidecar: Sidecar, dest: str, final: str | None = None) -> CopiedOut:
        """Copy the entry to `dest` (a temporary name in the VM directory), checksummed where it lies; its last use
        is recorded. CopyMismatch when the copy is not the entry's checksum (the copy is removed). The caller
        holds the entry's lock (shared or exclusive)."""
        value = sidecar.checksum.partition(":")[2]
        when = f"{time.time():.3f}"
        args = (self.host.vm_dir, self.directory, sidecar.key, dest, value, when, final or "")
        _, out = self._run(_COPY_OUT, *args, algorithm=sidecar.algorithm)
        return self._copied(out.split(), sidecar)

    def write_sidecar(self, sidecar: Sidecar) -> None:
        """Rewrite an entry's sidecar (the caller holds its lock, exclusive)."""
        status, _ = self._run(_SIDECAR, self.directory, sidecar.key, sidecar.to_json())
        if status == 3:
            raise OperationError(f"host {self.host.name}: no cache entry {sidecar.key}")

    def remove(self, key: str, keep_lock: bool = False) -> None:
        """Remove an entry and what lies beside it (the caller holds its lock, exclusive); with `keep_lock` its
        lock file stays (a damaged entry about to be fetched again under that lock)."""
        if not is_key(key) and not is_fetch_key(key):
            raise ValueError(f"not a cache key: {key!r}")
        self._run(_REMOVE, self.directory, key, "keep" if keep_lock else "")

    def remove_name(self, name: str, directory: str | None = None) -> None:
        """Remove one file by name from the cache directory (a left-over part), or from `directory`."""
        self._run('cd -- "$1" && rm -f -- "$2"', directory or self.directory, posixpath.basename(name))

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
                free = (whole_number(words[3]) if len(words) > 3 else None) or 0
                i += 2
            elif tag == "F" and i + 2 < len(fields):
                kind, _, size = fields[i + 1].partition(" ")
                files[fields[i + 2]] = (kind, whole_number(size) or 0)
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


def _copied_line(words: list[str], algorithm: str, host: str) -> CopiedOut:
    """copyout's `copied SIZE VALUE`."""
    checksum = from_tool_output(algorithm, words[2] if len(words) > 2 else "")
    if len(words) < 3 or words[0] != "copied" or whole_number(words[1]) is None or checksum is None:
        raise OperationError(f"host {host}: the copy out of the cache printed {' '.join(words)!r}")
    return CopiedOut(whole_number(words[1]) or 0, checksum)


def _lock_file(name: str) -> bool:
    """A lock file of an entry being written (or left by one, empty): no damage to list."""
    return name.startswith(".") and name.endswith(LOCK_SUFFIX)
