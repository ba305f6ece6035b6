"""The console's garbage collector, kept off the key-press path.

With the default thresholds a full collection came every ~2 s beside 100 running transfers (Textual's render
caches promote many short-lived objects) and took 35-240 ms, on whichever key press it fell. Frozen once the
console has started and painted, what start-up built (modules, the screens' DOM) is never scanned again, and a
full collection comes after FULL_AFTER collections of the middle generation instead of 10: minutes apart.
"""

from __future__ import annotations

import gc

FULL_AFTER = 1000  # middle-generation collections before a full one (CPython's default: 10)


def keep_collections_short() -> tuple[int, int, int]:
    """Collect once, freeze what survives, and make full collections rare; the thresholds before, to restore."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(before[0], before[1], FULL_AFTER)
    return before


def restore_collections(thresholds: tuple[int, int, int]) -> None:
    """Undo keep_collections_short: the frozen objects collectable again, the thresholds as they were."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)
