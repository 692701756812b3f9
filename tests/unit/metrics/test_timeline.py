from __future__ import annotations

import json
import math

import pytest

from pytest_hwbench.metrics.memory import MemorySample, MemoryTimeline


def _wave(timeline: MemoryTimeline, n: int) -> None:
    for i in range(n):
        value = int(1000 + 500 * math.sin(i / 7.0))
        timeline.append(MemorySample(t=i * 0.01, values={"a": value, "b": i}))


def test_columns_and_marks() -> None:
    timeline = MemoryTimeline(["allocated", "reserved"], interval_s=0.01)
    timeline.append(MemorySample(0.0, {"allocated": 1, "reserved": 2}))
    timeline.append(MemorySample(0.01, {"allocated": 5}, label="forward"))
    assert timeline.t == [0.0, 0.01]
    assert timeline.column("allocated") == [1, 5]
    assert timeline.column("reserved") == [2, None]
    assert [(m.t, m.label) for m in timeline.marks] == [(0.01, "forward")]
    assert timeline.samples()[1].label == "forward"


def test_json_round_trip() -> None:
    timeline = MemoryTimeline(["a", "b"], interval_s=0.005, max_samples=64, sampler="process")
    _wave(timeline, 40)
    timeline.append(MemorySample(0.5, {"a": 7, "b": 8}, label="end"))
    data = json.loads(json.dumps(timeline.to_dict()))
    again = MemoryTimeline.from_dict(data)
    assert again.to_dict() == timeline.to_dict()
    assert again.interval_s == 0.005
    assert again.sampler == "process"


def test_from_dict_rejects_ragged_columns() -> None:
    with pytest.raises(ValueError, match="series 'a' has 1 values but t has 2"):
        MemoryTimeline.from_dict({"t": [0, 1], "series": {"a": [1]}, "marks": []})


def test_length_stays_bounded_and_every_extreme_survives() -> None:
    timeline = MemoryTimeline(["a", "b"], interval_s=0.01, max_samples=200)
    spike_at = 3_333
    for i in range(20_000):
        a = 1_000 + (i % 17)
        if i == spike_at:
            a = 10**9  # one-sample spike
        if i == 15_000:
            a = -5  # one-sample trough
        timeline.append(MemorySample(t=i * 0.01, values={"a": a, "b": i}))
    assert len(timeline) <= 200
    assert timeline.samples_seen == 20_000
    assert timeline.downsampled
    column = timeline.column("a")
    assert max(v for v in column if v is not None) == 10**9
    assert min(v for v in column if v is not None) == -5
    assert timeline.t[column.index(10**9)] == pytest.approx(spike_at * 0.01)
    assert timeline.column("b")[0] == 0
    assert timeline.column("b")[-1] == 19_999
    assert timeline.t == sorted(timeline.t)


def test_marks_survive_downsampling() -> None:
    timeline = MemoryTimeline(["a"], interval_s=0.01, max_samples=32)
    for i in range(1_000):
        timeline.append(MemorySample(i * 0.01, {"a": 5}, label="step" if i % 100 == 0 else None))
    assert len(timeline.marks) == 10


def test_too_small_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        MemoryTimeline(["a"], interval_s=None, max_samples=4)
