"""Argument types shared by the CLI's commands."""

from __future__ import annotations

import argparse

from engine.language.numbers import whole_number


def whole_number_argument(text: str) -> int:
    """argparse's `type` for a count, id or port: ASCII digits only (int() reads '٢٤' as 24)."""
    number = whole_number(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return number
