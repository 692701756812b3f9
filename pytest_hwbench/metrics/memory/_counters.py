"""The high-water counters metrics share (VmHWM, each device's allocator peaks).

When one metric or probe resets a counter, every other one running on it first folds in what the
counter has seen, so nested and overlapping measurements all keep exact peaks. Kept apart from
`base` so that the RSS peak probe loads without the metric machinery.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Protocol

__all__ = [
    "HighWaterHolder",
    "fold_running_high_water",
    "join_shared_counter",
    "release_shared_counter",
    "reset_shared_counter",
]


class HighWaterHolder(Protocol):
    """Anything measuring through a resettable high-water counter (a metric, a peak probe)."""

    def _fold_high_water(self) -> None:
        """Keep the high-water marks seen so far: the counter is about to be reset."""


# High-water marks are process-wide (VmHWM) or per device (CUDA allocator): when one metric resets
# a counter, every other running metric on the same counter first folds in what it has seen.
_running_by_counter: dict[Hashable, set[HighWaterHolder]] = {}
_counters_lock = threading.RLock()


def fold_running_high_water(counter: Hashable) -> None:
    """Make every running metric on `counter` keep its high-water marks before a reset."""
    with _counters_lock:
        for metric in list(_running_by_counter.get(counter, ())):
            metric._fold_high_water()


def reset_shared_counter(
    holder: HighWaterHolder, counter: Hashable, reset: Callable[[], str | None]
) -> str | None:
    """Fold the others running on `counter`, `reset()` it, and register `holder` on it.

    Returns `reset`'s refusal (then `holder` is not registered), or None.
    """
    with _counters_lock:
        fold_running_high_water(counter)
        refused = reset()
        if refused is None:
            join_shared_counter(holder, counter)  # the lock is reentrant
        return refused


def join_shared_counter(holder: HighWaterHolder, counter: Hashable) -> None:
    """Register `holder` on `counter` without resetting it (its mark is already right)."""
    with _counters_lock:
        holders = _running_by_counter.get(counter)
        if holders is None:  # not setdefault(counter, set()): a set per call, for every test
            holders = _running_by_counter[counter] = set()
        holders.add(holder)


def release_shared_counter(holder: HighWaterHolder, counter: Hashable) -> None:
    """Stop telling `holder` about resets of `counter`."""
    with _counters_lock:
        holders = _running_by_counter.get(counter)
        if holders is not None:
            holders.discard(holder)
