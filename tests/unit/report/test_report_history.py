"""Step changes in a test's history: a level shift beyond its own run-to-run spread."""

from __future__ import annotations

import pytest

from pytest_hwbench.report.history import Run, find_steps, order_runs, sparkline


def _steps(values: list[float | None], notches: list[float | None] | None = None) -> list[tuple]:
    found = find_steps(values, notches or [None] * len(values))
    return [(s.index, s.before, s.after, s.tentative) for s in found]


def test_a_clean_step_is_found_at_the_first_run_at_the_new_level() -> None:
    assert _steps([1, 1, 1, 2, 2, 2]) == [(3, 1.0, 2.0, False)]
    assert _steps([1.0, 1.01, 0.99, 1.0, 1.5, 1.49, 1.52]) == [(4, 1.0, 1.5, False)]
    assert _steps([1, 1, 1, 2, 2, 2, 3, 3, 3]) == [(3, 1.0, 2.0, False), (6, 2.0, 3.0, False)]
    assert _steps([1, 1, 2, 2, 1, 1]) == [(2, 1.0, 2.0, False), (4, 2.0, 1.0, True)]


def test_runs_without_the_figure_are_passed_over_and_keep_their_places() -> None:
    assert _steps([1, None, 1, 2, None, 2, 2]) == [(3, 1.0, 2.0, False)]


def test_a_step_at_the_newest_runs_is_tentative() -> None:
    assert _steps([1, 1, 1, 1, 2]) == [(4, 1.0, 2.0, True)]
    assert _steps([1, 2]) == [(1, 1.0, 2.0, True)]


@pytest.mark.parametrize(
    "values",
    [
        [1, 1, 5, 1, 1],  # one slow run in the middle: a spike, not a step
        [1, 2, 1, 2, 1, 2, 1, 2],  # a test that swings from run to run
        [1, 1.1, 1.2, 1.3, 1.4, 1.5],  # a drift, no commit to blame
        [1.0, 1.01, 1.0, 1.015, 1.0],  # within 2%
        [5],
        [],
    ],
)
def test_noise_spikes_and_drifts_are_not_steps(values: list[float | None]) -> None:
    assert _steps(values) == []


def test_a_medians_notch_widens_what_counts() -> None:
    values: list[float | None] = [1.0, 1.0, 1.0, 1.1, 1.1, 1.1]
    assert _steps(values) == [(3, 1.0, 1.1, False)]
    # Each run's median is only known to +-0.06: a 10% shift is within 2 notches.
    assert _steps(values, [0.06] * 6) == []


def test_runs_are_placed_by_their_commits_date_else_by_when_they_ran() -> None:
    runs = [
        Run("c" * 40, "c.json", committed="2026-11-03T00:00:00+00:00", created="2026-11-04"),
        Run("a" * 40, "a.json", committed="2026-11-01T00:00:00+00:00", created="2026-11-05"),
        Run("b" * 40, "b.json", committed="2026-11-02T00:00:00+00:00", created="2026-11-01"),
    ]
    assert order_runs(runs) == [1, 2, 0]  # re-running an old commit later keeps its place
    assert runs[1].date == "2026-11-01"
    assert runs[1].short == "aaaaaaa"
    runs.append(Run("d" * 40, "d.json", created="2026-11-02"))  # an older report: no date
    assert order_runs(runs) == [2, 3, 0, 1]


def test_a_sparkline_spans_the_series_and_leaves_gaps() -> None:
    assert sparkline([1, 1, 2, None, 3]) == "\u2581\u2581\u2585 \u2588"
    assert sparkline([4, 4]) == "\u2581\u2581"
    assert sparkline([None]) == ""


def test_a_least_change_keeps_small_moves_out() -> None:
    kib = 1024.0
    values: list[float | None] = [952 * kib, 872 * kib]  # a small CPU peak, run to run
    assert _steps(values) == [(1, 952 * kib, 872 * kib, True)]
    assert find_steps(values, [None, None], least=2**20) == []
    assert len(find_steps([1e6, 1e6, 1e6, 5e6], [None] * 4, least=2**20)) == 1
