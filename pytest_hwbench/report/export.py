"""Report figures in other tools' formats (``hwbench export``).

``github-action-benchmark``: the ``customSmallerIsBetter`` JSON that the GitHub Action
benchmark-action/github-action-benchmark reads, a list of ``{"name", "unit", "value"}`` objects
(with optional ``"range"`` and ``"extra"``): each measured test's peak memory growth (bytes),
where the test has benchmark statistics its median time (seconds), and where its energy was
measured the joules its device used (J).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pytest_hwbench.report.model import (
    benchmark_median_s,
    energy_joules,
    entry_label,
    finite_number,
    primary_stats,
)
from pytest_hwbench.units import format_bytes, format_duration

__all__ = ["EXPORTS", "export_report", "github_action_benchmark"]


def _label(entry: Mapping[str, Any]) -> str:
    device = str(entry.get("device") or entry.get("platform") or "")
    return entry_label(str(entry.get("nodeid", "?")), device)


#: Outcomes whose figures are history: a failed test's peak or time would be charted as if real.
_MEASURED_OUTCOMES = frozenset({"passed", "xfailed", "xpassed"})


def github_action_benchmark(
    report: Mapping[str, Any], *, include_failed: bool = False
) -> list[dict[str, Any]]:
    """The customSmallerIsBetter JSON: peak memory growth (bytes), medians (s), energy (J).

    One figure per measured test and device, one per timed benchmark, one per energy figure.
    Skipped tests are left out, and so are failed, errored and crashed ones unless
    `include_failed`: a test that failed its memory limit, or stopped early, is not a point of
    its history.
    """
    results: dict[str, dict[str, Any]] = {}
    for entry in report.get("tests") or []:
        if not isinstance(entry, Mapping) or entry.get("outcome") == "skipped":
            continue
        if not include_failed and entry.get("outcome") not in _MEASURED_OUTCOMES:
            continue
        label = _label(entry)
        stats = primary_stats(entry)
        if stats is not None and isinstance(stats.get("peak_delta_bytes"), int):
            primary = entry["memory"]["primary_series"]
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
        median = benchmark_median_s(entry)
        if median is not None:
            timing = entry["benchmark"]
            timing = timing.get("stats", timing)
            name = f"{label} - time"
            item: dict[str, Any] = {"name": name, "unit": "s", "value": median}
            stddev = finite_number(timing.get("stddev"))
            if stddev is not None:
                item["range"] = f"± {stddev:.3g}"
            rounds = timing.get("rounds")
            item["extra"] = "median" + (f" of {rounds} rounds" if rounds else "")
            results[name] = item
        joules = energy_joules(entry)
        if joules is not None:
            energy = entry["energy"]
            name = f"{label} - energy"
            domains = ", ".join(
                f"{domain} {values.get('joules', 0):.4g} J"
                for domain, values in (energy.get("domains") or {}).items()
            )
            duration = finite_number(energy.get("duration_s"))
            results[name] = {
                "name": name,
                "unit": "J",
                "value": joules,
                "extra": (
                    f"{'measured' if energy.get('exact') else 'estimated'}"
                    + ("" if duration is None else f" over {format_duration(duration)}")
                    + (f"; {domains}" if domains else "")
                    + "; device-wide counters"
                ),
            }
    return list(results.values())


#: Each export format: what it makes of a report (with its options), as JSON-able data.
EXPORTS: Mapping[str, Callable[..., Any]] = {
    "github-action-benchmark": github_action_benchmark,
}


def export_report(report: Mapping[str, Any], fmt: str, **options: Any) -> Any:
    """The report in export format `fmt` (a key of `EXPORTS`), as JSON-able data."""
    try:
        exporter = EXPORTS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown export format {fmt!r}; known: {', '.join(sorted(EXPORTS))}"
        ) from None
    return exporter(report, **options)
