"""The report's typed model: what ``--hw-report`` writes and every ``hwbench`` tool reads.

The TypedDicts mirror the shipped JSON Schema (`schema.json`), which the loader validates
against; the functions below are the readings every output format shares (a test's primary
series, its benchmark median, its label), so each is computed in one place.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from pytest_hwbench.units import format_energy, format_rate

__all__ = [
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "Benchmark",
    "Energy",
    "EnergyDomain",
    "Entry",
    "Failure",
    "Mark",
    "Memory",
    "Report",
    "ReportError",
    "SeriesStats",
    "Timeline",
    "benchmark_median_noise_s",
    "benchmark_median_s",
    "energy_joules",
    "entry_label",
    "finite_json",
    "finite_number",
    "machine_label",
    "primary_stats",
    "schema_path",
    "throughput_text",
    "torch_runtimes",
]

SCHEMA_VERSION = "pytest-hwbench/2"
#: The versions this version reads: 2 adds null timelines for short tests, device properties
#: only in the machine inventory, failures, crashes and errors; 1 is read as it is.
READABLE_VERSIONS = ("pytest-hwbench/1", "pytest-hwbench/2")


class ReportError(ValueError):
    """A report that cannot be read: missing, not JSON, of another version, or not valid."""


def schema_path() -> Path:
    """The JSON Schema file that every report validates against."""
    return Path(__file__).with_name("schema.json")


class _SeriesStatsRequired(TypedDict):
    start_bytes: int
    end_bytes: int | None
    min_bytes: int
    peak_bytes: int
    peak_delta_bytes: int
    exact_peak: bool


class SeriesStats(_SeriesStatsRequired, total=False):
    """One memory series of one test: start, end, min, peak and growth (bytes)."""

    sampled_peak_bytes: int


class _MarkRequired(TypedDict):
    t: float
    label: str


class Mark(_MarkRequired, total=False):
    """A labelled point of a timeline (``record_memory("label")``), seconds since the start."""

    values: dict[str, int]


class _TimelineRequired(TypedDict):
    interval_s: float | None
    t: list[float]
    series: dict[str, list[int | None]]
    marks: list[Mark]


class Timeline(_TimelineRequired, total=False):
    """Columnar samples: `t` (seconds) and one array of bytes per series, plus the marks."""

    sampler: str
    max_samples: int
    samples_seen: int
    downsampled: bool


class Memory(TypedDict):
    """A test's memory results: per-series statistics and the timeline."""

    device: dict[str, Any]
    interval_s: float
    sampler: str
    samples: int
    duration_s: float
    series: dict[str, SeriesStats]
    warnings: list[str]
    platform: str
    primary_series: str
    timeline: Timeline | None


class Benchmark(TypedDict, total=False):
    """A ``hw_benchmark`` test's timing statistics (seconds per call) and throughput."""

    timed: bool
    unit: str
    min: float
    max: float
    mean: float
    median: float
    stddev: float
    iqr: float
    rounds: int
    iterations: int
    timer: str | None
    timer_note: str
    warmup_rounds: int
    reason: str
    throughput: dict[str, Any] | None
    warnings: list[str]


class EnergyDomain(TypedDict):
    """One counter's figure for a test: joules, mean watts, and whether it was measured."""

    joules: float
    mean_watts: float | None
    exact: bool
    method: str


class Energy(TypedDict, total=False):
    """A test's energy per domain (``total_joules`` set), or why there is none (``unavailable``)."""

    total_joules: float | None
    duration_s: float
    exact: bool
    domains: dict[str, EnergyDomain]
    unavailable: str
    limit_unchecked: bool


class _EntryRequired(TypedDict):
    nodeid: str
    outcome: str
    platform: str | None
    device: str | None
    duration_s: float
    memory: Memory | None


class _FailureRequired(TypedDict):
    kind: str
    message: str


class Failure(_FailureRequired, total=False):
    """Why a test did not pass: memory_limit, energy_limit, leak, exception or crash, the limit."""

    limit_bytes: int
    limit_joules: float
    series: str


class Entry(_EntryRequired, total=False):
    """One test of a report."""

    failure: Failure
    benchmark: Benchmark | None
    energy: Energy
    skip_reason: str
    dtype: str
    worker: str | None
    host: str | None
    pinned_devices: str | None


class _ReportRequired(TypedDict):
    schema: str
    created: str
    pytest_hwbench: str
    complete: bool
    machine: dict[str, Any]
    tests: list[Entry]


