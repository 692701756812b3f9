"""Schema-valid report entries and reports for the report tool tests."""

from __future__ import annotations

from typing import Any

Entry = dict[str, Any]
Report = dict[str, Any]


def entry(
    nodeid: str,
    *,
    device: str = "cpu",
    outcome: str = "passed",
    duration_s: float = 0.01,
    growth: int | None = 2**20,
    exact: bool = True,
    series: tuple[str, ...] | None = None,
    samples: int = 5,
    marks: tuple[str, ...] = ("inputs",),
    benchmark: dict[str, Any] | None = None,
    **extra: Any,
) -> Entry:
    """A schema-valid test entry; `growth` None means not measured."""
    data: Entry = {
        "nodeid": nodeid,
        "outcome": outcome,
        "platform": device,
        "device": device,
        "duration_s": duration_s,
        "worker": None,
        "host": "vm",
        "memory": None,
        "benchmark": benchmark,
        **extra,
    }
    if outcome == "skipped":
        data.setdefault("skip_reason", f"{device}: not here")
    if growth is None:
        return data
    names = series or (("rss",) if device == "cpu" else ("allocated", "reserved"))
    start = 100 * 2**20
    t = [i * 0.001 for i in range(samples)]
    values = {
        name: [start + (growth if i == samples // 2 else growth // 4 * (i > 0)) + k * 4096
               for i in range(samples)]
        for k, name in enumerate(names)
    }  # fmt: skip
    stats = {
        name: {
            "start_bytes": vals[0], "end_bytes": vals[-1], "min_bytes": min(vals),
            "peak_bytes": max(vals), "peak_delta_bytes": max(vals) - vals[0],
            "sampled_peak_bytes": max(vals), "exact_peak": exact,
        }
        for name, vals in values.items()
    }  # fmt: skip
    data["memory"] = {
        "device": {"platform": device, "index": 0, "device": device},
        "running": False,
        "interval_s": 0.001,
        "sampler": "thread",
        "samples": samples,
        "duration_s": t[-1],
        "series": stats,
        "warnings": [] if exact else [f"{names[0]}: peak is sampled"],
        "platform": device,
        "primary_series": names[0],
        "timeline": {
            "interval_s": 0.001,
            "sampler": "thread",
            "max_samples": 10000,
            "samples_seen": samples,
            "downsampled": False,
            "t": t,
            "series": values,
            "marks": [
                {
                    "t": t[min(i + 1, samples - 1)],
                    "label": label,
                    "values": {n: v[min(i + 1, samples - 1)] for n, v in values.items()},
                }
                for i, label in enumerate(marks)
            ],
        },
    }
    return data


def inventory(host: str = "vm") -> dict[str, Any]:
    """A small machine inventory: cpu available, cuda not."""
    return {
        "host": host,
        "platform": "Linux-test",
        "python": "3.11.7",
        "pytest_hwbench": "0.1.0",
        "torch": {"version": "2.13.0+cpu", "cuda": None, "hip": None, "xpu": None},
        "backends": [
            {"name": "cpu", "torch_device_type": "cpu", "available": True, "reason": None,
             "device_count": 1,
             "devices": [{"properties": {"backend": "cpu", "index": 0, "name": "Test CPU",
                                         "vendor": "Vendor", "total_memory_bytes": 2**34},
                          "capabilities": ["device_memory_info"]}]},
            {"name": "cuda", "torch_device_type": "cuda", "available": False,
             "reason": "torch was built without CUDA", "device_count": 0, "devices": []},
        ],
    }  # fmt: skip


def report(*entries: Entry, complete: bool = True, machine: dict[str, Any] | None = None) -> Report:
    """A schema-valid report of `entries`."""
    return {
        "schema": "pytest-hwbench/1",
        "created": "2026-11-25T18:10:46+00:00",
        "pytest_hwbench": "0.1.0",
        "complete": complete,
        "machine": inventory() if machine is None else machine,
        "tests": list(entries),
    }
