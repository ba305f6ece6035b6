"""`cache warm` to several hosts through chains: what engine.transfers.cache.warm hands the fan-out.

A warm of a front-end image to two or more ssh hosts that keep a cache (and verify with one algorithm) goes
through a fan-out; the rest (an HTTP source, a shared host, a single host) the cache's own way, each host from the
head. The image's checksum comes from the cache's memo of front-end files; each host's part of the run reports
into that host's job (its progress, its log, its cancel); after it, each host's cache is evicted to its budget,
sparing the entry just warmed. `plan_warm` is the dry run: the plan and the estimate, nothing sent or written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from engine.events import EventBus
from engine.language.numbers import whole_number
from engine.language.script import Location, Url
from engine.transfers.cache.eviction import budget_rule, evict_to_budget
from engine.transfers.cache.layout import BadSidecar, Sidecar, cache_dir, entry_key
from engine.transfers.cache.memo import ChecksumMemo
from engine.transfers.cache.warm_outcome import WarmOutcome, WarmState
from engine.transfers.fanout.hop import look_argv
from engine.transfers.fanout.plan import FanoutPlan, plan_fanout
from engine.transfers.fanout.rates import load_rates
from engine.transfers.fanout.runner import Target, fan_out
from engine.transfers.fanout.settings import fanout_settings
from engine.transfers.job import Job
from engine.transfers.progress import ActionFinished, ActionLog, ActionProgress, RunOutcome

if TYPE_CHECKING:
    from engine.transfers.actions import Transfers

CANCEL_POLL = 0.2  # seconds between looks at the hosts' jobs for a cancel


def chain_algorithm(transfers: Transfers, source: Location | Url, name: str) -> str | None:
    """The checksum algorithm a fan-out of `source` would verify host `name`'s copy with; None when no fan-out
    can serve the host: the source is not a file of the front end, or the host is not reached over ssh or keeps
    no cache."""
    if not isinstance(source, Location) or not transfers.hosts.resolve(source.host).local:
        return None
    host = transfers.hosts.resolve(name)
    driver = transfers.driver(host)
    if not transfers.caches(host) or driver.base != "ssh":
        return None
    return driver.checksum


def chained_hosts(transfers: Transfers, source: Location | Url, names: Sequence[str]) -> list[str]:
    """The hosts of `names` a fan-out serves (none unless two or more): those chain_algorithm accepts, verifying
    with the first such host's algorithm."""
    found: list[str] = []
    algorithm = None
    for name in dict.fromkeys(names):
        own = chain_algorithm(transfers, source, name)
        algorithm = algorithm or own
        if own is not None and own == algorithm:
            found.append(name)
    return found if len(found) > 1 else []


def warm_chained(
    transfers: Transfers,
    source: Location,
    names: Sequence[str],
    job_for: Callable[[str], Job],
    head_mib: float | None = None,
    host_mib: float | None = None,
    events: Callable[[Any], None] | None = None,
    run_id: str | None = None,
) -> dict[str, WarmOutcome]:
    """Warm the caches of `names` (chained_hosts') through a fan-out; an outcome per host. `head_mib` and
    `host_mib` override the configuration's BWLIMITs (MiB/s); `events` also gets the fan-out's events (the
    CLI's bars or JSON lines)."""
    hosts = [transfers.hosts.resolve(name) for name in names]
    algorithm = transfers.driver(hosts[0]).checksum
    checksum, size = ChecksumMemo(transfers.home).file_checksum(source.path, algorithm)
    key = entry_key(checksum)
    jobs = {name: job_for(name) for name in names}
    lines = {i + 1: name for i, name in enumerate(names)}
    bus = EventBus()
    bus.subscribe(lambda event: _to_jobs(event, lines, jobs))
    if events is not None:
        bus.subscribe(events)
    cancel, ended = threading.Event(), threading.Event()

    def watch() -> None:
        while not ended.wait(CANCEL_POLL):
            if any(job.cancelled() for job in jobs.values()):
                cancel.set()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    settings = fanout_settings(transfers.home, head_mib, host_mib)
    try:
        result = fan_out(
            transfers.home,
            source.path,
            checksum,
            [Target.of(host) for host in hosts],
            source_name=str(source),
            bus=bus,
            cancel=cancel,
            limits=settings.limits,
            chain_hosts=settings.chain_hosts,
            head_chains=settings.head_chains,
            run_id=run_id,
        )
    finally:
        ended.set()
        watcher.join()
    outcomes: dict[str, WarmOutcome] = {}
    for host in hosts:
        done = result.hosts[host.name]
        if done.outcome is not RunOutcome.DONE:
            outcomes[host.name] = WarmOutcome(host.name, WarmState.FAILED, key, detail=done.error or "")
            continue
        evict_to_budget(transfers.host_cache(host.name), budget_rule(transfers.home, host), jobs[host.name].log, key)
        sent = 0 if done.present else size - done.resumed_from
        how = "already there" if done.present else f"fan-out, fed by {done.fed_by}"
        state = WarmState.HIT if done.present else WarmState.FETCHED
        outcomes[host.name] = WarmOutcome(host.name, state, key, size, sent, how)
    return outcomes


def _to_jobs(event: Any, lines: dict[int, str], jobs: dict[str, Job]) -> None:
    """A fan-out's event for the job of the host it is about (a note about the whole run goes to the first's)."""
    name = lines.get(getattr(event, "line", 0)) or next(iter(jobs))
    job = jobs[name]
    if isinstance(event, ActionProgress):
        job.progress(event.bytes_done, event.bytes_total)
    elif isinstance(event, ActionLog):
        job.log(event.message, event.error)
    elif isinstance(event, ActionFinished) and event.error:
        job.log(f"{name}: {event.error}", True)


def plan_warm(
    transfers: Transfers,
    source: Location,
    names: Sequence[str],
    head_mib: float | None = None,
    host_mib: float | None = None,
) -> FanoutPlan:
    """The plan of warm_chained's fan-out: each host asked (all at once) whether it has the image or part of it;
    nothing is sent or written."""
    hosts = [transfers.hosts.resolve(name) for name in names]
    algorithm = transfers.driver(hosts[0]).checksum
    checksum, size = ChecksumMemo(transfers.home).file_checksum(source.path, algorithm)
    key = entry_key(checksum)

    def look(name: str) -> tuple[str, int | None]:
        """`have`, or `partial` with the bytes held, or `none`."""
        host = transfers.hosts.resolve(name)
        result = transfers.endpoint(name).execute(look_argv(cache_dir(host), key))
        first, _, sidecar = result.stdout.partition("\n")
        words = first.split()
        if words[:1] == ["have"]:
            try:
                if Sidecar.from_json(sidecar, key).size == size:
                    return "have", None
            except BadSidecar:
                pass
        reached = whole_number(words[1]) if words[:1] == ["partial"] and len(words) > 1 else None
        if reached is not None and reached < size:
            return "partial", reached
        return "none", None

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        found = dict(zip(names, pool.map(look, names), strict=True))
    present = [name for name, (state, _) in found.items() if state == "have"]
    offsets = {name: held for name, (state, held) in found.items() if held}
    settings = fanout_settings(transfers.home, head_mib, host_mib)
    return plan_fanout(
        str(source),
        size,
        list(names),
        present=present,
        offsets=offsets,
        limits=settings.limits,
        measured=load_rates(transfers.home),
        chain_hosts=settings.chain_hosts,
        head_chains=settings.head_chains,
    )
