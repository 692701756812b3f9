"""Report figures in other tools' formats (``hwbench export``).

``github-action-benchmark``: the ``customSmallerIsBetter`` JSON that the GitHub Action
benchmark-action/github-action-benchmark reads, a list of ``{"name", "unit", "value"}`` objects
(with optional ``"range"`` and ``"extra"``): each measured test's peak memory growth (bytes) and,
where the test has benchmark statistics, its median time (seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pytest_hwbench.units import format_bytes

__all__ = ["FORMATS", "export_report", "github_action_benchmark"]


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _label(entry: Mapping[str, Any]) -> str:
    nodeid = str(entry.get("nodeid", "?"))
    device = str(entry.get("device") or entry.get("platform") or "")
    # Parametrized over devices, the id already says which one ("test_x[cuda]").
    return nodeid if not device or f"[{device}" in nodeid else f"{nodeid} ({device})"


def github_action_benchmark(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Peak memory growth per test and device, and benchmark medians, as customSmallerIsBetter."""
    results: dict[str, dict[str, Any]] = {}
    for entry in report.get("tests") or []:
        if not isinstance(entry, Mapping) or entry.get("outcome") == "skipped":
            continue
        label = _label(entry)
        memory = entry.get("memory")
        if isinstance(memory, Mapping):
            primary = memory.get("primary_series")
            stats = memory.get("series", {}).get(primary)
            if isinstance(stats, Mapping) and isinstance(stats.get("peak_delta_bytes"), int):
                exact = "exact" if stats.get("exact_peak") else "sampled"
                name = f"{label} - peak memory growth"
                results[name] = {
                    "name": name,
                    "unit": "bytes",
                    "value": stats["peak_delta_bytes"],
                    "extra": (
                        f"{primary} series, {exact} peak; "
                        f"{format_bytes(stats['peak_delta_bytes'])} over a start of "
                        f"{format_bytes(stats.get('start_bytes', 0))}; "
                        f"outcome {entry.get('outcome')}"
                    ),
                }
        benchmark = entry.get("benchmark")
        stats = benchmark.get("stats", benchmark) if isinstance(benchmark, Mapping) else None
        median = _number(stats.get("median")) if isinstance(stats, Mapping) else None
        if isinstance(stats, Mapping) and median is not None:
            name = f"{label} - time"
            item: dict[str, Any] = {"name": name, "unit": "s", "value": median}
            stddev = _number(stats.get("stddev"))
            if stddev is not None:
                item["range"] = f"± {stddev:.3g}"
            rounds = stats.get("rounds")
            item["extra"] = "median" + (f" of {rounds} rounds" if rounds else "")
            results[name] = item
    return list(results.values())


FORMATS = {"github-action-benchmark": github_action_benchmark}


def export_report(report: Mapping[str, Any], fmt: str) -> Any:
    """The report in format `fmt` (a key of `FORMATS`), as JSON-able data."""
    try:
        exporter = FORMATS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown export format {fmt!r}; known: {', '.join(sorted(FORMATS))}"
        ) from None
    return exporter(report)
