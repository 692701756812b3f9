from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_builders import entry, report

from pytest_hwbench.report import ReportError, load_report
from pytest_hwbench.report.compare import compare_reports, load_for_compare
from pytest_hwbench.report.thresholds import Threshold, ThresholdError, parse_threshold

MiB = 2**20
Writer = Callable[[dict[str, Any], str], Path]


@pytest.mark.parametrize(
    ("text", "metric", "limit", "relative"),
    [
        ("peak:+10%", "peak", 10.0, True),
        ("peak:10%", "peak", 10.0, True),
        ("peak:2.5%", "peak", 2.5, True),
        ("time:5%", "time", 5.0, True),
        ("time:0%", "time", 0.0, True),
        (" peak : +256MiB ", "peak", 256 * MiB, False),
        ("peak:100MB", "peak", 100e6, False),
        ("peak:4096", "peak", 4096, False),
        ("peak:0", "peak", 0, False),
        ("time:+5ms", "time", 5e-3, False),
        ("time:0.5s", "time", 0.5, False),
        ("time:0.001", "time", 1e-3, False),
        ("time:0", "time", 0.0, False),
        ("duration:+25%", "duration", 25.0, True),
        ("duration:+2ms", "duration", 2e-3, False),
        ("energy:+10%", "energy", 10.0, True),
        ("energy:+5J", "energy", 5.0, False),
        ("energy:500mJ", "energy", 0.5, False),
        ("energy:2", "energy", 2.0, False),
    ],
)
def test_parse_threshold_forms(text: str, metric: str, limit: float, relative: bool) -> None:
    threshold = parse_threshold(text)
    assert (threshold.metric, threshold.relative) == (metric, relative)
    assert threshold.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    "text",
    ["peak", "peak:", "peak:+", "mem:+10%", "peak:-10%", "time:-5ms", "peak:ten%", "peak:+10%%",
     "peak:10 parsecs", "time:5 fortnights", "min:5%", ":5%", "peak:+10%:x", "energy:5 calories",
     "energy:-1J"],
)  # fmt: skip
def test_parse_threshold_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ThresholdError) as excinfo:
        parse_threshold(text)
    message = str(excinfo.value)
    assert repr(text) in message
    for form in ("peak:+10%", "peak:+256MiB", "time:+5ms", "energy:+5J"):
        assert form in message
    assert isinstance(excinfo.value, ValueError)


def test_relative_threshold_is_strict_like_pytest_benchmark() -> None:
    threshold = parse_threshold("peak:+10%")
    assert not threshold.crossed(100, 110)  # exactly 10% is allowed, as in pytest-benchmark
    assert threshold.crossed(100, 111)
    assert not threshold.crossed(100, 50)  # improvements never fail
    assert threshold.change(100, 125) == pytest.approx(25.0)


def test_relative_threshold_from_zero() -> None:
    threshold = parse_threshold("peak:10%")
    assert threshold.change(0, 0) == 0.0
    assert threshold.change(0, 4096) == math.inf
    assert threshold.crossed(0, 4096)
    assert "base was 0" in threshold.format_change(0, 4096)


def test_a_combined_threshold_fails_only_when_both_limits_are_crossed() -> None:
    threshold = parse_threshold("peak:+10%,+1MiB")
    assert parse_threshold("peak:1MiB, 10%").describe() == threshold.describe()  # any order
    assert not threshold.crossed(0, 512 * 1024)  # +inf% but only 512 KiB: a small test's noise
    assert not threshold.crossed(100 * MiB, 105 * MiB)  # +5 MiB but only +5%
    assert threshold.crossed(10 * MiB, 12 * MiB)  # +20% and +2 MiB
    assert threshold.describe() == "peak:+10%,+1.0 MiB"
    assert threshold.format_change(10 * MiB, 12 * MiB) == "+20.0% and +2.0 MiB"
    assert threshold.format_change(0, 2 * MiB) == "+2.0 MiB (base was 0)"
    comparison = compare_reports(
        report(entry("small", growth=0), entry("big", growth=10 * MiB)),
        report(entry("small", growth=300 * 1024), entry("big", growth=12 * MiB)),
        [threshold],
    )
    assert [c.new.nodeid for c in comparison.failures] == ["big"]
    assert (
        "+20.0% and +2.0 MiB > +10% and +1.0 MiB (peak:+10%,+1.0 MiB)"
        in (comparison.failures[0].failures[0])
    )


@pytest.mark.parametrize(
    "text", ["peak:+10%,+20%", "peak:+1MiB,+2MiB", "peak:+10%,+1MiB,+2MiB", "peak:+10%,"]
)
def test_a_combination_must_be_one_percentage_and_one_amount(text: str) -> None:
    with pytest.raises(ThresholdError, match="bad threshold"):
        parse_threshold(text)


