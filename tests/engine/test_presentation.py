"""One wording for both front ends: sizes in binary units, rates, durations, estimates and times."""

from __future__ import annotations

import time

import pytest

from engine.presentation import (
    clock_text,
    duration_text,
    eta_text,
    host_test_lines,
    host_test_summary,
    progress_text,
    rate_text,
    size_text,
    time_text,
)
from engine.transfers.host_check import HostReport

KIB, MIB, GIB, TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (KIB, "1.0 KiB"),
        (MIB - 1, "1.0 MiB"),  # rounds up into the next unit, never "1024.0 KiB"
        (16 * MIB, "16.0 MiB"),
        (3 * GIB // 2, "1.5 GiB"),
        (5 * TIB, "5.0 TiB"),
        (2048 * TIB, "2048.0 TiB"),
        (None, "?"),
    ],
)
def test_sizes_are_in_binary_units(n, text) -> None:
    assert size_text(n) == text


def test_progress_shows_both_sides_in_the_larger_ones_unit() -> None:
    assert progress_text(MIB, 3 * GIB) == "0.0/3.0 GiB"
    assert progress_text(110 * KIB, 110 * KIB) == "110.0/110.0 KiB"
    assert progress_text(5 * MIB, None) == "5.0/? MiB"
    assert progress_text(0, 0) == "0/0 B"


def test_rates_are_sizes_per_second() -> None:
    assert rate_text(12.5 * MIB) == "12.5 MiB/s"


@pytest.mark.parametrize(
    ("seconds", "measured", "estimate"),
    [
        (0.042, "0.04 s", "0 s"),
        (4.6, "4.60 s", "5 s"),
        (59.99, "59.99 s", "1m00s"),
        (65, "1m05s", "1m05s"),
        (7380, "2h03m", "2h03m"),
    ],
)
def test_durations_and_estimates(seconds, measured, estimate) -> None:
    assert duration_text(seconds) == measured
    assert eta_text(seconds) == estimate


def test_no_estimate_is_empty() -> None:
    assert eta_text(None) == ""


def test_times_are_local() -> None:
    at = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    assert time_text(at) == "2026-03-04 05:06:07"
    assert clock_text(at) == "05:06:07"
    assert time_text(None) == "-"


def test_host_reports_say_free_space_in_binary_units() -> None:
    report = HostReport("h1", "ssh", "ssh root@h1:22", True, 3 * GIB // 2, 0.25)
    assert host_test_summary(report) == "ok, 1.5 GiB free, 0.2 ms"
    assert host_test_lines(report) == [
        "host h1: driver ssh, reached ssh root@h1:22",
        "round trip: 0.2 ms",
        "free space in the VM directory: 1.5 GiB",
        "VM directory writable: yes",
    ]
    failed = HostReport("h1", "ssh", "ssh root@h1:22", error="connection refused")
    assert host_test_summary(failed) == "failed: connection refused"
    assert host_test_lines(failed) == ["host h1: driver ssh, reached ssh root@h1:22"]
