"""Gathering the CLONEs of one image that the service runs at once into one fan-out: N deploys, about one copy.

Without it, each CLONE of a front-end image that misses its host's cache fetches from the head on its own, so 8
deploys at once send 8 copies through the head's link. The executor's coordinator (one per Transfers, shared by
every script it runs) is asked by such a CLONE before it fetches:

- It goes its own way at once (`serve` returns None) unless another active run still has a CLONE of the same source
  to another host a fan-out can serve (chain_algorithm: an ssh host with a cache, the same checksum algorithm)
  that has not asked yet, or a gathering of the source is forming: a lone CLONE never waits. Nor does one whose host
  has the image already (a hit).
- Otherwise it joins the source's forming gathering (or forms it). The gathering starts when every CLONE expected
  has come, or GATHER_WAIT after it formed (a run may be held behind a host's slot or MAX_SCRIPTS): one fan-out
  (warm_chained) fills the caches of every host gathered, and each CLONE goes on through its host's cache, a hit.
  A run waiting for a script slot that only CLONEs waiting to gather would free is not expected: it cannot come.
- A CLONE that comes once its gathering has started goes its own way, or forms the next one.
- A host whose part of the fan-out failed fetches from the head itself (its CLONE's log says so): nothing is lost.

The fan-out runs on a thread of the gathering's own, not on a member's: a member cancelled leaves at once, the
others still get the image; the fan-out is cancelled only once every member has left.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import Cancelled, HeadnodeError, InputError
from engine.language.script import Location, Url
from engine.presentation import size_text
from engine.transfers.cache.layout import cache_dir, entry_key
from engine.transfers.cache.warm_outcome import WarmOutcome, WarmState
from engine.transfers.fanout.chain_warm import chain_algorithm, warm_chained
from engine.transfers.fanout.hop import look_argv
from engine.transfers.job import Job, LineRef

if TYPE_CHECKING:
    from engine.transfers.actions import Transfers

GATHER_WAIT = 5.0  # seconds a gathering waits for the CLONEs expected before it starts with those that came
POLL = 0.1  # seconds between looks at the runs (who is still to come) and at a waiting member's cancel


@dataclass(frozen=True)
class Pending:
    """An unfinished CLONE (or LN) line of an active run: one that may still ask."""

    origin: LineRef
    source: Location | Url
    host: str  # its destination's


@dataclass(frozen=True)
class Lookahead:
    """What the executor's active runs have still to run: their unfinished CLONE lines; the runs holding a script
    slot (`running`); and, when every slot is taken, the runs waiting for one (`queued`), which start only once a
    running one ends."""

    lines: tuple[Pending, ...]
    running: frozenset[str] = frozenset()
    queued: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GatherKey:
    """What makes CLONEs one fan-out's: the same front-end file, verified with the same algorithm."""

    path: str
    algorithm: str


@dataclass(frozen=True)
class Served:
    """What a gathering did for one CLONE's host: its part of the fan-out to `hosts` (run `run`)."""

    host: str
    hosts: tuple[str, ...]
    run: str
    outcome: WarmOutcome

    @property
    def ok(self) -> bool:
        """Whether the host's cache holds the image now (a CLONE then copies it out: a hit)."""
        return self.outcome.state in (WarmState.FETCHED, WarmState.HIT)

    @property
    def detail(self) -> str:
        """`served by the fan-out RUN to HOSTS (how, bytes)`, or why the fan-out did not fill the host's cache."""
        fan_out = f"the fan-out {self.run} to {', '.join(self.hosts)}"
        if not self.ok:
            return f"{fan_out} did not fill {self.host}'s cache ({self.outcome.detail or self.outcome.state.value})"
        over = f"{size_text(self.outcome.sent)} over the link to {self.host}"
        return f"served by {fan_out} ({self.outcome.detail or self.outcome.state.value}, {over})"


@dataclass(eq=False)
class _Member:
    origin: LineRef | None
    host: str
    job: Job
    left: bool = False  # cancelled: hears nothing more of the fan-out


@dataclass(eq=False)
class _Gathering:
    key: GatherKey
    source: Location
    run: str
    formed: float = field(default_factory=time.monotonic)
    members: list[_Member] = field(default_factory=list)
    hosts: tuple[str, ...] = ()  # those the fan-out served, once started
    outcomes: dict[str, WarmOutcome] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)  # every member has left
    done: threading.Event = field(default_factory=threading.Event)

    def live(self) -> list[_Member]:
        return [member for member in self.members if not member.left]


