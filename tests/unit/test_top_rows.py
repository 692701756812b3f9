"""The terminal summary's bounded top-N rows agree with sorting every row."""

from __future__ import annotations

import random

from pytest_hwbench.plugin.summary import SummaryRow, TopRows


def _row(platform: str, growth: int, nodeid: str) -> SummaryRow:
    return SummaryRow(platform, growth, growth + 100, "rss", True, nodeid)


def _top_by_sorting(rows: list[SummaryRow], size: int) -> dict[str, list[str]]:
    """What a stable sort of every row shows: per platform, the `size` largest, ties in order."""
    shown: dict[str, list[str]] = {}
    for platform in {row.platform for row in rows}:
        mine = [row for row in rows if row.platform == platform]
        mine.sort(key=lambda row: row.growth_bytes, reverse=True)
        shown[platform] = [row.nodeid for row in mine[:size]]
    return shown


def _top_kept(top: TopRows) -> dict[str, list[str]]:
    shown: dict[str, list[str]] = {}
    for row in sorted(top.rows(), key=lambda row: row.growth_bytes, reverse=True):
        shown.setdefault(row.platform, []).append(row.nodeid)
    return shown


def test_top_rows_match_a_stable_sort_of_every_row() -> None:
    rng = random.Random(7)
    for size in (1, 3, 10):
        rows = [
            _row(rng.choice(["cpu", "cuda"]), rng.choice([0, 0, 0, 4096, 2**20, -512]), f"t{i}")
            for i in range(500)
        ]
        top = TopRows(size)
        for row in rows:
            top.add(row)
        assert _top_kept(top) == _top_by_sorting(rows, size)
        assert len(top.rows()) <= 2 * size


def test_ties_keep_the_earlier_test_and_rows_come_in_run_order() -> None:
    top = TopRows(2)
    for name in ("a", "b", "c"):
        top.add(_row("cpu", 0, name))
    assert [row.nodeid for row in top.rows()] == ["a", "b"]
    top.add(_row("cpu", 5, "d"))
    assert [row.nodeid for row in top.rows()] == ["a", "d"]
    assert not top.would_keep("cpu", 0)
    assert top.would_keep("cpu", 1)
    assert top.would_keep("cuda", 0)


def test_size_zero_keeps_nothing() -> None:
    top = TopRows(0)
    top.add(_row("cpu", 10, "a"))
    assert top.rows() == []
    assert not top.would_keep("cpu", 10)
