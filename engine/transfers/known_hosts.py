"""known_hosts read as OpenSSH reads it: plain lines, `@revoked` and `@cert-authority` markers, host patterns
(`*`, `?`, `!negation`, comma lists) and hashed names (`|1|salt|hash`); a line it cannot read is skipped.

paramiko's own loader stops at the first marker line (every host then failed with an internal error) and knows no
patterns. Here a revoked key is refused even where a plain line lists it, as OpenSSH does. Host certificates are
not checked (paramiko negotiates plain host keys only): a host that a `@cert-authority` line alone vouches for is
unknown, and the error says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko

REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"


@dataclass(frozen=True)
class KnownKey:
    patterns: tuple[str, ...]
    key: paramiko.PKey
    marker: str = ""  # "", REVOKED or CERT_AUTHORITY


def read_known_hosts(path: str) -> list[KnownKey]:
    """Every key line of the file (missing: none)."""
    from paramiko.hostkeys import HostKeyEntry

    entries = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        line = line.strip()
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
        if not line or line.startswith("#") or marker not in ("", REVOKED, CERT_AUTHORITY):
            continue
        try:
            entry = HostKeyEntry.from_line(line)
        except Exception:
            continue
        if entry is not None:
            entries.append(KnownKey(tuple(entry.hostnames), entry.key, marker))
    return entries


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        from paramiko import HostKeys

        return HostKeys.hash_host(name, pattern) == pattern
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name.lower()) is not None


def matches(patterns: tuple[str, ...], name: str) -> bool:
    """Whether a line's host patterns take in `name` (`host` or `[host]:port`): a matching negation excludes."""
    found = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if _pattern_matches(pattern[1:], name):
                return False
        elif _pattern_matches(pattern, name):
            found = True
    return found


@dataclass(frozen=True)
class KnownHosts:
    path: str
    entries: tuple[KnownKey, ...]

    @classmethod
    def load(cls, path: str) -> KnownHosts:
        return cls(path, tuple(read_known_hosts(path)))

    def _for(self, name: str, marker: str) -> list[paramiko.PKey]:
        return [e.key for e in self.entries if e.marker == marker and matches(e.patterns, name)]

    def revoked(self, name: str, key: paramiko.PKey) -> bool:
        return key in self._for(name, REVOKED)

    def trusted(self, name: str) -> list[paramiko.PKey]:
        """The keys plain lines list for `name`, revoked ones left out."""
        return [key for key in self._for(name, "") if not self.revoked(name, key)]

    def has_authority(self, name: str) -> bool:
        return bool(self._for(name, CERT_AUTHORITY))
