"""What hosts print back is read by the ASCII-digits rule (engine.language.numbers.whole_number): a host that prints
a superscript or another script's digits gets a clear refusal, never an internal error from int()."""

from __future__ import annotations

import pytest

from engine.errors import OperationError
from engine.transfers.cache.host_cache import _copied_line, _trusted, _usage
from engine.transfers.cache.layout import Sidecar, entry_key


def test_cache_usage_ignores_sizes_that_are_not_ascii_digits() -> None:
    usage = _usage(["/dev/sda1 100 50 ² 50% /", "10 ٣ 20"])
    assert (usage.free, usage.used) == (0, 30)


def test_an_entry_whose_size_is_not_ascii_digits_is_not_trusted() -> None:
    sidecar = Sidecar.new("cksum:1234", 2, "/images/a.img")
    key = entry_key("cksum:1234")
    assert _trusted("2", sidecar.to_json(), key)[0] == sidecar
    trusted, why = _trusted("²", sidecar.to_json(), key)
    assert trusted is None and why and "²" in why


def test_a_copy_out_reply_with_a_non_ascii_size_is_refused() -> None:
    with pytest.raises(OperationError, match="copy out of the cache printed"):
        _copied_line(["copied", "²", "1234"], "cksum", "node00")
