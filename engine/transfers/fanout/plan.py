"""A fan-out's plan: which hosts form which chains, what crosses each link, and how long it should take.

Hosts that already have the image are left out. The others are dealt, in the order given, into chains of at most
CHAIN_HOSTS: a slow or dead host slows or stops only the hosts after it in its chain, and those are re-fed. The head
feeds as many chains at once as its rate allows at the hosts' rate (its BWLIMIT or measured rate over the hosts'
slowest; one when neither is known); every further chain hangs off the tail of an earlier one, whose uplink is
otherwise idle (a tree of chains). A head feeding k chains sends the image k times; every host receives it once
and sends it at most once, so with equal links the time is about one copy's, whatever the number of hosts.

The estimate is the overhead measured last time (all but the streaming: connections, checks, the end) plus the
bytes over the slowest rate in each pipeline (the BWLIMITs, the hosts' rates measured by earlier fan-outs, the
head's share), the longest pipeline deciding.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.presentation import duration_text, rate_text, size_text

CHAIN_HOSTS = 8
FED_BY_HEAD = "head"
DEFAULT_SETUP = 1.0  # seconds before bytes flow, until a run has measured it


@dataclass(frozen=True)
class Limits:
    """BWLIMITs in bytes per second: what the head sends in all, and what each host may receive and send."""

    head: float | None = None
    hosts: Mapping[str, float] = field(default_factory=dict)
    every_host: float | None = None  # a host without a limit of its own

    def host(self, name: str) -> float | None:
        return self.hosts.get(name, self.every_host)


@dataclass(frozen=True)
class Measured:
    """Rates in bytes per second from earlier fan-outs (engine.transfers.fanout.rates), and the setup time they took."""

    hosts: Mapping[str, float] = field(default_factory=dict)
    head: float | None = None
    setup: float = DEFAULT_SETUP


@dataclass(frozen=True)
class Chain:
    number: int
    hosts: tuple[str, ...]
    fed_by: str  # FED_BY_HEAD, or the host (an earlier chain's tail) that forwards into it


@dataclass(frozen=True)
class Pipeline:
    """What one stream from the head passes through: a head-fed chain and the chains hanging off its tail."""

    chains: tuple[Chain, ...]
    offset: int  # the byte the stream starts at (the least any of its hosts already holds)
    limit: float | None  # the BWLIMIT it is paced to
    rate: float | None  # the rate expected: the limit or the slowest measured rate, whichever is lower

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(name for chain in self.chains for name in chain.hosts)


@dataclass(frozen=True)
class FanoutPlan:
    source: str
    size: int
    pipelines: tuple[Pipeline, ...]
    present: tuple[str, ...]  # hosts that have the image already
    unreachable: Mapping[str, str] = field(default_factory=dict)  # hosts the head cannot reach, and why
    notes: tuple[str, ...] = ()  # what changed the plan: a neighbour that could not reach the next host
    setup: float = DEFAULT_SETUP

    @property
    def hosts(self) -> list[str]:
        return [name for pipeline in self.pipelines for name in pipeline.hosts]

    @property
    def chains(self) -> list[Chain]:
        return sorted((c for p in self.pipelines for c in p.chains), key=lambda c: c.number)

    def links(self) -> list[tuple[str, str, int]]:
        """(from, to, bytes) of every link the image crosses, the head's first."""
        found = []
        for pipeline in self.pipelines:
            hosts = pipeline.hosts
            sending = self.size - pipeline.offset
            found += [(FED_BY_HEAD, hosts[0], sending)]
            found += [(a, b, sending) for a, b in itertools.pairwise(hosts)]
        return found

    @property
    def head_bytes(self) -> int:
        return sum(self.size - p.offset for p in self.pipelines)

    def estimate(self) -> float | None:
        """Seconds for the whole fan-out; None when some pipeline's rate is not known."""
        if not self.pipelines:
            return 0.0
        times = []
        for pipeline in self.pipelines:
            if pipeline.rate is None:
                return None
            times.append(self.setup + (self.size - pipeline.offset) / pipeline.rate)
        return max(times)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "size": self.size,
            "present": list(self.present),
            "unreachable": dict(self.unreachable),
            "notes": list(self.notes),
            "chains": [
                {
                    "chain": chain.number,
                    "hosts": list(chain.hosts),
                    "fed_by": chain.fed_by,
                    "offset": pipeline.offset,
                    "limit": pipeline.limit,
                    "rate": pipeline.rate,
                }
                for pipeline in self.pipelines
                for chain in pipeline.chains
            ],
            "links": [{"from": a, "to": b, "bytes": n} for a, b, n in self.links()],
            "head_bytes": self.head_bytes,
            "estimate": self.estimate(),
        }

    def text(self) -> list[str]:
        """The plan as a person reads it."""
        lines = [f"fan-out of {self.source} ({size_text(self.size)})"]
        if self.present:
            lines.append(f"already there: {', '.join(self.present)}")
        for name, why in self.unreachable.items():
            lines.append(f"{name}: not reachable from the head: {why}")
        lines += list(self.notes)
        for pipeline in self.pipelines:
            for chain in pipeline.chains:
                feeder = "the head" if chain.fed_by == FED_BY_HEAD else f"{chain.fed_by} (an earlier chain's tail)"
                resumed = f", resuming at {size_text(pipeline.offset)}" if pipeline.offset else ""
                lines.append(f"chain {chain.number}: {' -> '.join(chain.hosts)} fed by {feeder}{resumed}")
            limit = f"limited to {rate_text(pipeline.limit)}" if pipeline.limit else "no limit"
            rate = f"expected {rate_text(pipeline.rate)}" if pipeline.rate else "no rate measured yet"
            lines.append(f"  {size_text(self.size - pipeline.offset)} over each of its links, {limit}, {rate}")
        lines.append(f"the head sends {size_text(self.head_bytes)}")
        estimate = self.estimate()
        lines.append(
            f"estimated {duration_text(estimate)}"
            if estimate is not None
            else "no estimate: a host's rate is not known yet (a first fan-out to it measures it)"
        )
        return lines


