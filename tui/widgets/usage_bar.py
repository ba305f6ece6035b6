"""How full something is, as a text bar: for a network's leases or a host's disk."""

from __future__ import annotations

from rich.text import Text

FULL, EMPTY = "█", "░"


def usage_text(used: int, size: int, width: int = 12) -> Text:
    """A bar `width` cells wide, then `used/size`; amber past 80 %, red when full."""
    fraction = used / size if size else 0.0
    filled = round(fraction * width)
    if used and not filled:
        filled = 1  # one lease in 65,534 still shows
    style = "red" if size and used >= size else "yellow" if fraction >= 0.8 else "green"
    text = Text()
    text.append(FULL * filled, style=style)
    text.append(EMPTY * (width - filled), style="dim")
    text.append(f" {used}/{size}")
    return text
