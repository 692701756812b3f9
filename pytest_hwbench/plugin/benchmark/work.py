"""What one benchmarked call does (FLOPs, bytes, dtype): the rates and fractions of peak."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from pytest_hwbench.plugin.benchmark.peaks import (
    BANDWIDTH_KEY,
    PeakSpec,
    canonical_dtype,
    find_peak,
)

__all__ = ["THROUGHPUT_TIME", "Work"]

#: Which per-call time the throughput figures divide by.
THROUGHPUT_TIME = "median"


@dataclasses.dataclass(frozen=True)
class Work:
    """What one call does, as the user said: FLOPs, bytes moved, and the dtype computed in."""

    flops: float | None
    bytes_moved: float | None
    dtype: str | None

    @classmethod
    def from_arguments(cls, flops: object, bytes_moved: object, dtype: object) -> Work:
        """Check the ``flops=``, ``bytes_moved=`` and ``dtype=`` a test passed (errors say how)."""
        if dtype is not None and flops is None:
            raise TypeError(
                "hw_benchmark: dtype= only picks the peak that flops= is compared with; to pass "
                "dtype to the benchmarked function, use hw_benchmark.pedantic(fn, "
                "kwargs={'dtype': ...}) or functools.partial"
            )
        return cls(
            _positive("flops", flops),
            _positive("bytes_moved", bytes_moved),
            None if dtype is None else canonical_dtype(dtype),
        )

    def figures(
        self,
        time_s: float | None,
        device_name: str | None,
        compute_units: int | None,
        peaks: Sequence[PeakSpec],
    ) -> dict[str, Any]:
        """Achieved rates over `time_s` and, where the device's peak is known, their fraction."""
        out: dict[str, Any] = {}
        timed = time_s is not None and time_s > 0
        if self.flops is not None:
            out["flops"] = self.flops
            if self.dtype is not None:
                out["dtype"] = self.dtype
            if timed:
                assert time_s is not None
                out["flops_per_s"] = self.flops / time_s
                peak = None
                if self.dtype is not None:
                    peak = find_peak(peaks, device_name or "", compute_units, self.dtype)
                if peak is not None:
                    out["peak_flops_per_s"] = peak[0]
                    out["fraction_of_peak_flops"] = out["flops_per_s"] / peak[0]
                    out["peak_flops_source"] = peak[1]
        if self.bytes_moved is not None:
            out["bytes_moved"] = self.bytes_moved
            if timed:
                assert time_s is not None
                out["bytes_per_s"] = self.bytes_moved / time_s
                peak = find_peak(peaks, device_name or "", compute_units, BANDWIDTH_KEY)
                if peak is not None:
                    out["peak_bandwidth_bytes_per_s"] = peak[0]
                    out["fraction_of_peak_bandwidth"] = out["bytes_per_s"] / peak[0]
                    out["peak_bandwidth_source"] = peak[1]
        if out and timed:
            out["throughput_time"] = THROUGHPUT_TIME
        return out


def _positive(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"hw_benchmark: {name}= must be a number per call, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"hw_benchmark: {name}= must be a positive number per call, got {value!r}")
    return float(value)
