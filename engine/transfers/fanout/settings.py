"""A fan-out's settings from headnode.conf, and the command line's overrides.

    BWLIMIT = 50                                   # MiB/s the head sends in all ("": no limit)
    HOST_BWLIMIT = 20                              # MiB/s each host may receive and pass on ("": no limit)
    HOST_BWLIMIT = [ HOST = node03, LIMIT = 5 ]    # one host's own limit (repeat for others)
    FANOUT_CHAIN_HOSTS = 8                         # hosts per chain at most
    FANOUT_CHAINS = ""                             # chains the head feeds at once ("": from the measured rates)

Rates are binary units throughout (MiB/s), as everywhere in headnode. Every problem is reported at once, with the
file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InputError, Problem
from engine.home import Home
from engine.language.numbers import whole_number
from engine.language.template import Vector
from engine.transfers.fanout.plan import CHAIN_HOSTS, Limits

MiB = 1 << 20
_RATE = re.compile(r"[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True)
class FanoutSettings:
    limits: Limits
    chain_hosts: int = CHAIN_HOSTS
    head_chains: int | None = None


def _rate(text: str, what: str, where: tuple[str, int], problems: list[Problem]) -> float | None:
    """MiB/s as bytes per second; "" is no limit."""
    if text == "":
        return None
    if not _RATE.fullmatch(text) or float(text) <= 0:
        problems.append(Problem(f"{what} {text!r} is not a rate in MiB/s above 0", *where))
        return None
    return float(text) * MiB


def fanout_settings(home: Home, head_mib: float | None = None, host_mib: float | None = None) -> FanoutSettings:
    """The settings of headnode.conf, `head_mib` and `host_mib` (MiB/s, from the command line) overriding BWLIMIT
    and the hosts' HOST_BWLIMIT. InputError listing every problem."""
    template = home.config.template
    path = str(home.config_path)
    problems: list[Problem] = []
    head = None
    for attr in template.all("BWLIMIT"):
        if isinstance(attr.value, str):
            head = _rate(attr.value, "BWLIMIT", (path, attr.line), problems)
    every: float | None = None
    hosts: dict[str, float] = {}
    for attr in template.all("HOST_BWLIMIT"):
        if isinstance(attr.value, Vector):
            name, limit = attr.value.get("HOST") or "", attr.value.get("LIMIT") or ""
            if not name:
                problems.append(Problem("HOST_BWLIMIT = [ HOST = ..., LIMIT = ... ] names no HOST", path, attr.line))
            rate = _rate(limit, f"HOST_BWLIMIT of {name}", (path, attr.line), problems) if limit else None
            if name and rate:
                hosts[name] = rate
        else:
            every = _rate(attr.value, "HOST_BWLIMIT", (path, attr.line), problems)
    counts: dict[str, int | None] = {}
    for key in ("FANOUT_CHAIN_HOSTS", "FANOUT_CHAINS"):
        text = template.get(key) or ""
        value = whole_number(text) if text else None
        if text and (value is None or value < 1):
            line = template.all(key)[0].line
            problems.append(Problem(f"{key} {text!r} is not a whole number of 1 or more", path, line))
        counts[key] = value
    if problems:
        raise InputError(problems)
    if head_mib is not None:
        head = head_mib * MiB
    if host_mib is not None:
        every, hosts = host_mib * MiB, {}
    limits = Limits(head, hosts, every)
    return FanoutSettings(limits, counts["FANOUT_CHAIN_HOSTS"] or CHAIN_HOSTS, counts["FANOUT_CHAINS"])
