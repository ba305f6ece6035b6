"""What the hosts' caches hold, and the admin's hand on them: list, evict, pin and unpin (the CLI's `headnode
cache` and the console's Images screen both call these).

An entry is named by its key (`cksum-123`), its checksum (`cksum:123`), or its source as the image script wrote it
(`fe:/images/a.img`, a URL) or its path alone. Evicting every entry of a host (none named) keeps the pinned ones;
a pinned entry named goes. An entry in use (being copied out or written) is never removed: it is reported.
Evictions are logged to the home's transfers log.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from engine.errors import HeadnodeError, InputError, OperationError, Problem
from engine.presentation import size_text
from engine.transfers.cache.eviction import budget_rule, remove_entry
from engine.transfers.cache.host_cache import LockMode
from engine.transfers.cache.layout import Entry, Listing
from engine.transfers.log import TransferLog

if TYPE_CHECKING:
    from engine.transfers.actions import Transfers


@dataclass(frozen=True)
class CacheReport:
    """One host's cache as found: its listing, or why it could not be read."""

    host: str
    caches: bool  # whether CLONEs to the host go through it (its driver's CACHE, its budget not 0)
    budget_rule: str
    listing: Listing | None = None
    error: str | None = None


def cached_hosts(transfers: Transfers) -> list[str]:
    """The hosts that keep an image cache (their driver's CACHE, a budget above 0), the front end excluded."""
    names = []
    for host in transfers.hosts.list():
        try:
            if transfers.caches(transfers.hosts.resolve(host.name)):
                names.append(host.name)
        except InputError:
            continue  # a driver whose conf is broken: `host test` and the runs say so
    return names


def cache_reports(transfers: Transfers, hosts: Sequence[str] | None = None) -> list[CacheReport]:
    """Each host's cache, read in parallel; `hosts` None: every host that keeps one (cached_hosts)."""
    names = list(hosts) if hosts is not None else cached_hosts(transfers)
    for name in names:
        transfers.hosts.resolve(name)  # an unknown host is bad input, before anything is read

    def report(name: str) -> CacheReport:
        host = transfers.hosts.resolve(name)
        rule = budget_rule(transfers.home, host)
        caches = transfers.caches(host)
        try:
            listing = transfers.host_cache(name).listing(rule)
        except HeadnodeError as exc:
            return CacheReport(name, caches, rule.text(), error=str(exc))
        return CacheReport(name, caches, rule.text(), listing)

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        return list(pool.map(report, names))


def matches(entry: Entry, what: str) -> bool:
    source = entry.sidecar.source
    return what in (entry.key, entry.sidecar.checksum, source) or source.partition(":")[2] == what


def chosen(listing: Listing, what: str | None) -> list[Entry]:
    """The entries `what` names (every entry when None); OperationError when it names none."""
    if what is None:
        return list(listing.entries)
    found = [entry for entry in listing.entries if matches(entry, what)]
    if not found:
        raise OperationError(
            f"host {listing.host} has no cache entry {what} (see 'headnode cache list {listing.host}')"
        )
    return found


@dataclass(frozen=True)
class EvictOutcome:
    host: str
    evicted: list[Entry] = field(default_factory=list)
    kept: list[tuple[Entry, str]] = field(default_factory=list)  # with why: pinned, in use
    dry_run: bool = False


def evict(transfers: Transfers, host: str, what: str | None = None, dry_run: bool = False) -> EvictOutcome:
    """Remove the entries `what` names from the host's cache (every unpinned one when None); with dry_run only
    say what would go."""
    listing = _listing(transfers, host)
    outcome = EvictOutcome(host, dry_run=dry_run)
    for entry in chosen(listing, what):
        if entry.sidecar.pinned and what is None:
            outcome.kept.append((entry, "pinned"))
        elif entry.busy:
            outcome.kept.append((entry, "in use"))
        elif dry_run:
            outcome.evicted.append(entry)
        elif _removed(transfers, host, entry):
            outcome.evicted.append(entry)
            TransferLog(transfers.home, None).write(
                f"cache: evicted {entry.key} ({entry.sidecar.source}, {size_text(entry.sidecar.size)}) from {host} "
                "(cache evict)"
            )
        else:
            outcome.kept.append((entry, "in use"))
    return outcome


def _removed(transfers: Transfers, host: str, entry: Entry) -> bool:
    cache = transfers.host_cache(host)
    if not entry.sidecar.pinned:
        return remove_entry(cache, entry)
    with cache.lock(entry.key, LockMode.TRY_EXCLUSIVE) as lock:  # named explicitly: a pinned entry goes too
        if not lock.state.held:
            return False
        cache.remove(entry.key)
        return True


def pin(transfers: Transfers, host: str, what: str, pinned: bool) -> list[Entry]:
    """Pin (or unpin) the entries `what` names; their sidecars are rewritten under their locks."""
    listing = _listing(transfers, host)
    cache = transfers.host_cache(host)
    done = []
    for entry in chosen(listing, what):
        with cache.lock(entry.key, LockMode.EXCLUSIVE) as lock:
            current = lock.state.entry
            if current is None:
                raise OperationError(f"host {host}: cache entry {entry.key} went while it was being pinned")
            if current.pinned != pinned:
                cache.write_sidecar(replace(current, pinned=pinned))
            done.append(replace(entry, sidecar=replace(current, pinned=pinned)))
    return done


def _listing(transfers: Transfers, host: str) -> Listing:
    if not host:
        raise InputError(Problem("name a host"))
    return transfers.host_cache(host).listing(budget_rule(transfers.home, transfers.hosts.resolve(host)))
