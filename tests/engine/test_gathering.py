"""The gathering's decisions (engine.transfers.fanout.gathering) on a real home's hosts and drivers: who is still
to come, and that a lone CLONE goes its own way at once, asking no host anything. The gathering itself, with real
hosts and a real fan-out, is tests/system/test_fanout.py's."""

from __future__ import annotations

import time

import pytest

from engine.home import Home
from engine.language.script import Location
from engine.transfers.actions import Transfers
from engine.transfers.fanout.gathering import Gatherer, GatherKey, Lookahead, Pending
from engine.transfers.hosts import Host, Hosts
from engine.transfers.job import Job, LineRef
from engine.transfers.ssh import SshPool
from tests.conftest import site_driver

IMAGE = "/images/u.img"


@pytest.fixture
def transfers(home: Home, tmp_path) -> Transfers:
    """h1-h3 ssh hosts with a cache at an address nothing answers (TEST-NET-1): a decision that connected would
    fail; shared, a shared host; sha, an ssh host verifying with sha256; nocache, one whose budget is 0."""
    site_driver(home, "sha", "ssh", CHECKSUM="sha256")
    hosts = Hosts(home)
    for name in ("h1", "h2", "h3"):
        hosts.create(Host(name, "ssh", f"/var/lib/one/{name}", address="192.0.2.1"))
    hosts.create(Host("shared", "shared", str(tmp_path / "shared")))
    hosts.create(Host("sha", "sha", "/var/lib/one/sha", address="192.0.2.1"))
    hosts.create(Host("nocache", "ssh", "/var/lib/one/nocache", address="192.0.2.1", cache_max_mb=0))
    return Transfers(home, SshPool())


def source(transfers: Transfers, path: str = IMAGE) -> Location:
    return Location(transfers.hosts.frontend_name, path)


def pending(transfers: Transfers, run: str, host: str, path: str = IMAGE) -> Pending:
    return Pending(LineRef(run, 1), source(transfers, path), host)


def test_a_lone_clone_goes_its_own_way_at_once_asking_no_host(transfers) -> None:
    mine = pending(transfers, "a", "h1")
    later = Pending(LineRef("a", 2), source(transfers), "h2")  # its own run's next line: not one to wait for
    gatherer = Gatherer(transfers, lambda: Lookahead((mine, later)))
    started = time.monotonic()
    assert gatherer.serve(source(transfers), "h1", Job(origin=mine.origin)) is None
    assert time.monotonic() - started < 0.5  # no wait, and no connection to 192.0.2.1 (it would time out)


def test_a_clone_no_fan_out_can_serve_is_not_gathered(transfers) -> None:
    gatherer = Gatherer(transfers, lambda: Lookahead((pending(transfers, "b", "h2"),)))
    assert gatherer.key(source(transfers), "shared") is None
    assert gatherer.key(source(transfers), "nocache") is None
    assert gatherer.key(Location("h3", IMAGE), "h1") is None  # host to host: not the front end's file
    assert gatherer.serve(source(transfers), "shared", Job(origin=LineRef("a", 1))) is None


def test_those_expected_are_other_runs_clones_of_the_same_image_to_other_chainable_hosts(transfers) -> None:
    others = [
        pending(transfers, "a", "h2"),  # the asking run's own: it asks nothing more while it waits
        pending(transfers, "b", "h1"),  # the asker's host: the fan-out fills its cache once for both
        pending(transfers, "c", "h2"),
        pending(transfers, "d", "h3", "/images/other.img"),
        pending(transfers, "e", "shared"),
        pending(transfers, "f", "sha"),  # verified with sha256: not one fan-out's
        pending(transfers, "g", "nocache"),
        pending(transfers, "h", "gone"),  # a host deleted since: its own run fails it
        pending(transfers, "i", "h3"),
    ]
    gatherer = Gatherer(transfers, lambda: Lookahead(tuple(others)))
    key = gatherer.key(source(transfers), "h1")
    assert key == GatherKey(IMAGE, "cksum")
    assert gatherer.expected(key, {"h1"}, {"a"}) == {"h2", "h3"}
    assert gatherer.expected(key, {"h1", "h2"}, {"a", "c"}) == {"h3"}
    assert gatherer.key(source(transfers), "sha") == GatherKey(IMAGE, "sha256")


def test_a_run_waiting_for_a_script_slot_only_a_gathered_clone_would_free_is_not_waited_for(transfers) -> None:
    """MAX_SCRIPTS taken by runs whose CLONEs wait in the gathering: a run queued behind them cannot come before the
    gathering starts, so it is not expected; while another run holds a slot (it may end and let it in), it is."""
    lines = (pending(transfers, "a", "h1"), pending(transfers, "q", "h2"), pending(transfers, "r", "h3"))
    key = GatherKey(IMAGE, "cksum")
    stuck = Gatherer(transfers, lambda: Lookahead(lines, frozenset({"a"}), frozenset({"q"})))
    assert stuck.expected(key, {"h1"}, {"a"}) == {"h3"}  # r is held back by nothing: it is starting
    busy = Gatherer(transfers, lambda: Lookahead(lines, frozenset({"a", "other"}), frozenset({"q"})))
    assert busy.expected(key, {"h1"}, {"a"}) == {"h2", "h3"}
