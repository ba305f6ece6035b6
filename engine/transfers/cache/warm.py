"""Warming hosts' caches ahead of a deploy window: `headnode cache warm SOURCE HOST...` and the console's warm.

`warm` is the one engine entry for putting an image into several hosts' caches. Here each host is filled from the
head on its own (up to `parallel` at once), exactly as a CLONE's miss fills it: the source's checksum from the
memo, the entry's lock on the host, fetch, verify where it lies, rename, sidecar, evict to the budget. A host that
has the entry already sends nothing. The fan-out (issue 16) routes the same call through chains of hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from engine.errors import HeadnodeError
from engine.language.script import Location, Url
from engine.transfers.cache.cached_clone import CacheUse
from engine.transfers.cache.layout import entry_key
from engine.transfers.cache.warm_outcome import WarmOutcome, WarmState
from engine.transfers.fanout.chain_warm import chained_hosts, warm_chained
from engine.transfers.job import Job

if TYPE_CHECKING:
    from engine.transfers.actions import Transfers


def warm(
    transfers: Transfers,
    source: Location | Url,
    hosts: Sequence[str],
    job_for: Callable[[str], Job],
    parallel: int = 4,
    head_mib: float | None = None,
    host_mib: float | None = None,
    events: Callable[[Any], None] | None = None,
    run_id: str | None = None,
) -> list[WarmOutcome]:
    """Put `source` into every host's cache; one outcome per host, in the order given. `job_for(host)` is the
    job (log, progress, cancel) of that host's part. Bad input (an unknown host) raises InputError before
    anything is sent. Two or more ssh hosts and a front-end source go through a fan-out
    (engine.transfers.fanout.chain_warm: `head_mib`, `host_mib`, `events` and `run_id` are its)."""
    order = list(hosts)
    for name in hosts:
        transfers.hosts.resolve(name)
    chained = chained_hosts(transfers, source, hosts)
    done = (
        warm_chained(transfers, source, chained, job_for, head_mib, host_mib, events, run_id)  # type: ignore[arg-type]
        if chained
        else {}
    )
    hosts = [name for name in hosts if name not in done]

    def one(name: str) -> WarmOutcome:
        job = job_for(name)
        try:
            done = transfers.fill_cache(source, name, job)
        except HeadnodeError as exc:
            job.log(f"cache warm: {name}: {exc}", True)
            return WarmOutcome(name, WarmState.FAILED, detail=str(exc))
        if done is None:
            return WarmOutcome(name, WarmState.NO_CACHE, detail="the host keeps no image cache, or it is too small")
        state = WarmState.HIT if done.cache in (CacheUse.HIT, CacheUse.WAITED) else WarmState.FETCHED
        key = entry_key(done.checksum) if done.checksum else None
        return WarmOutcome(name, state, key, done.bytes, done.sent or 0, done.detail)

    if hosts:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts)))) as pool:
            done.update(zip(hosts, pool.map(one, hosts), strict=True))
    return [done[name] for name in order]
