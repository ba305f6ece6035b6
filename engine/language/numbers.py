"""Whole numbers as files and command lines write them: ASCII digits only.

`str.isdigit()` is true for '²' (which `int()` then refuses) and for '٢٤' (which `int()` reads as 24); neither is a
number any template, script, conf or HTTP header of headnode means, so every number is read here.
"""

from __future__ import annotations

MAX_DIGITS = 18  # past any size, count or port; int() itself refuses strings of more than 4,300 digits


def whole_number(text: str) -> int | None:
    """The value of `text` when it is 1 to MAX_DIGITS ASCII digits (leading zeros aside), else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= MAX_DIGITS else None
