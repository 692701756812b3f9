"""Driving pytest-benchmark's ``benchmark`` fixture: its checks, its statistics, and why not.

What ``hw_benchmark`` needs to know of pytest-benchmark's behaviour, kept apart from the fixture:
``pedantic``'s argument checks and call arguments (applied where pytest-benchmark is not running
too), the statistics it computed, and why a run's benchmarks are untimed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import pytest

from pytest_hwbench.names import XDIST_WORKER_ENV

__all__ = [
    "Aborted",
    "Untimed",
    "call_arguments",
    "check_pedantic",
    "timing_stats",
    "untimed_reason",
]


class Aborted(Exception):
    """Hands pytest-benchmark's fixture the failure of a test that never reached it."""


@dataclasses.dataclass(frozen=True)
class Untimed:
    """Why a run has no timings, and the warning to record when the user likely wanted them."""

    reason: str
    warning: str | None = None


def timing_stats(benchmark: Any) -> dict[str, Any]:
    """Seconds per call over the rounds pytest-benchmark ran (its ``stats`` object)."""
    metadata = benchmark.stats
    stats = metadata.stats
    return {
        "min": float(stats.min),
        "max": float(stats.max),
        "mean": float(stats.mean),
        "median": float(stats.median),
        "stddev": float(stats.stddev),
        # The rounds' interquartile range: with `rounds`, how sure the median is (compare).
        "iqr": float(stats.iqr),
        "rounds": int(stats.rounds),
        "iterations": int(metadata.iterations),
    }


def check_pedantic(
    rounds: object, warmup: object, iterations: object, setup: object | None
) -> None:
    """pytest-benchmark's checks of pedantic's arguments, also where it is not running."""
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError("Must have positive int for `iterations`.")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError("Must have positive int for `rounds`.")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError("Must have positive int for `warmup_rounds`.")
    if iterations > 1 and setup:
        raise ValueError("Can't use more than 1 `iterations` with a `setup` function.")


def call_arguments(
    setup: Callable[[], Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of one call: what `setup` returns, if anything, else `args` and `kwargs`."""
    if setup is not None:
        produced = setup()
        if produced:
            if args or kwargs:
                raise TypeError("Can't use `args` or `kwargs` if `setup` returns the arguments.")
            new_args, new_kwargs = produced
            return tuple(new_args), dict(new_kwargs)
    return args, kwargs


def untimed_reason(config: pytest.Config) -> Untimed:
    """Why pytest-benchmark's fixture is disabled in this process."""
    disabled_by_user = bool(config.getoption("benchmark_disable", False)) and not bool(
        config.getoption("benchmark_enable", False)
    )
    if disabled_by_user:
        return Untimed("--benchmark-disable")
    if hasattr(config, "workerinput") or os.environ.get(XDIST_WORKER_ENV):
        reason = "pytest-benchmark disables itself under pytest-xdist"
        return Untimed(
            reason,
            f"timings were not collected: {reason} (-n); memory was measured. Run without -n "
            "(or -n 0) to time",
        )
    return Untimed("pytest-benchmark disabled benchmarks (see its warning)")
