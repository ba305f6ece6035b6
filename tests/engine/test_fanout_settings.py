"""A fan-out's BWLIMITs and chain settings from headnode.conf (engine.transfers.fanout.settings)."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.transfers.fanout.settings import fanout_settings

MiB = 1 << 20


def configure(home, text: str) -> int:
    """Put `text` where the shipped configuration sets the fan-out's settings; the line it starts at."""
    lines = home.config_path.read_text().splitlines(keepends=True)
    shipped = [i for i, line in enumerate(lines) if line.startswith(("BWLIMIT", "HOST_BWLIMIT", "FANOUT_"))]
    kept = [line for i, line in enumerate(lines) if i not in shipped]
    kept[shipped[0] : shipped[0]] = [text]
    home.config_path.write_text("".join(kept))
    return shipped[0] + 1


def test_limits_in_mib_per_second_a_hosts_own_over_every_hosts(home):
    configure(home, "BWLIMIT = 50\nHOST_BWLIMIT = 20\nHOST_BWLIMIT = [ HOST = node03, LIMIT = 2.5 ]\n")
    settings = fanout_settings(home)
    assert settings.limits.head == 50 * MiB
    assert settings.limits.host("node01") == 20 * MiB
    assert settings.limits.host("node03") == 2.5 * MiB
    assert fanout_settings(home, head_mib=8, host_mib=4).limits.host("node03") == 4 * MiB  # the command line wins


def test_no_limit_by_default(home):
    settings = fanout_settings(home)
    assert (settings.limits.head, settings.limits.host("node01"), settings.chain_hosts) == (None, None, 8)


def test_every_bad_setting_is_named_with_its_line_at_once(home):
    first = configure(home, "BWLIMIT = fast\nHOST_BWLIMIT = [ LIMIT = 3 ]\nFANOUT_CHAIN_HOSTS = 0\nHOST_BWLIMIT = -1\n")
    with pytest.raises(InputError) as raised:
        fanout_settings(home)
    found = [(p.line, p.message) for p in raised.value.problems]
    assert found == [
        (first, "BWLIMIT 'fast' is not a rate in MiB/s above 0"),
        (first + 1, "HOST_BWLIMIT = [ HOST = ..., LIMIT = ... ] names no HOST"),
        (first + 3, "HOST_BWLIMIT '-1' is not a rate in MiB/s above 0"),
        (first + 2, "FANOUT_CHAIN_HOSTS '0' is not a whole number of 1 or more"),
    ]
    assert all(p.file == str(home.config_path) for p in raised.value.problems)