class Report(_ReportRequired, total=False):
    """A whole report: header, the machine's inventory, one entry per test."""

    errors: list[str]
    session: dict[str, Any]
    #: What the run was of: ``git``, ``ci``, ``machine_label``.
    run: dict[str, Any]


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def finite_json(obj: Any, *, indent: int | None = None) -> str:
    """`obj` as JSON that every reader takes: NaN and infinities become null (JSON has none).

    Compact unless `indent` is given; the C encoder runs, and the tree is only walked again in
    the rare case that a non-finite number is there.
    """
    if indent is not None:
        try:
            return json.dumps(obj, indent=indent, allow_nan=False)
        except ValueError:
            return json.dumps(_finite(obj), indent=indent, allow_nan=False)
    try:
        return _COMPACT.encode(obj)
    except ValueError:
        return _COMPACT.encode(_finite(obj))


#: One encoder for every compact line: json.dumps with arguments builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def finite_number(value: object) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def primary_stats(entry: Mapping[str, Any]) -> SeriesStats | None:
    """The statistics of the test's primary memory series, or None when it was not measured.

    A distributed test's are its ranks': those of the rank that grew most (the driver only
    waited for them).
    """
    ranks = entry.get("ranks")
    if isinstance(ranks, list):
        found = [
            stats
            for rank in ranks
            if isinstance(rank, Mapping)
            and (stats := primary_stats({"memory": rank.get("memory")})) is not None
        ]
        if found:
            return max(found, key=lambda stats: stats.get("peak_delta_bytes") or 0)
    memory = entry.get("memory")
    if not isinstance(memory, Mapping):
        return None
    series = memory.get("series", {})
    label = memory.get("primary_scope")
    if label is not None:  # a test that measured blocks is judged on its primary one
        for scope in memory.get("scopes") or ():
            if isinstance(scope, Mapping) and scope.get("label") == label:
                series = scope.get("series", {})
                break
    stats = series.get(memory.get("primary_series"))
    return stats if isinstance(stats, Mapping) else None


def energy_joules(entry: Mapping[str, Any]) -> float | None:
    """The energy the test's device used (joules, every domain), or None when not measured."""
    energy = entry.get("energy")
    if not isinstance(energy, Mapping):
        return None
    return finite_number(energy.get("total_joules"))


def benchmark_median_s(entry: Mapping[str, Any]) -> float | None:
    """The test's benchmark median (seconds per call), when it was timed."""
    benchmark = entry.get("benchmark")
    if not isinstance(benchmark, Mapping):
        return None
    stats = benchmark.get("stats", benchmark)  # pytest-benchmark's nesting, in hand-made reports
    return finite_number(stats.get("median")) if isinstance(stats, Mapping) else None


#: McGill, Tukey and Larsen's notch (1978; R's ``boxplot.stats``): median +- 1.58 IQR / sqrt(n)
#: is a ~95% interval of a median; two medians whose notches do not overlap differ.
NOTCH_FACTOR = 1.58


def benchmark_median_noise_s(entry: Mapping[str, Any]) -> float | None:
    """How far the benchmark's median may be off by chance: the half-width of its notch.

    1.58 x the rounds' interquartile range / sqrt(rounds), in seconds; None without both (an
    untimed run, a report from before ``iqr`` was recorded).
    """
    benchmark = entry.get("benchmark")
    if not isinstance(benchmark, Mapping):
        return None
    stats = benchmark.get("stats", benchmark)
    if not isinstance(stats, Mapping):
        return None
    iqr, rounds = finite_number(stats.get("iqr")), stats.get("rounds")
    if iqr is None or iqr < 0 or not isinstance(rounds, int) or rounds < 1:
        return None
    return NOTCH_FACTOR * iqr / math.sqrt(rounds)