def test_absolute_threshold() -> None:
    threshold = parse_threshold("time:+5ms")
    assert not threshold.crossed(0.100, 0.105)
    assert threshold.crossed(0.100, 0.1051)
    assert threshold.describe() == "time:+5.00 ms"
    assert parse_threshold("peak:+256MiB").describe() == "peak:+256.0 MiB"
    assert parse_threshold("peak:+10%").describe() == "peak:+10%"
    assert Threshold("peak", 0, relative=False).crossed(10, 11)


def test_matches_by_nodeid_and_device_and_lists_the_rest_apart() -> None:
    base = report(
        entry("t.py::test_same[cpu]", growth=10 * MiB),
        entry("t.py::test_same", device="cpu", growth=10 * MiB),
        entry("t.py::test_gone"),
        entry("t.py::test_skips", outcome="skipped", growth=None),
        entry("t.py::test_moves", device="cpu"),
    )
    new = report(
        entry("t.py::test_same[cpu]", growth=12 * MiB),
        entry("t.py::test_same", device="cpu", growth=10 * MiB),
        entry("t.py::test_added"),
        entry("t.py::test_skips", growth=None),
        entry("t.py::test_moves", device="cuda"),
    )
    comparison = compare_reports(base, new, [parse_threshold("peak:+10%")])
    assert [(c.new.nodeid, c.new.device) for c in comparison.changes] == [
        ("t.py::test_same[cpu]", "cpu"),
        ("t.py::test_same", "cpu"),
    ]
    assert {t.nodeid for t in comparison.added} == {"t.py::test_added", "t.py::test_moves"}
    assert {(t.nodeid, t.device) for t in comparison.removed} == {
        ("t.py::test_gone", "cpu"),
        ("t.py::test_moves", "cpu"),
    }
    assert [(b.outcome, n.outcome) for b, n in comparison.skipped] == [("skipped", "passed")]
    assert comparison.failed
    [failure] = comparison.failures
    assert failure.new.nodeid == "t.py::test_same[cpu]"
    assert "+20.0% > +10%" in failure.failures[0]


def test_no_threshold_never_fails() -> None:
    comparison = compare_reports(report(entry("a", growth=MiB)), report(entry("a", growth=9 * MiB)))
    assert not comparison.failed
    assert "no threshold given" in comparison.format_table()


def test_time_gates_benchmark_medians_and_duration_only_the_durations_asked_for() -> None:
    bench_base = {"stats": {"median": 0.010, "stddev": 0.001, "rounds": 10}}
    base = report(
        entry("a", duration_s=1.0, benchmark=bench_base),
        entry("b", duration_s=1.0, benchmark={"median": 0.010}),
        entry("c", duration_s=1.0, benchmark={"median": 0.010}),
    )
    new = report(
        entry("a", duration_s=1.0, benchmark={"stats": {"median": 0.012}}),
        entry("b", duration_s=1.0, benchmark={"median": 0.0101}),
        entry("c", duration_s=1.3, benchmark=None),
    )
    # A plain test's duration is no median: "c" slowed by 30% and time:+5% says nothing of it.
    timed = compare_reports(base, new, [parse_threshold("time:+5%")])
    assert [c.new.nodeid for c in timed.failures] == ["a"]
    assert [c.benchmarked for c in timed.changes] == [True, True, False]
    table = timed.format_table()
    assert " m " not in table
    assert not any(line.endswith(" m") for line in table.splitlines())
    assert "median base" in table
    assert "duration base" not in table
    assert "durations (setup + call + teardown, noisy) are not compared unless asked" in " ".join(
        table.split()
    )
    asked = compare_reports(base, new, [parse_threshold("duration:+25%")])
    assert [c.new.nodeid for c in asked.failures] == ["c"]
    assert "duration 1.00 s -> 1.30 s: +30.0% > +25%" in asked.failures[0].failures[0]
    assert "duration base" in asked.format_table()


def _timed(median: float, iqr: float | None, rounds: int = 25) -> dict[str, object]:
    stats: dict[str, object] = {"median": median, "stddev": 0.001, "rounds": rounds}
    if iqr is not None:
        stats["iqr"] = iqr
    return {"timed": True, **stats}


