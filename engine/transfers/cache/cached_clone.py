"""A CLONE through the destination host's image cache: a hit copies on the host, a miss fetches once.

Hit: the entry is locked shared and copied out to the VM's file on the host (HostCache.copy_out); nothing crosses
the link. A copy that does not checksum as its entry drops the entry (logged) and goes on as a miss. Miss: the key
is locked exclusive (a second deploy of the image to the host waits here, then finds the entry: one fetch), the
image is fetched into the part (the CLONE's own copy machinery, verified end to end), published (verified where it
lies, renamed, sidecar written) and copied out under the same lock. Then the host's cache is evicted down to its
budget. An image known to be larger than the budget is not cached: the CLONE copies it as without a cache.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from engine.errors import OperationError
from engine.presentation import size_text
from engine.transfers.cache.host_cache import CacheLock, CopiedOut, HostCache, LockMode, Usage
from engine.transfers.cache.layout import Sidecar, Validators, entry_key, fetch_key
from engine.transfers.job import Job


class CacheUse(Enum):
    HIT = "hit"  # copied on the host from its cache
    WAITED = "waited"  # another deploy fetched it meanwhile: a hit after waiting for it
    MISS = "miss"  # fetched into the cache, then copied on the host
    REFETCHED = "refetched"  # the entry was damaged: dropped, fetched again


@dataclass(frozen=True)
class CacheSource:
    """An image as the cache knows it before fetching: its name (as the image script wrote it) and, when known,
    its checksum and size (a front-end file's from the memo; an HTTP source's when its validators are known)."""

    name: str
    checksum: str | None
    size: int | None
    validators: Validators | None = None


@dataclass(frozen=True)
class CachePlan:
    """What a CLONE would do through a host's cache, said before it runs (a dry run): whether it is a hit (None:
    not known yet: the image's checksum is not taken) and the bytes it would send across the link (None: not
    known before it starts, as a download's)."""

    host: str
    key: str | None
    hit: bool | None
    over_link: int | None
    bypass: bool = False  # larger than the budget: copied as without a cache


@dataclass(frozen=True)
class Fetched:
    """What a fetch into the cache copied: the size, its checksum, what crossed the link, how."""

    size: int
    checksum: str
    sent: int
    detail: str
    validators: Validators | None = None


@dataclass(frozen=True)
class CachedClone:
    use: CacheUse
    size: int
    checksum: str
    sent: int  # bytes that crossed the link
    detail: str


def clone_through_cache(
    cache: HostCache,
    resolve: Callable[[], CacheSource],
    tmp: str | None,
    fetch: Callable[[str], Fetched],
    job: Job,
    budget: Callable[[Usage], int],
    evict: Callable[[str], None],
    final: str | None = None,
) -> CachedClone | None:
    """Make `tmp` (a temporary name in the host's VM directory) a copy of the source, through the cache; None
    when the image is not to be cached (larger than the budget). `resolve()` says what is known of the source
    (asked again after waiting for another's fetch of a source whose checksum was not known). `fetch(path)`
    copies the source to `path` in the cache directory; `budget(usage)` is the cache's in bytes; `evict(key)`
    brings the cache down to its budget after a fetch, sparing the entry `key`. With no `tmp` the image is only put
    into the cache (a warm); with `final`, the verified copy is renamed to it in the same command (the VM's file)."""
    source = resolve()
    if source.checksum is None:
        made = _fetched_through(cache, source, resolve, None, None, (tmp, final), fetch, job)
    else:
        key = entry_key(source.checksum)
        job.progress(0, source.size)
        claim = cache.claim(key, tmp, job.cancelled, final)
        if claim.copied is not None:
            return _done(cache, key, claim.copied, CacheUse.WAITED if claim.waited else CacheUse.HIT, job, tmp)
        assert claim.lock is not None
        with claim.lock as lock:
            if claim.problem:
                job.log(
                    f"cache: entry {key} on {cache.host.name} is not trusted ({claim.problem}): fetching it again", True
                )
            if source.size is not None and source.size > (allowed := budget(claim.usage)):
                job.log(
                    f"cache: {source.name} ({size_text(source.size)}) is larger than the budget of "
                    f"{cache.host.name}'s cache ({size_text(allowed)}): not cached"
                )
                return None
            made = _fetched_through(cache, source, resolve, key, lock, (tmp, final), fetch, job, claim.damaged)
    if made.usage is None or made.usage.used > budget(made.usage):
        evict(made.key)
    return made.clone


@dataclass(frozen=True)
class _Made:
    key: str
    clone: CachedClone
    usage: Usage | None = None  # the cache's after it (None: not known)


