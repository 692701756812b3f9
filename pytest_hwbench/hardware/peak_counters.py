"""The process-wide high-water counters that everything resetting them shares.

A device's allocator peaks (and the host's VmHWM) are global to the process: a capability probe
of a backend, a memory metric and the plugin's RSS peak probe may all reset them. Whoever resets a
counter first lets every other holder running on it fold in what the counter has seen, so nested
and overlapping measurements all keep exact peaks. It lives in the hardware layer, which resets
counters in its probes, so that the metrics above it can join without anything pointing up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Protocol

__all__ = [
    "HighWaterHolder",
    "before_peak_reset",
    "counters_lock",
    "fold_running_high_water",
    "holders_of",
    "join_shared_counter",
    "peak_counter_key",
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
#: Held while a counter is reset or its holders change; take it before any holder's own lock.
counters_lock = threading.RLock()


def peak_counter_key(torch_module: str, index: int) -> tuple[str, int, int]:
    """The key of one device's allocator peak counters (torch submodule, process, index)."""
    return (torch_module, os.getpid(), index)


def before_peak_reset(torch_module: str, index: int) -> None:
    """Call before resetting a device's peak counters outside a metric (a capability probe).

    Running holders on that device first keep what their high-water marks have seen, so the
    reset cannot erase a peak they will report as exact.
    """
    fold_running_high_water(peak_counter_key(torch_module, index))


def holders_of(counters: Iterable[Hashable]) -> set[HighWaterHolder]:
    """Every holder running on any of `counters` (call with `counters_lock` held)."""
    return {holder for counter in counters for holder in _running_by_counter.get(counter, ())}


def fold_running_high_water(counter: Hashable) -> None:
    """Make every running metric on `counter` keep its high-water marks before a reset."""
    with counters_lock:
        for metric in list(_running_by_counter.get(counter, ())):
            metric._fold_high_water()


def reset_shared_counter(
    holder: HighWaterHolder, counter: Hashable, reset: Callable[[], str | None]
) -> str | None:
    """Fold the others running on `counter`, `reset()` it, and register `holder` on it.

    Returns `reset`'s refusal (then `holder` is not registered), or None.
    """
    with counters_lock:
        fold_running_high_water(counter)
        refused = reset()
        if refused is None:
            join_shared_counter(holder, counter)  # the lock is reentrant
        return refused


def join_shared_counter(holder: HighWaterHolder, counter: Hashable) -> None:
    """Register `holder` on `counter` without resetting it (its mark is already right)."""
    with counters_lock:
        holders = _running_by_counter.get(counter)
        if holders is None:  # not setdefault(counter, set()): a set per call, for every test
            holders = _running_by_counter[counter] = set()
        holders.add(holder)


def release_shared_counter(holder: HighWaterHolder, counter: Hashable) -> None:
    """Stop telling `holder` about resets of `counter`."""
    with counters_lock:
        holders = _running_by_counter.get(counter)
        if holders is not None:
            holders.discard(holder)
