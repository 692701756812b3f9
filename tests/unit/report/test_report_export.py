from __future__ import annotations

import pytest
from report_builders import entry, report

from pytest_hwbench.report.export import export_report, github_action_benchmark


def test_peak_growth_per_test_and_device_in_bytes() -> None:
    data = report(
        entry("t.py::test_a[cpu]", growth=3 * 2**20),
        entry("t.py::test_b", device="cuda", growth=2**30, exact=False),
        entry("t.py::test_plain", growth=None),
        entry("t.py::test_skip", outcome="skipped", growth=None),
    )
    out = github_action_benchmark(data)
    assert [(r["name"], r["unit"], r["value"]) for r in out] == [
        ("t.py::test_a[cpu] - peak memory growth", "bytes", 3 * 2**20),
        ("t.py::test_b (cuda) - peak memory growth", "bytes", 2**30),
    ]
    assert out[0]["extra"].startswith("rss series, exact peak; 3.0 MiB over a start of 100.0 MiB")
    assert "sampled peak" in out[1]["extra"]
    for item in out:
        assert set(item) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(item["value"], (int, float))


def test_benchmark_medians_in_seconds() -> None:
    stats = {"stats": {"median": 0.0125, "stddev": 0.0004, "rounds": 20}}
    out = export_report(
        report(entry("a", growth=None, benchmark=stats), entry("b", benchmark={"median": 2.0})),
        "github-action-benchmark",
    )
    assert out == [
        {"name": "a (cpu) - time", "unit": "s", "value": 0.0125, "range": "± 0.0004",
         "extra": "median of 20 rounds"},
        {"name": "b (cpu) - peak memory growth", "unit": "bytes", "value": 2**20,
         "extra": out[1]["extra"]},
        {"name": "b (cpu) - time", "unit": "s", "value": 2.0, "extra": "median"},
    ]  # fmt: skip


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown export format 'csv'; known: github-action"):
        export_report(report(), "csv")