def throughput_text(entry: Mapping[str, Any]) -> str | None:
    """A benchmark's achieved rates at its median, and their fraction of the device's peak.

    "1.23 TFLOP/s (41% of the bf16 peak), 450 GB/s (13% of peak bandwidth)", and under
    --hw-energy ", 2.10 J/call, 590 GFLOP/J"; None when the test gave no ``flops=`` or
    ``bytes_moved=`` or ran untimed, and measured no energy.
    """
    benchmark = entry.get("benchmark")
    if not isinstance(benchmark, Mapping):
        return None
    throughput = benchmark.get("throughput")
    if not isinstance(throughput, Mapping):
        throughput = {}
    parts = []
    flops = finite_number(throughput.get("flops_per_s"))
    if flops is not None:
        fraction = finite_number(throughput.get("fraction_of_peak_flops"))
        dtype = throughput.get("dtype")
        parts.append(
            format_rate(flops, "FLOP/s")
            + ("" if fraction is None else f" ({fraction:.0%} of the {dtype} peak)")
        )
    moved = finite_number(throughput.get("bytes_per_s"))
    if moved is not None:
        fraction = finite_number(throughput.get("fraction_of_peak_bandwidth"))
        parts.append(
            format_rate(moved, "B/s")
            + ("" if fraction is None else f" ({fraction:.0%} of peak bandwidth)")
        )
    energy = benchmark.get("energy")
    per_call = finite_number(energy.get("joules_per_call")) if isinstance(energy, Mapping) else None
    if per_call is not None:
        assert isinstance(energy, Mapping)
        parts.append(format_energy(per_call) + "/call" + ("" if energy.get("exact") else "~"))
        per_joule = finite_number(energy.get("flops_per_joule"))
        if per_joule is not None:
            parts.append(format_rate(per_joule, "FLOP/J"))
    return ", ".join(parts) or None


def entry_label(nodeid: str, device: str | None) -> str:
    """The node id, with the device when the id does not already show it ("test_x[cuda]")."""
    if not device or f"[{device}" in nodeid:
        return nodeid
    return f"{nodeid} ({device})"


def torch_runtimes(torch_info: Mapping[str, Any]) -> list[str]:
    """The GPU runtimes a torch build names ("CUDA 12.4"), and an out-of-tree accelerator's type.

    Every key but version, error and accelerator is a runtime; the accelerator's device type is
    named ("npu accelerator") only where no runtime key says it already.
    """
    runtimes = [
        f"{key.upper()} {value}"
        for key, value in torch_info.items()
        if key not in ("version", "error", "accelerator") and isinstance(value, str) and value
    ]
    accelerator = torch_info.get("accelerator")
    if isinstance(accelerator, str) and accelerator not in torch_info:
        runtimes.append(f"{accelerator} accelerator")
    return runtimes


#: Words a device or CPU name carries that say nothing a label needs.
_TRADEMARKS = re.compile(r"\((?:R|TM)\)|\bCPU @ .*$", re.IGNORECASE)
_MAKERS = re.compile(r"^(?:NVIDIA|AMD|Intel|Apple)\s+", re.IGNORECASE)


def _short_name(name: str) -> str:
    """A device's name without its maker and trademarks: "H200", "Xeon Platinum 8481C"."""
    plain = " ".join(_TRADEMARKS.sub(" ", name).split())
    return _MAKERS.sub("", plain) or name


def _host_label(inventory: Mapping[str, Any]) -> str:
    accelerators: dict[str, int] = {}
    drivers: list[str] = []
    host_model: str | None = None
    for backend in inventory.get("backends") or ():
        if not isinstance(backend, Mapping) or not backend.get("available"):
            continue
        for device in backend.get("devices") or ():
            props = device.get("properties") if isinstance(device, Mapping) else None
            if not isinstance(props, Mapping) or not props.get("name"):
                continue
            if backend.get("torch_device_type") == "cpu":
                host_model = host_model or str(props["name"])
                continue
            name = _short_name(str(props["name"]))
            accelerators[name] = accelerators.get(name, 0) + 1
            driver = props.get("driver_version")
            if driver and str(driver) not in drivers:
                drivers.append(str(driver))
    if accelerators:
        parts = [f"{name} \u00d7{count}" for name, count in accelerators.items()]
        if drivers:
            parts.append("driver " + "/".join(d.split(".")[0] for d in drivers))
        return " \u00b7 ".join(parts)
    if host_model is not None:
        return _short_name(host_model)
    return str(inventory.get("host") or "unknown machine")


def machine_label(machine: Mapping[str, Any]) -> str:
    """A readable name for what a report ran on, as `--hw-machine-label` would give one.

    From the accelerators (each short name with its count, then the driver's major version:
    docs/report-schema.md shows one), else the CPU's model, else the host name. Under xdist
    (``{"hosts": ...}``), each host's, joined.
    """
    hosts = machine.get("hosts")
    if isinstance(hosts, Mapping) and hosts:
        labels = [_host_label(h) for h in hosts.values() if isinstance(h, Mapping)]
        return " + ".join(dict.fromkeys(labels)) or "unknown machine"
    return _host_label(machine)