def _lowest(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v]
    return min(known) if known else None


def plan_fanout(
    source: str,
    size: int,
    hosts: Sequence[str],
    present: Sequence[str] = (),
    offsets: Mapping[str, int] | None = None,
    limits: Limits | None = None,
    measured: Measured | None = None,
    chain_hosts: int = CHAIN_HOSTS,
    head_chains: int | None = None,
    breaks: Sequence[str] = (),
    unreachable: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> FanoutPlan:
    """Chains for `hosts` (in order; those in `present` or `unreachable` left out). `offsets`: bytes a host holds
    of an interrupted copy. `breaks`: hosts that must start a chain fed by the head (their neighbour cannot reach
    them). `head_chains`: how many chains the head feeds (None: from the rates)."""
    limits, measured, offsets = limits or Limits(), measured or Measured(), offsets or {}
    unreachable = dict(unreachable or {})
    todo = [h for h in hosts if h not in present and h not in unreachable]
    count = max(1, math.ceil(len(todo) / max(1, chain_hosts))) if todo else 0
    groups = [todo[i * len(todo) // count : (i + 1) * len(todo) // count] for i in range(count)]
    host_rate = _lowest([_lowest([limits.host(h), measured.hosts.get(h)]) for h in todo])
    head_rate = _lowest([limits.head, measured.head])
    if head_chains is None:
        head_chains = max(1, int(head_rate // host_rate)) if head_rate and host_rate else 1
    # A host its neighbour cannot reach starts a chain of its own, fed by the head.
    chains_hosts: list[list[str]] = []
    for group in groups:
        current: list[str] = []
        for name in group:
            if name in breaks and current:
                chains_hosts.append(current)
                current = []
            current.append(name)
        chains_hosts.append(current)
    heads = {i for i, c in enumerate(chains_hosts) if c[0] in breaks}
    heads |= set(range(min(head_chains, len(chains_hosts))))
    fed: dict[int, list[int]] = {i: [i] for i in sorted(heads)}
    roots = sorted(heads)
    for position, index in enumerate(i for i in range(len(chains_hosts)) if i not in heads):
        fed[roots[position % len(roots)]].append(index)  # hang it off the tail of that root's pipeline
    pipelines = []
    number = 1
    fed_head = len(roots)
    for root in roots:
        chains, previous = [], FED_BY_HEAD
        for index in fed[root]:
            chains.append(Chain(number, tuple(chains_hosts[index]), previous))
            previous = chains_hosts[index][-1]
            number += 1
        names = [n for c in chains for n in c.hosts]
        limit = _lowest([limits.head / fed_head if limits.head else None] + [limits.host(n) for n in names])
        rates = [measured.hosts.get(n) for n in names]
        rate = (
            None
            if any(r is None for r in rates)
            else _lowest([*rates, measured.head / fed_head if measured.head else None])
        )
        offset = min(offsets.get(n, 0) for n in names)
        pipelines.append(Pipeline(tuple(chains), offset, limit, _lowest([limit, rate])))
    present_here = tuple(h for h in hosts if h in present)
    return FanoutPlan(source, size, tuple(pipelines), present_here, unreachable, tuple(notes), measured.setup)