def test_a_median_crosses_a_time_threshold_only_by_more_than_its_rounds_noise() -> None:
    # Notch half-widths 1.58 x IQR / sqrt(25): 0.316 ms each for an IQR of 1 ms, so two medians
    # more than 0.632 ms apart differ; 10 ms -> 10.6 ms is +6% but within that noise.
    base = report(
        entry("noisy", benchmark=_timed(0.010, 0.001)),
        entry("clear", benchmark=_timed(0.010, 0.0001)),
        entry("older", benchmark=_timed(0.010, None)),  # a report from before iqr
    )
    new = report(
        entry("noisy", benchmark=_timed(0.0106, 0.001)),
        entry("clear", benchmark=_timed(0.0106, 0.0001)),
        entry("older", benchmark=_timed(0.0106, 0.001)),
    )
    comparison = compare_reports(base, new, [parse_threshold("time:+5%")])
    assert [c.new.nodeid for c in comparison.failures] == ["clear", "older"]
    (noisy,) = [c for c in comparison.changes if c.within_noise]
    assert noisy.new.nodeid == "noisy"
    assert noisy.within_noise == (
        "median time 10.00 ms -> 10.60 ms: +6.0% > +5% (time:+5%), but within the medians' "
        "noise (+/-632 us)",
    )
    verdict = "\n".join(comparison.verdict_lines())
    assert "1 benchmark(s) crossed a time threshold by less than their rounds' noise" in verdict
    assert "  noise noisy (cpu): median time 10.00 ms -> 10.60 ms" in verdict
    # Beyond the noise it fails as before; peaks are exact and never widened.
    further = compare_reports(
        base, report(entry("noisy", benchmark=_timed(0.0107, 0.001))), [parse_threshold("time:+5%")]
    )
    assert [c.new.nodeid for c in further.failures] == ["noisy"]


def test_the_table_fits_100_columns_cutting_long_node_ids_in_the_middle() -> None:
    long_id = "tests/integration/models/transformers/test_attention.py::" + "test_x" * 20
    comparison = compare_reports(
        report(entry(long_id, growth=MiB, benchmark={"median": 0.01}), entry("t.py::short")),
        report(entry(long_id, growth=2 * MiB, benchmark={"median": 0.02}), entry("t.py::short")),
    )
    table = comparison.format_table()
    assert max(len(line) for line in table.splitlines()) <= 100
    # Too many figures for the name beside them: each test's name on a line of its own, cut
    # in the middle so that its file and its test function's name stay.
    assert any(
        line.startswith("tests/integration/")
        and "…" in line
        and line.endswith(long_id[-30:] + " (cpu)")
        and len(line) == 100
        for line in table.splitlines()
    )
    assert "t.py::short (cpu)" in table.splitlines()
    wide = comparison.format_table(400).splitlines()
    assert any(line.startswith(long_id + " (cpu)  ") for line in wide)  # one line a test
    peak_only = compare_reports(
        report(entry(long_id, growth=MiB)), report(entry(long_id, growth=2 * MiB))
    ).format_table()
    assert max(len(line) for line in peak_only.splitlines()) <= 100
    assert "tests under tests/integration/models/transformers/" in peak_only.splitlines()
    assert any(
        line.startswith("test_attention.py::") and "…" in line and "+1.0 MiB" in line
        for line in peak_only.splitlines()
    )


def test_tests_a_new_run_deselected_are_not_called_removed() -> None:
    base = report(entry("t.py::test_a"), entry("t.py::test_b"))
    new = report(entry("t.py::test_a"))
    assert "removed (not in new): 1" in compare_reports(base, new).format_table()
    new["session"] = {"deselected": 1}
    text = compare_reports(base, new).format_table()
    assert "not run in new: the new run deselected 1 tests (-k, -m)" in text
    assert "1 compared, 0 new, 1 not run, 0 skipped" in text
    assert "removed" not in text
    new["session"] = {"workers": {"gw0": {"deselected": 1}, "gw1": {"deselected": 1}}}
    assert compare_reports(base, new).deselected_in_new == 1


def test_peak_threshold_ignores_unmeasured_tests() -> None:
    comparison = compare_reports(
        report(entry("a", growth=None), entry("b", growth=MiB)),
        report(entry("a", growth=MiB), entry("b", growth=None)),
        [parse_threshold("peak:0")],
    )
    assert not comparison.failed
    table = comparison.format_table()
    assert "a (cpu)  " in table


def test_absolute_peak_threshold_and_table_in_iec_units() -> None:
    comparison = compare_reports(
        report(entry("t.py::test_big", growth=512 * MiB, exact=False)),
        report(entry("t.py::test_big", growth=1024 * MiB)),
        [parse_threshold("peak:+256MiB"), parse_threshold("time:+50%")],
        base_name="base.json",
        new_name="new.json",
    )
    table = comparison.format_table().replace("\n      (", " (")
    assert "Comparing base.json (base) with new.json (new)" in table
    assert "512.0 MiB~" in table  # sampled peak marked
    assert "1.0 GiB" in table
    assert "+512.0 MiB (+100.0%)" in table
    assert (
        "FAILED t.py::test_big (cpu): peak growth 512.0 MiB -> 1.0 GiB: +512.0 MiB > +256.0 MiB "
        "(peak:+256.0 MiB)"
    ) in table
    assert "1 crossed a threshold (peak:+256.0 MiB, time:+50%)" in table


