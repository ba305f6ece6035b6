"""What warming one host's cache came to: the record `cache warm` reports per host, from the head or a fan-out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class WarmState(Enum):
    HIT = "hit"  # the host had it: nothing sent
    FETCHED = "fetched"  # fetched into the host's cache
    FAILED = "failed"
    NO_CACHE = "no cache"  # the host keeps no cache (its driver's CACHE, or a budget of 0), or it is too large


@dataclass(frozen=True)
class WarmOutcome:
    host: str
    state: WarmState
    key: str | None = None
    size: int = 0
    sent: int = 0  # bytes that crossed the link to the host
    detail: str = ""