def _fetched_through(
    cache: HostCache,
    source: CacheSource,
    resolve: Callable[[], CacheSource],
    key: str | None,
    held: CacheLock | None,
    to: tuple[str | None, str | None],
    fetch: Callable[[str], Fetched],
    job: Job,
    damaged: bool = False,
) -> _Made:
    """A miss, under the key's lock held exclusive (`held`; a source whose checksum is not known yet takes its
    fetch key's lock here): fetch, publish and copy out. A deploy that waited for another's fetch of a source of
    unknown checksum finds the entry then, and copies it out."""
    fetch_lock = cache.lock(fetch_key(source.name), LockMode.EXCLUSIVE, job.cancelled) if held is None else None
    lock = held or fetch_lock
    assert lock is not None
    tmp, final = to
    try:
        if key is None and (known := resolve().checksum) is not None:
            # Another deploy of the source fetched it while this one waited: its checksum is known now.
            claim = cache.claim(entry_key(known), tmp, job.cancelled, final)
            if claim.copied is not None:
                return _Made(entry_key(known), _done(cache, entry_key(known), claim.copied, CacheUse.WAITED, job, tmp))
            assert claim.lock is not None
            claim.lock.release()
        if key is not None and damaged:
            cache.remove(key, keep_lock=True)
        part = cache.paths(key or fetch_key(source.name)).part
        try:
            fetched = fetch(part)
        except BaseException:
            _discard(cache, part)
            raise
        if source.checksum is not None and fetched.checksum != source.checksum:
            _discard(cache, part)
            raise OperationError(
                f"{source.name} changed since its checksum was taken ({source.checksum} remembered, "
                f"{fetched.checksum} read): deploy it again"
            )
        sidecar = Sidecar.new(fetched.checksum, fetched.size, source.name, fetched.validators or source.validators)
        use = CacheUse.REFETCHED if damaged else CacheUse.MISS
        if key is not None and lock.alive():
            return _published(cache, part, sidecar, to, use, fetched, job)
        if key is not None:
            # The connection holding the lock dropped during the fetch (the copy itself reconnected and resumed):
            # lock the entry again before publishing; what another deploy did meanwhile is checked as any fetch.
            job.log(f"cache: the lock on {key} was lost with its connection; taking it again")
        with cache.lock(sidecar.key, LockMode.EXCLUSIVE, job.cancelled) as entry_lock:
            if entry_lock.state.entry is not None:  # cached meanwhile, or the same bytes under another name
                _discard(cache, part)
                copied = _out(cache, entry_lock.state.entry, tmp, final)
                return _Made(sidecar.key, _done(cache, sidecar.key, copied, use, job, tmp, fetched))
            return _published(cache, part, sidecar, to, use, fetched, job)
    finally:
        if fetch_lock is not None:
            fetch_lock.release()


def _out(cache: HostCache, entry: Sidecar, tmp: str | None, final: str | None) -> CopiedOut:
    """Copy an entry out to `tmp` (renamed to `final`); with no `tmp` (a warm), the entry as it is."""
    return cache.copy_out(entry, tmp, final) if tmp is not None else CopiedOut(entry.size, entry.checksum)


def _published(
    cache: HostCache,
    part: str,
    sidecar: Sidecar,
    to: tuple[str | None, str | None],
    use: CacheUse,
    fetched: Fetched,
    job: Job,
) -> _Made:
    tmp, final = to
    try:
        published = cache.publish(posixpath.basename(part), sidecar, tmp, final)
    except BaseException:
        _discard(cache, part)
        raise
    job.log(f"cache: {sidecar.key} ({size_text(sidecar.size)}) stored on {cache.host.name} ({fetched.detail})")
    copied = published.copied or CopiedOut(sidecar.size, sidecar.checksum)
    return _Made(sidecar.key, _done(cache, sidecar.key, copied, use, job, tmp, fetched), published.usage)


def _done(
    cache: HostCache,
    key: str,
    copied: CopiedOut,
    use: CacheUse,
    job: Job,
    tmp: str | None,
    fetched: Fetched | None = None,
) -> CachedClone:
    job.progress(copied.size, copied.size)
    sent = fetched.sent if fetched is not None else 0
    fetch = f"{fetched.detail}; " if fetched is not None else ""
    where = f"copied from {cache.directory} on the host" if tmp is not None else f"in {cache.directory}"
    detail = f"{fetch}cache {use.value}: {key} {where}, {size_text(sent)} over the link"
    return CachedClone(use, copied.size, copied.checksum, sent, detail)


def _discard(cache: HostCache, part: str) -> None:
    with contextlib.suppress(Exception):  # the connection may be gone: a part is never trusted, a fetch replaces it
        cache.remove_name(part)
