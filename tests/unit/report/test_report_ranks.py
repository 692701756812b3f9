"""A distributed test's ranks in the report tools: a track per rank, the rank that grew most."""

from __future__ import annotations

from typing import Any

from report_builders import entry, report

from pytest_hwbench.report.html import _test_data
from pytest_hwbench.report.model import primary_stats
from pytest_hwbench.report.trace import iter_trace_events


def _distributed_entry() -> dict[str, Any]:
    ranks = []
    for rank, growth, start in ((0, 2**20, 1.5), (1, 3 * 2**20, 2.0)):
        memory = entry(f"t.py::test_ddp#{rank}", growth=growth)["memory"]
        ranks.append(
            {"rank": rank, "device": "cpu", "status": "passed", "start_s": start, "memory": memory}
        )
    data = entry("t.py::test_ddp", growth=4096)  # the driver's own: it only waited
    data["ranks"] = ranks
    return data


def test_the_rank_that_grew_most_stands_for_the_test() -> None:
    stats = primary_stats(_distributed_entry())
    assert stats is not None
    assert stats["peak_delta_bytes"] == 3 * 2**20


def test_the_trace_has_a_counter_track_per_rank() -> None:
    events = list(iter_trace_events(report(_distributed_entry())))
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert {"rss", "rank 0 rss", "rank 1 rss"} <= counters
    rank1 = [e for e in events if e["name"] == "rank 1 rss"]
    values = [e["args"]["bytes"] for e in rank1]
    assert max(values) - values[0] == 3 * 2**20  # its own timeline
    test_start = next(e["ts"] for e in events if e["ph"] == "X")
    assert rank1[0]["ts"] == test_start + 2.0e6  # from where the rank began, in the test


def test_the_page_draws_every_rank_on_one_axis() -> None:
    data = _test_data(_distributed_entry())
    memory = data["memory"]
    assert memory["primary"] == "rank 0 rss"
    assert set(memory["values"]) == {"rank 0 rss", "rank 1 rss"}
    assert memory["stats"]["rank 1 rss"]["peak_delta_bytes"] == 3 * 2**20
    assert all(len(v) == len(memory["t"]) for v in memory["values"].values())
    # One axis from the ranks' common start: rank 0 began at 1.5 s, rank 1 at 2.0 s.
    assert memory["t"][0] == 1.5
    assert memory["values"]["rank 1 rss"][0] is None  # rank 1 had not begun yet
    assert memory["values"]["rank 0 rss"][0] is not None
    assert data["ranks"] == [
        {"rank": 0, "device": "cpu", "status": "passed"},
        {"rank": 1, "device": "cpu", "status": "passed"},
    ]
