"""Statistics the benchmark scripts share: a confidence interval of a median, a quiet time."""

from __future__ import annotations

import math
from collections.abc import Sequence


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median (order statistics, binomial).

    The k-th smallest and k-th largest values bracket the median with at least `confidence`,
    for the largest k with P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2. None when there
    are too few values for that confidence (5 or fewer at 95%).
    """
    n = len(values)
    ordered = sorted(values)
    tail = (1 - confidence) / 2
    cumulative, k = 0.0, 0
    while k < n:
        next_cumulative = cumulative + math.comb(n, k) / 2**n
        if next_cumulative > tail:
            break
        cumulative, k = next_cumulative, k + 1
    if k == 0:
        return None
    return ordered[k - 1], ordered[n - k]


def quiet_time(seconds: Sequence[float]) -> float:
    """The 10th percentile of run times: a shared VM's stolen time only ever makes runs slower."""
    ordered = sorted(seconds)
    return ordered[(len(ordered) - 1) // 10]