class Gatherer:
    """The coordinator of one executor's CLONEs: see the module's docstring. `lookahead()` says what the executor's
    active runs have still to run; `events` hears the fan-outs' own events (the Transfers screen shows
    a fan-out as one run with a row per host); `wait` is GATHER_WAIT."""

    def __init__(
        self,
        transfers: Transfers,
        lookahead: Callable[[], Lookahead],
        events: Callable[[Any], None] | None = None,
        wait: float = GATHER_WAIT,
    ) -> None:
        self.transfers = transfers
        self._lookahead = lookahead
        self._events = events
        self._wait = wait
        self._lock = threading.Condition()
        self._forming: dict[GatherKey, _Gathering] = {}
        self._asked: set[LineRef] = set()

    def key(self, source: Location | Url, host: str) -> GatherKey | None:
        """The gathering a CLONE of `source` to `host` could join; None: no fan-out can serve it."""
        try:
            algorithm = chain_algorithm(self.transfers, source, host)
        except InputError:  # a host deleted since its script was checked: its own run fails it
            return None
        return GatherKey(source.path, algorithm) if algorithm and isinstance(source, Location) else None

    def expected(self, key: GatherKey, hosts: set[str], runs: set[str]) -> set[str]:
        """The hosts still to come to a gathering of `key` that has `hosts`: those of the CLONEs of active runs
        other than `runs` (a member's own run asks nothing more while it waits) that have not gone their own way,
        nor wait for a script slot that only a CLONE waiting in a gathering would free (they cannot come in time)."""
        ahead = self._lookahead()
        with self._lock:
            self._asked &= {p.origin for p in ahead.lines}  # a finished run's lines are forgotten
            asked = set(self._asked)
            waiting = {m.origin.run for g in self._forming.values() for m in g.live() if m.origin} | runs
        stuck = ahead.queued if ahead.running <= waiting else frozenset()
        return {
            p.host
            for p in ahead.lines
            if p.origin.run not in runs | stuck
            and p.origin not in asked
            and p.host not in hosts
            and self.key(p.source, p.host) == key
        }

    def serve(self, source: Location | Url, host: str, job: Job) -> Served | None:
        """Ask before fetching `source` into `host`'s cache for a CLONE: None, go your own way (nothing to
        gather, the host has it, or the gathering started without you); else what the fan-out did for the host
        (a failed part: fetch it yourself). Cancelled when `job` is, while it waits."""
        key = self.key(source, host)
        if key is None or not isinstance(source, Location):
            return None
        runs = {job.origin.run} if job.origin else set()
        with self._lock:
            forming = key in self._forming
        if (not forming and not self.expected(key, {host}, runs)) or self._present(source, host, key):
            self._declined(job)
            return None
        with self._lock:
            gathering = self._forming.get(key)
            if gathering is None:
                gathering = _Gathering(key, source, f"gather-{uuid.uuid4().hex[:12]}")
                self._forming[key] = gathering
                threading.Thread(target=self._run, args=(gathering,), name=gathering.run, daemon=True).start()
            member = _Member(job.origin, host, job)
            gathering.members.append(member)
            self._lock.notify_all()
        job.log(f"cache: {source} missing on {host}: gathering with the other deploys of it (up to {self._wait:g} s)")
        return self._served(gathering, member)

    def _declined(self, job: Job) -> None:
        """The CLONE goes its own way: no gathering expects it any more (a member is known by its host)."""
        if job.origin is not None:
            with self._lock:
                self._asked.add(job.origin)

    def _present(self, source: Location, host: str, key: GatherKey) -> bool:
        """Whether the host's cache has the image (a CLONE of it is a hit: nothing to wait for)."""
        checksum, _ = self.transfers.memo.file_checksum(source.path, key.algorithm)
        record = self.transfers.hosts.resolve(host)
        reply = self.transfers.endpoint(host).execute(look_argv(cache_dir(record), entry_key(checksum)))
        return reply.stdout.split()[:1] == ["have"]

    def _served(self, gathering: _Gathering, member: _Member) -> Served | None:
        while not gathering.done.wait(POLL):
            if member.job.cancelled():
                with self._lock:
                    member.left = True
                    if not gathering.live():
                        gathering.cancel.set()
                    self._lock.notify_all()
                raise Cancelled("cancelled")
        outcome = gathering.outcomes.get(member.host)
        if outcome is None:  # nobody else came: the CLONE fetches on its own
            member.job.log(f"cache: no other deploy of {gathering.source} came: fetching it from the head")
            return None
        served = Served(member.host, gathering.hosts, gathering.run, outcome)
        if served.ok:
            member.job.log(f"cache: {gathering.source} {served.detail}")
        else:
            member.job.log(f"cache: {served.detail}: fetching {gathering.source} from the head instead", True)
        return served

    def _run(self, gathering: _Gathering) -> None:
        """The gathering's thread: wait for those expected (bounded), then one fan-out for all who came."""
        try:
            hosts = self._gathered(gathering)
            if len(hosts) > 1:
                gathering.hosts = tuple(hosts)
                gathering.outcomes = self._fan_out(gathering, hosts)
        finally:
            gathering.done.set()

    def _gathered(self, gathering: _Gathering) -> list[str]:
        """Wait until no one else is expected or the wait is over, then close the gathering: its hosts in the
        order they came."""
        deadline = gathering.formed + self._wait
        while True:
            with self._lock:
                live = gathering.live()
                hosts = {member.host for member in live}
                runs = {member.origin.run for member in live if member.origin}
            if not live or time.monotonic() >= deadline or not self.expected(gathering.key, hosts, runs):
                break
            with self._lock:
                self._lock.wait(POLL)
        with self._lock:
            del self._forming[gathering.key]  # from now on a CLONE of the source goes its own way, or forms anew
            # Its members have asked: a later gathering does not wait for them.
            self._asked |= {member.origin for member in gathering.members if member.origin}
            return list(dict.fromkeys(member.host for member in gathering.live()))

    def _fan_out(self, gathering: _Gathering, hosts: Sequence[str]) -> dict[str, WarmOutcome]:
        def job_for(host: str) -> Job:
            """The host's part of the fan-out reports to its members still waiting; its cancel is everyone's."""
            members = [member for member in gathering.members if member.host == host]

            def log(message: str, error: bool) -> None:
                for member in members:
                    if not member.left:
                        member.job.log(message, error)

            def progress(done: int, total: int | None) -> None:
                for member in members:
                    if not member.left:
                        member.job.progress(done, total)

            return Job(log, progress, cancel=gathering.cancel)

        try:
            return warm_chained(
                self.transfers, gathering.source, hosts, job_for, events=self._events, run_id=gathering.run
            )
        except (HeadnodeError, OSError) as exc:  # the source unreadable, the run refused: each host fetches itself
            error = str(exc)
        except Exception as exc:  # a bug: the members must still go on (their own fetch), and say why
            error = f"internal error: {exc!r}"
        return {host: WarmOutcome(host, WarmState.FAILED, detail=error) for host in hosts}
