"""The fan-out's plan: chains, what crosses each link, the estimate (engine.transfers.fanout.plan)."""

from __future__ import annotations

import pytest

from engine.transfers.fanout.plan import FED_BY_HEAD, Limits, Measured, plan_fanout

MiB = 1 << 20
HOSTS = [f"node{i:02d}" for i in range(16)]


def test_sixteen_hosts_make_two_chains_the_second_hanging_off_the_first_ones_tail():
    plan = plan_fanout("/img", 96 * MiB, HOSTS)
    assert [c.hosts for c in plan.chains] == [tuple(HOSTS[:8]), tuple(HOSTS[8:])]
    assert [c.fed_by for c in plan.chains] == [FED_BY_HEAD, "node07"]
    assert len(plan.pipelines) == 1  # the head sends the image once
    assert plan.head_bytes == 96 * MiB
    assert plan.links()[:2] == [("head", "node00", 96 * MiB), ("node00", "node01", 96 * MiB)]
    assert len(plan.links()) == 16  # every host receives it once


def test_a_head_twice_as_fast_as_the_hosts_feeds_two_chains_each_at_half_its_limit():
    measured = Measured({name: 100 * MiB for name in HOSTS})
    plan = plan_fanout("/img", 96 * MiB, HOSTS, limits=Limits(head=200 * MiB), measured=measured)
    assert [c.fed_by for c in plan.chains] == [FED_BY_HEAD, FED_BY_HEAD]
    assert [p.limit for p in plan.pipelines] == [100 * MiB, 100 * MiB]
    assert plan.head_bytes == 2 * 96 * MiB


def test_hosts_that_have_it_or_cannot_be_reached_are_left_out_and_said():
    plan = plan_fanout("/img", 10 * MiB, HOSTS[:4], present=["node01"], unreachable={"node02": "Connection refused"})
    assert plan.hosts == ["node00", "node03"]
    text = "\n".join(plan.text())
    assert "already there: node01" in text and "node02: not reachable from the head: Connection refused" in text


def test_a_host_its_neighbour_cannot_reach_starts_a_chain_fed_by_the_head():
    plan = plan_fanout("/img", MiB, HOSTS[:5], breaks=["node03"], notes=["node03 cannot be reached from node02"])
    assert [p.hosts for p in plan.pipelines] == [("node00", "node01", "node02"), ("node03", "node04")]
    assert "node03 cannot be reached from node02" in plan.text()


def test_a_pipeline_resumes_at_the_least_its_hosts_hold():
    plan = plan_fanout("/img", 10 * MiB, HOSTS[:3], offsets={"node00": 4 * MiB, "node01": 3 * MiB, "node02": 5 * MiB})
    assert plan.pipelines[0].offset == 3 * MiB
    assert plan.links()[0] == ("head", "node00", 7 * MiB)


def test_the_estimate_is_the_setup_plus_the_bytes_over_the_slowest_rate():
    measured = Measured({"node00": 10 * MiB, "node01": 5 * MiB}, setup=1.5)
    plan = plan_fanout("/img", 50 * MiB, HOSTS[:2], measured=measured)
    assert plan.estimate() == pytest.approx(1.5 + 10)
    limited = plan_fanout("/img", 50 * MiB, HOSTS[:2], measured=measured, limits=Limits(hosts={"node00": 2 * MiB}))
    assert limited.estimate() == pytest.approx(1.5 + 25)
    assert plan_fanout("/img", 50 * MiB, HOSTS[:3], measured=measured).estimate() is None  # node02: no rate yet
    assert plan.to_json()["estimate"] == pytest.approx(11.5)