def test_incomplete_reports_are_noted() -> None:
    comparison = compare_reports(report(entry("a")), report(entry("a"), complete=False))
    assert "note: new is incomplete" in comparison.format_table()


def test_malformed_entries_name_the_report() -> None:
    bad = report(entry("a"))
    del bad["tests"][0]["nodeid"]
    with pytest.raises(ReportError, match=r"^new: test entry 0 is malformed"):
        compare_reports(report(entry("a")), bad)
    with pytest.raises(ReportError, match="base: .*'tests' is not a list"):
        compare_reports({"tests": None}, report())


def test_lean_load_keeps_everything_but_number_arrays(write_report: Writer) -> None:
    tricky = [
        'weird::test["t":[1,2,3]]',
        'q::test[\\"t\\":[1]]',
        "b::test[[1, 2], [3]]",
        "u::test[ünïcødé ✓]",
        'e::test["\\\\"]',
    ]
    data = report(*(entry(n) for n in tricky), entry("plain", benchmark={"data": [1.0, 2.0]}))
    data["machine"]["extra_list"] = [1, 2]
    path = write_report(data, "r.json")
    full = load_report(path)
    lean = load_for_compare(path)
    assert [t["nodeid"] for t in lean["tests"]] == [t["nodeid"] for t in full["tests"]]
    assert lean["tests"][0]["memory"]["timeline"]["t"] == []
    assert lean["tests"][0]["memory"]["series"] == full["tests"][0]["memory"]["series"]
    assert lean["tests"][0]["memory"]["timeline"]["marks"][0]["label"] == "inputs"
    assert compare_reports(full, full).changes == compare_reports(lean, lean).changes


def test_lean_load_reads_indented_json(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report(entry("a", growth=3 * MiB)), indent=2))
    lean = load_for_compare(path)
    assert lean["tests"][0]["memory"]["series"]["rss"]["peak_delta_bytes"] == 3 * MiB


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON"),
        ('"a string"', "no 'schema' key"),
        ('{"tests": []}', "no 'schema' key"),
        ('{"schema": "pytest-hwbench/3", "tests": []}', "'pytest-hwbench/3' is not supported"),
        ('{"schema": "pytest-hwbench/1", "tests": []}', "must contain ['complete', 'created'"),
        ('{"schema": "pytest-hwbench/1", "created": "x", "pytest_hwbench": "0", "complete": true, '
         '"machine": {}, "tests": {}}', "report: tests must be array"),
        ('{"schema": "pytest-hwbench/1", "created": "x", "pytest_hwbench": "0", "complete": true, '
         '"machine": {}, "tests": [{"nodeid": "t", "outcome": "passed", "platform": null, '
         '"device": null, "duration_s": NaN, "memory": null}]}', "NaN is not a number JSON allows"),
        (b"\xff\xfe{", "not JSON"),
    ],
)  # fmt: skip
def test_lean_load_refuses_bad_files(
    tmp_path: Path, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ReportError) as excinfo:
        load_for_compare(path)
    assert str(excinfo.value).startswith(str(path))
    assert message in str(excinfo.value)


def test_tests_skipped_in_both_runs_are_a_count_and_changed_ones_are_listed() -> None:
    skipped = {"outcome": "skipped", "growth": None}
    base = report(
        *(entry(f"t.py::test_gpu_{i}", **skipped) for i in range(27)),
        entry("t.py::test_now_runs", **skipped),
    )
    new = report(
        *(entry(f"t.py::test_gpu_{i}", **skipped) for i in range(27)),
        entry("t.py::test_now_runs", growth=None),
    )
    text = compare_reports(base, new).format_table()
    assert "skipped in either run, not compared: 28" in text
    assert "  27 skipped (or xfailed) in both runs" in text
    assert "t.py::test_now_runs (cpu)  skipped -> passed" in text
    assert "test_gpu_3" not in text


def test_a_folder_every_test_lies_under_is_said_once_above_the_table() -> None:
    ids = ["suite/models/test_a.py::test_x", "suite/models/test_b.py::test_y"]
    comparison = compare_reports(report(*map(entry, ids)), report(*map(entry, ids)))
    lines = comparison.format_table().splitlines()
    assert "tests under suite/models/" in lines
    assert any(line.startswith("test_a.py::test_x (cpu)  ") for line in lines)
    assert not any(line.startswith("suite/") for line in lines)
