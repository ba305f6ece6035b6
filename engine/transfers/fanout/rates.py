"""Rates measured by earlier fan-outs, kept in the home (`<home>/fanout-rates.json`) for the next plan's estimate.

After a run, each pipeline that was not held back by a BWLIMIT gives every host in it the rate it ran at (the
slowest host's rate: a lower bound for the others), the head the sum of its pipelines', and a run of one round
the time it took besides streaming (connections opened, stages started, copies checked, links closed). A damaged
file is reported, never trusted or overwritten.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from engine.errors import OperationError
from engine.home import Home
from engine.store.atomic import write_atomically
from engine.transfers.fanout.plan import DEFAULT_SETUP, Measured

NAME = "fanout-rates.json"


def _path(home: Home):
    return home.root / NAME


def load_rates(home: Home) -> Measured:
    path = _path(home)
    try:
        data = json.loads(path.read_text())
        hosts = {str(k): float(v["rate"]) for k, v in data.get("hosts", {}).items()}
        head = data.get("head")
        return Measured(hosts, float(head["rate"]) if head else None, float(data.get("setup", DEFAULT_SETUP)))
    except FileNotFoundError:
        return Measured()
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise OperationError(f"{path}: damaged ({exc}); remove it to measure rates afresh") from None


def record_rates(home: Home, hosts: Mapping[str, float], head: float | None, setup: float | None) -> None:
    """Keep what this run measured (hosts' rates in bytes per second, the head's, the setup seconds)."""
    path = _path(home)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    except ValueError:
        return  # load_rates reports it; a measurement is not worth overwriting what is there
    now = time.time()
    data.setdefault("hosts", {}).update({name: {"rate": rate, "at": now} for name, rate in hosts.items()})
    if head:
        data["head"] = {"rate": head, "at": now}
    if setup is not None:
        data["setup"] = setup
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
