"""A host cache's budget, and eviction down to it: least recently used first, never a pinned entry, never one in
use (its lock is held: being written or copied out). Every eviction is logged.

The budget is the host's `cache_max_mb`, else the configuration's CACHE_MAX_MB, else CACHE_FREE_PERCENT (25) of
the space the cache could have: what its file system has free plus what the cache holds (a cache that grows would
otherwise shrink its own budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import InputError, Problem
from engine.home import Home
from engine.language.numbers import whole_number
from engine.presentation import age_text, size_text
from engine.transfers.cache.host_cache import HostCache, LockMode
from engine.transfers.cache.layout import Entry
from engine.transfers.hosts import Host

MIB = 1 << 20
DEFAULT_FREE_PERCENT = 25


@dataclass(frozen=True)
class BudgetRule:
    """How a host's budget is found: a fixed size in bytes, or a percentage of the space the cache could have."""

    fixed: int | None
    percent: int

    def __call__(self, free: int, usage: int) -> int:
        return self.fixed if self.fixed is not None else (free + usage) * self.percent // 100

    def text(self) -> str:
        return size_text(self.fixed) if self.fixed is not None else f"{self.percent}% of free space"


def budget_rule(home: Home, host: Host) -> BudgetRule:
    """The host's budget rule; InputError naming the configuration's line when its setting is not a number."""
    if host.cache_max_mb is not None:
        return BudgetRule(host.cache_max_mb * MIB, DEFAULT_FREE_PERCENT)
    template = home.config.template
    problems = []
    values: dict[str, int | None] = {}
    for name, most in (("CACHE_MAX_MB", None), ("CACHE_FREE_PERCENT", 100)):
        raw = template.get(name) or ""
        value = values[name] = whole_number(raw) if raw else None
        if raw and (value is None or (most is not None and value > most)):
            line = template.all(name)[0].line
            problems.append(
                Problem(
                    f"{name} must be a whole number{'' if most is None else f' up to {most}'}, not {raw!r}",
                    str(home.config_path),
                    line,
                )
            )
    if problems:
        raise InputError(problems)
    fixed = values["CACHE_MAX_MB"]
    percent = values["CACHE_FREE_PERCENT"]
    return BudgetRule(None if fixed is None else fixed * MIB, DEFAULT_FREE_PERCENT if percent is None else percent)


@dataclass(frozen=True)
class Eviction:
    """What an eviction did (or, dry, would do)."""

    host: str
    evicted: list[Entry]
    skipped: list[Entry]  # wanted out but pinned or in use
    usage: int  # after
    budget: int


def lru_order(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.sidecar.last_used, e.key))


def evict_to_budget(
    cache: HostCache,
    rule: Callable[[int, int], int],
    log: Callable[[str], None],
    spare: str | None = None,
) -> Eviction:
    """Evict least recently used entries until the cache is within its budget, sparing the entry `spare`."""
    listing = cache.listing(rule)
    over = listing.usage - listing.budget
    evicted: list[Entry] = []
    skipped: list[Entry] = []
    for entry in lru_order(listing.entries):
        if over <= 0:
            break
        if entry.key == spare:
            continue
        if entry.sidecar.pinned or entry.busy or not remove_entry(cache, entry):
            skipped.append(entry)
            continue
        over -= entry.sidecar.size
        evicted.append(entry)
        log(
            f"cache: evicted {entry.key} ({entry.sidecar.source}, {size_text(entry.sidecar.size)}, last used "
            f"{age_text(entry.sidecar.last_used)}) from {cache.host.name}: over its budget of "
            f"{size_text(listing.budget)}"
        )
    if over > 0:
        log(
            f"cache: {cache.host.name}'s cache holds {size_text(over)} more than its budget of "
            f"{size_text(listing.budget)}: the rest is pinned, in use or just fetched"
        )
    return Eviction(
        cache.host.name, evicted, skipped, listing.usage - sum(e.sidecar.size for e in evicted), listing.budget
    )


def remove_entry(cache: HostCache, entry: Entry) -> bool:
    """Remove an entry unless it is in use or pinned now (its lock taken without waiting); whether it went."""
    with cache.lock(entry.key, LockMode.TRY_EXCLUSIVE) as lock:
        if not lock.state.held or (lock.state.entry is not None and lock.state.entry.pinned):
            return False
        cache.remove(entry.key)
        return True
