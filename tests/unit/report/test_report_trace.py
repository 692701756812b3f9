from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from report_builders import entry, report

from pytest_hwbench.report.trace import build_trace, write_trace

# The Trace Event Format's required fields per phase (Google's "Trace Event Format" document).
REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "C": {"name", "ph", "ts", "pid", "args"},
    "i": {"name", "ph", "ts", "pid", "tid", "s"},
    "M": {"name", "ph", "pid", "args"},
}
METADATA_NAMES = {"process_name", "process_sort_index", "thread_name", "thread_sort_index"}


def check_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """Assert every event is well formed; return them."""
    json.loads(json.dumps(trace, allow_nan=False))  # strict JSON
    events = trace["traceEvents"]
    assert isinstance(events, list)
    for event in events:
        assert REQUIRED[event["ph"]] <= set(event), event
        assert isinstance(event["name"], str)
        assert isinstance(event["pid"], int)
        assert isinstance(event.get("tid", 0), int)
        assert isinstance(event.get("ts", 0), (int, float))
        assert event.get("ts", 0) >= 0
        if event["ph"] == "X":
            assert event["dur"] >= 0
        if event["ph"] == "C":
            assert all(isinstance(v, (int, float)) for v in event["args"].values())
        if event["ph"] == "i":
            assert event["s"] in ("g", "p", "t")
        if event["ph"] == "M":
            assert event["name"] in METADATA_NAMES
    return events


def by_phase(events: list[dict[str, Any]], ph: str) -> list[dict[str, Any]]:
    return [e for e in events if e["ph"] == ph]


def test_one_process_per_device_with_names() -> None:
    trace = build_trace(
        report(entry("a", duration_s=0.5), entry("b", device="cuda"), entry("c", duration_s=0.25))
    )
    events = check_events(trace)
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert sorted(names.values()) == ["cpu on vm", "cuda on vm"]
    threads = [e for e in events if e["name"] == "thread_name"]
    assert [t["args"]["name"] for t in threads] == ["tests", "tests"]
    slices = {e["name"]: e for e in by_phase(events, "X")}
    assert slices["a"]["pid"] == slices["c"]["pid"] != slices["b"]["pid"]
    assert trace["displayTimeUnit"] == "ms"
    assert trace["otherData"]["layout"] == "tests end to end per track"


def test_tests_lay_end_to_end_per_track_in_microseconds() -> None:
    events = check_events(
        build_trace(report(entry("a", duration_s=0.5), entry("b", duration_s=0.25), entry("c")))
    )
    slices = {e["name"]: e for e in by_phase(events, "X")}
    assert slices["a"]["ts"] == 0
    assert slices["a"]["dur"] == pytest.approx(500_000)
    assert slices["b"]["ts"] == pytest.approx(500_000)
    assert slices["c"]["ts"] == pytest.approx(750_000)
    assert slices["a"]["args"]["outcome"] == "passed"
    assert slices["a"]["args"]["peak_growth_bytes"] == 2**20
    assert slices["a"]["args"]["peak_is"] == "exact"


@pytest.mark.parametrize("key", ["start_time", "start_s"])
def test_start_times_place_the_tests(key: str) -> None:
    data = report(entry("a", duration_s=1.0), entry("b", duration_s=1.0))
    data["tests"][0][key] = 1000.0
    data["tests"][1][key] = 1000.5
    trace = build_trace(data)
    slices = {e["name"]: e for e in by_phase(check_events(trace), "X")}
    assert slices["a"]["ts"] == 0
    assert slices["b"]["ts"] == pytest.approx(500_000)  # overlapping: they ran in parallel
    assert trace["otherData"]["layout"] == "test start times"


def test_xdist_workers_get_their_own_threads_and_counters() -> None:
    data = report(entry("a", worker="gw0"), entry("b", worker="gw1"), entry("c", worker="gw0"))
    events = check_events(build_trace(data))
    threads = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert threads == {"tests (gw0)", "tests (gw1)"}
    slices = {e["name"]: e for e in by_phase(events, "X")}
    assert slices["a"]["tid"] == slices["c"]["tid"] != slices["b"]["tid"]
    assert slices["b"]["ts"] == 0
    assert {e["name"] for e in by_phase(events, "C")} == {"rss (gw0)", "rss (gw1)"}


def test_counters_and_marks_follow_the_timeline() -> None:
    data = report(
        entry("first", duration_s=1.0, growth=None),
        entry("t", samples=4, series=("allocated", "reserved"), marks=("fwd", "bwd")),
    )
    data["tests"][1]["memory"]["timeline"]["series"]["reserved"][2] = None
    events = check_events(build_trace(data))
    counters = by_phase(events, "C")
    allocated = [e for e in counters if e["name"] == "allocated"]
    assert [e["ts"] for e in allocated] == pytest.approx([1e6, 1e6 + 1e3, 1e6 + 2e3, 1e6 + 3e3])
    assert allocated[0]["args"] == {"bytes": 100 * 2**20}
    assert len([e for e in counters if e["name"] == "reserved"]) == 3  # the null is skipped
    marks = by_phase(events, "i")
    assert [m["name"] for m in marks] == ["fwd", "bwd"]
    assert marks[0]["ts"] == pytest.approx(1e6 + 1e3)
    assert set(marks[0]["args"]) == {"allocated", "reserved"}


def test_write_trace_streams_the_same_trace(tmp_path: Path) -> None:
    data = report(entry('q"uote::test[</script>]'), entry("b", outcome="skipped", growth=None))
    path = tmp_path / "trace.json"
    count = write_trace(data, path)
    written = json.loads(path.read_text())
    assert written == json.loads(json.dumps(build_trace(data)))
    assert count == len(written["traceEvents"])
    skipped = [e for e in by_phase(written["traceEvents"], "X") if e["name"] == "b"]
    assert skipped[0]["args"]["skip_reason"] == "cpu: not here"


def test_empty_report() -> None:
    trace = build_trace(report())
    assert trace["traceEvents"] == []


def test_power_is_a_counter_track_in_watts_and_energy_is_on_the_slice() -> None:
    power = {
        "t": [0.01, 0.02, 0.03],
        "watts": {"package-0": [40.0, 55.5, 42.0], "dram-0": [3.0, 3.5, 3.1]},
    }
    energy = {"total_joules": 1.5, "duration_s": 0.03, "exact": True, "power": power,
              "domains": {"package-0": {"joules": 1.4, "mean_watts": 46.7, "exact": True,
                                        "method": "counter"},
                          "dram-0": {"joules": 0.1, "mean_watts": 3.3, "exact": True,
                                     "method": "counter"}}}  # fmt: skip
    data = report(
        entry("first", duration_s=1.0, growth=None),
        entry("t", growth=None, worker="gw1", energy=energy),
        entry("u", growth=None, energy={"total_joules": None, "unavailable": "no RAPL here"}),
    )
    events = check_events(build_trace(data))
    package = [e for e in by_phase(events, "C") if e["name"] == "power package-0 (gw1)"]
    assert [e["args"] for e in package] == [{"watts": 40.0}, {"watts": 55.5}, {"watts": 42.0}]
    assert [e["ts"] for e in package] == pytest.approx([1e4, 2e4, 3e4])  # its own track's start
    assert all(e["cat"] == "power" for e in package)
    assert len([e for e in by_phase(events, "C") if e["name"] == "power dram-0 (gw1)"]) == 3
    slices = {e["name"]: e["args"] for e in by_phase(events, "X")}
    assert slices["t"]["energy_joules"] == 1.5
    assert slices["t"]["energy_is"] == "measured"
    assert slices["u"]["energy_unavailable"] == "no RAPL here"
