"""A report as a Chrome Trace Event / Perfetto JSON file (``hwbench trace``).

One process per device (named after it), one thread per xdist worker on it; each test is a
complete slice, each memory series a counter, each energy domain's power a counter in watts
(``--hw-energy``), each labelled mark an instant event. Open the file
in https://ui.perfetto.dev or ``chrome://tracing``; times there are microseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from pytest_hwbench.report.model import (
    benchmark_median_s,
    finite_json,
    finite_number,
    primary_stats,
)
from pytest_hwbench.report.writer import atomic_text_file
from pytest_hwbench.units import format_bytes

__all__ = ["START_KEYS", "build_trace", "iter_trace_events", "write_events", "write_trace"]

START_KEYS = ("start_time", "start_s")
"""Entry keys read as a test's start (seconds; only differences matter), when every test has one."""

_US = 1e6


def _start_times(tests: list[Mapping[str, Any]]) -> list[float] | None:
    """Each test's start in seconds from the first one, if the report has them for every test."""
    for key in START_KEYS:
        starts = [finite_number(t.get(key)) for t in tests]
        if tests and all(s is not None for s in starts):
            values = [s for s in starts if s is not None]
            first = min(values)
            return [s - first for s in values]
    return None


def _slice_args(entry: Mapping[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {"outcome": entry.get("outcome"), "platform": entry.get("platform")}
    if entry.get("skip_reason"):
        args["skip_reason"] = entry["skip_reason"]
    if entry.get("worker"):
        args["worker"] = entry["worker"]
    memory = entry.get("memory")
    if isinstance(memory, Mapping):
        primary = memory.get("primary_series")
        stats = primary_stats(entry)
        if stats is not None:
            args["primary_series"] = primary
            args["peak_growth_bytes"] = stats.get("peak_delta_bytes")
            if isinstance(stats.get("peak_delta_bytes"), int):
                args["peak_growth"] = format_bytes(stats["peak_delta_bytes"])
            args["peak_is"] = "exact" if stats.get("exact_peak") else "sampled"
        args["sampling_interval_s"] = memory.get("interval_s")
    median = benchmark_median_s(entry)
    if median is not None:
        args["benchmark_median_s"] = median
    energy = entry.get("energy")
    if isinstance(energy, Mapping):
        if energy.get("total_joules") is not None:
            args["energy_joules"] = energy["total_joules"]
            args["energy_is"] = "measured" if energy.get("exact") else "estimated"
        elif energy.get("unavailable"):
            args["energy_unavailable"] = energy["unavailable"]
    return args


def _counter_events(
    name: str,
    category: str,
    unit: str,
    times: list[float],
    values: list[Any],
    track: tuple[float, int, int],
) -> Iterator[dict[str, Any]]:
    """One counter track: a ``C`` event per value (nulls skipped), at ``ts + t``.

    `track` is the test's (start in µs, pid, tid); each event's one argument is `unit`.
    """
    ts, pid, tid = track
    for t, value in zip(times, values, strict=False):
        if value is not None:
            yield {
                "name": name,
                "cat": category,
                "ph": "C",
                "ts": ts + t * _US,
                "pid": pid,
                "tid": tid,
                "args": {unit: value},
            }


def _power_events(
    entry: Mapping[str, Any], track: tuple[float, int, int], suffix: str
) -> Iterator[dict[str, Any]]:
    """Each energy domain's power timeline as a counter track in watts."""
    energy = entry.get("energy")
    power = energy.get("power") if isinstance(energy, Mapping) else None
    if not isinstance(power, Mapping):
        return
    times = power.get("t") or []
    for domain, values in (power.get("watts") or {}).items():
        yield from _counter_events(
            f"power {domain}{suffix}", "power", "watts", times, values, track
        )


def _memory_events(
    memory: object, prefix: str, suffix: str, track: tuple[float, int, int]
) -> Iterator[dict[str, Any]]:
    """A memory timeline's series as counter tracks and its marks as instant events.

    `prefix` names whose memory it is ("rank 1 "): a distributed test's ranks each have one,
    timed from their own start.
    """
    if not isinstance(memory, Mapping):
        return
    timeline = memory.get("timeline") or {}
    times = timeline.get("t") or []
    for series, values in (timeline.get("series") or {}).items():
        yield from _counter_events(
            f"{prefix}{series}{suffix}", "memory", "bytes", times, values, track
        )
    ts, pid, tid = track
    for mark in timeline.get("marks") or []:
        yield {
            "name": f"{prefix}{mark.get('label', '')}",
            "cat": "mark",
            "ph": "i",
            "s": "t",
            "ts": ts + float(mark.get("t", 0.0)) * _US,
            "pid": pid,
            "tid": tid,
            "args": dict(mark.get("values") or {}),
        }


def iter_trace_events(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every trace event of a report: metadata first, then each test's slice, counters, marks."""
    tests = [t for t in report.get("tests") or [] if isinstance(t, Mapping)]
    starts = _start_times(tests)
    pids: dict[tuple[str, str], int] = {}
    tids: dict[tuple[int, str], int] = {}
    cursors: dict[tuple[int, int], float] = {}
    for index, entry in enumerate(tests):
        device = str(entry.get("device") or entry.get("platform") or "unknown device")
        host = str(entry.get("host") or "")
        worker = str(entry.get("worker") or "")
        track = (host, device)
        if track not in pids:
            pid = pids[track] = len(pids) + 1
            name = f"{device} on {host}" if host else device
            yield {
                "name": "process_name",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "ts": 0,
                "args": {"name": name},
            }
            yield {
                "name": "process_sort_index",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "ts": 0,
                "args": {"sort_index": pid},
            }
        pid = pids[track]
        if (pid, worker) not in tids:
            tid = tids[(pid, worker)] = len([k for k in tids if k[0] == pid]) + 1
            yield {
                "name": "thread_name",
                "ph": "M",
                "pid": pid,
                "tid": tid,
                "ts": 0,
                "args": {"name": f"tests ({worker})" if worker else "tests"},
            }
        tid = tids[(pid, worker)]
        dur = max(finite_number(entry.get("duration_s")) or 0.0, 0.0) * _US
        if starts is not None:
            ts = starts[index] * _US
        else:
            ts = cursors.get((pid, tid), 0.0)
            cursors[(pid, tid)] = ts + dur
        yield {
            "name": str(entry.get("nodeid", "?")),
            "cat": "test",
            "ph": "X",
            "ts": ts,
            "dur": dur,
            "pid": pid,
            "tid": tid,
            "args": _slice_args(entry),
        }
        suffix = f" ({worker})" if worker else ""
        yield from _power_events(entry, (ts, pid, tid), suffix)
        yield from _memory_events(entry.get("memory"), "", suffix, (ts, pid, tid))
        for rank in entry.get("ranks") or ():  # a distributed test: a track per rank
            if isinstance(rank, Mapping):
                start = (finite_number(rank.get("start_s")) or 0.0) * _US  # its own zero
                yield from _memory_events(
                    rank.get("memory"), f"rank {rank.get('rank')} ", suffix, (ts + start, pid, tid)
                )


def _other_data(report: Mapping[str, Any]) -> dict[str, Any]:
    tests = [t for t in report.get("tests") or [] if isinstance(t, Mapping)]
    return {
        "source": "pytest-hwbench",
        "report_schema": report.get("schema"),
        "created": report.get("created"),
        "pytest_hwbench": report.get("pytest_hwbench"),
        "complete": report.get("complete"),
        "layout": "test start times" if _start_times(tests) else "tests end to end per track",
    }


def build_trace(report: Mapping[str, Any]) -> dict[str, Any]:
    """The whole trace as a dict in the JSON Object Format (``traceEvents`` and friends)."""
    return {
        "traceEvents": list(iter_trace_events(report)),
        "displayTimeUnit": "ms",
        "otherData": _other_data(report),
    }


def write_events(report: Mapping[str, Any], out: TextIO) -> int:
    """Write the trace to the text stream `out`, event by event; return the event count."""
    count = 0
    out.write('{"traceEvents":[\n')
    for event in iter_trace_events(report):
        out.write((",\n" if count else "") + finite_json(event))
        count += 1
    out.write('\n],"displayTimeUnit":"ms","otherData":')
    out.write(finite_json(_other_data(report)) + "}\n")
    return count


def write_trace(report: Mapping[str, Any], path: str | os.PathLike[str]) -> int:
    """Write the trace to `path` (atomically, as every output); return the event count."""
    with atomic_text_file(path) as fh:
        return write_events(report, fh)
