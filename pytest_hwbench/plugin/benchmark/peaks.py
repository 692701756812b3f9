"""Theoretical peaks of devices (datasheets, the ini) for hw_benchmark's fraction of peak.

A data table (`BUILTIN_PEAKS`, dense rates at boost clock) and what reads it: dtype names to the
table's precision keys, and the ini ``hw_peak_flops`` lines that add to or override it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

import pytest

__all__ = [
    "BANDWIDTH_KEY",
    "BUILTIN_PEAKS",
    "DTYPE_KEYS",
    "PeakSpec",
    "canonical_dtype",
    "find_peak",
    "parse_peak_lines",
]

#: The precisions a peak is known for; ``bandwidth`` (bytes/s) is the memory bandwidth.
DTYPE_KEYS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")
BANDWIDTH_KEY = "bandwidth"
_DTYPE_ALIASES = {
    "fp64": "fp64",
    "float64": "fp64",
    "double": "fp64",
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "tf32": "tf32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp8": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "float8_e4m3fnuz": "fp8",
    "float8_e5m2fnuz": "fp8",
}
_PEAK_LINE_FORM = (
    "'DEVICE NAME:key=value[,key=value...]' where DEVICE NAME is a substring of the device name "
    f"torch reports, key is one of {', '.join((*DTYPE_KEYS, BANDWIDTH_KEY))}, and value is a "
    "positive number (FLOP/s, or bytes/s for bandwidth), e.g. "
    "'NVIDIA H100 80GB HBM3:bf16=989e12,bandwidth=3.35e12'"
)


@dataclasses.dataclass(frozen=True)
class PeakSpec:
    """The theoretical peaks of the devices whose name matches `pattern`, and where they come from.

    Built-in entries are per product; `compute_units` (SMs or CUs of the whole product) lets a
    partition (a MIG instance, one GCD of an MI250X) get its share. Ini entries are used as is.
    """

    pattern: str
    source: str
    flops_per_s: Mapping[str, float]
    bandwidth_bytes_per_s: float | None = None
    compute_units: int | None = None
    regex: bool = True

    def matches(self, device_name: str) -> bool:
        """Whether this entry describes a device that torch names `device_name`."""
        if self.regex:
            return re.search(self.pattern, device_name, re.IGNORECASE) is not None
        return self.pattern.casefold() in device_name.casefold()

    def scale(self, compute_units: int | None) -> float:
        """The share of the product a device with `compute_units` SMs/CUs has (1 when unknown)."""
        if self.compute_units and compute_units and 0 < compute_units < self.compute_units:
            return compute_units / self.compute_units
        return 1.0


def _dense(sparse_tflops: float) -> float:
    """Dense FLOP/s from a datasheet's "with sparsity" TFLOPS figure (2:4 sparsity doubles it)."""
    return sparse_tflops * 1e12 / 2


# Dense figures at boost clock. NVIDIA datasheets quote tensor-core TF32/BF16/FP16/FP8 "with
# sparsity"; dense is half (`_dense`). FP16 and BF16 are the FP32-accumulate rates (what torch's
# matmuls use). FP64 and AMD's FP32 are the tensor-core / matrix-core rates. AMD quotes dense.
BUILTIN_PEAKS: tuple[PeakSpec, ...] = (
    PeakSpec(
        r"\bH100\b.*\bPCIe\b",
        "NVIDIA H100 Tensor Core GPU datasheet (H100 PCIe)",
        {"fp64": 51e12, "fp32": 51e12, "tf32": _dense(756), "bf16": _dense(1513),
         "fp16": _dense(1513), "fp8": _dense(3026)},
        2.0e12,
        114,
    ),
    PeakSpec(
        r"\bH100 NVL\b",
        "NVIDIA H100 Tensor Core GPU datasheet (H100 NVL)",
        {"fp64": 60e12, "fp32": 60e12, "tf32": _dense(835), "bf16": _dense(1671),
         "fp16": _dense(1671), "fp8": _dense(3341)},
        3.9e12,
        132,
    ),
    PeakSpec(
        r"\bH100\b",  # "NVIDIA H100 80GB HBM3" is the SXM5 board
        "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM)",
        {"fp64": 67e12, "fp32": 67e12, "tf32": _dense(989), "bf16": _dense(1979),
         "fp16": _dense(1979), "fp8": _dense(3958)},
        3.35e12,
        132,
    ),
    PeakSpec(
        r"\bH200 NVL\b",
        "NVIDIA H200 Tensor Core GPU datasheet (H200 NVL)",
        {"fp64": 60e12, "fp32": 60e12, "tf32": _dense(835), "bf16": _dense(1671),
         "fp16": _dense(1671), "fp8": _dense(3341)},
        4.8e12,
        132,
    ),
    PeakSpec(
        r"\bH200\b",
        "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM)",
        {"fp64": 67e12, "fp32": 67e12, "tf32": _dense(989), "bf16": _dense(1979),
         "fp16": _dense(1979), "fp8": _dense(3958)},
        4.8e12,
        132,
    ),
    PeakSpec(
        r"\bA100\b.*SXM4?-80GB",
        "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM)",
        {"fp64": 19.5e12, "fp32": 19.5e12, "tf32": _dense(312), "bf16": _dense(624),
         "fp16": _dense(624)},
        2.039e12,
        108,
    ),
    PeakSpec(
        r"\bA100\b.*80GB.*PCIe",
        "NVIDIA A100 Tensor Core GPU datasheet (A100 80GB PCIe)",
        {"fp64": 19.5e12, "fp32": 19.5e12, "tf32": _dense(312), "bf16": _dense(624),
         "fp16": _dense(624)},
        1.935e12,
        108,
    ),
    PeakSpec(
        r"\bA100\b",  # the 40GB boards, SXM4 and PCIe
        "NVIDIA A100 Tensor Core GPU datasheet (A100 40GB)",
        {"fp64": 19.5e12, "fp32": 19.5e12, "tf32": _dense(312), "bf16": _dense(624),
         "fp16": _dense(624)},
        1.555e12,
        108,
    ),
    PeakSpec(
        r"\bL4\b",  # not L40/L40S
        "NVIDIA L4 Tensor Core GPU datasheet",
        {"fp32": 30.3e12, "tf32": _dense(120), "bf16": _dense(242), "fp16": _dense(242),
         "fp8": _dense(485)},
        300e9,
        58,
    ),
    PeakSpec(
        r"\bRTX 4090\b",
        "NVIDIA Ada GPU Architecture whitepaper (GeForce RTX 4090, FP32 accumulate)",
        {"fp32": 82.6e12, "tf32": _dense(165.2), "bf16": _dense(330.4), "fp16": _dense(330.4),
         "fp8": _dense(660.6)},
        1008e9,
        128,
    ),
    PeakSpec(
        r"\bMI250X?\b",  # torch sees each of the two GCDs: it gets half (110 of 220 CUs)
        "AMD Instinct MI250X accelerator datasheet",
        {"fp64": 95.7e12, "fp32": 95.7e12, "bf16": 383e12, "fp16": 383e12},
        3.2768e12,
        220,
    ),
    PeakSpec(
        r"\bMI300X\b",
        "AMD Instinct MI300X accelerator datasheet",
        {"fp64": 163.4e12, "fp32": 163.4e12, "tf32": 653.7e12, "bf16": 1307.4e12,
         "fp16": 1307.4e12, "fp8": 2614.9e12},
        5.3e12,
        304,
    ),
)  # fmt: skip


def canonical_dtype(dtype: object) -> str:
    """The peak-table key ("bf16", "fp32", ...) for a torch.dtype or a name such as "bfloat16"."""
    text = str(dtype).strip().lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(text)
    if key is None:
        raise ValueError(
            f"hw_benchmark: unknown dtype {dtype!r}; give a torch.dtype or one of "
            f"{', '.join(sorted(_DTYPE_ALIASES))}"
        )
    return key


def parse_peak_lines(lines: Sequence[str]) -> tuple[PeakSpec, ...]:
    """Parse ini ``hw_peak_flops`` lines; a bad line is a usage error naming it and the form."""
    specs = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, assignments = line.rpartition(":")
        name = name.strip().strip("\"'")
        if not sep:
            raise _peak_error(raw, "no ':' between the device name and the values")
        if not name or not assignments.strip():
            raise _peak_error(raw, "a device name and at least one value are needed")
        flops: dict[str, float] = {}
        bandwidth: float | None = None
        for assignment in assignments.split(","):
            key, eq, value_text = assignment.partition("=")
            key = key.strip().lower()
            if not eq or key not in (*DTYPE_KEYS, BANDWIDTH_KEY):
                raise _peak_error(raw, f"bad entry {assignment.strip()!r}")
            try:
                value = float(value_text.strip().strip("\"'"))
            except ValueError:
                raise _peak_error(raw, f"{value_text.strip()!r} is not a number") from None
            if not math.isfinite(value) or value <= 0:
                raise _peak_error(raw, f"{value_text.strip()!r} is not a positive number")
            if key == BANDWIDTH_KEY:
                bandwidth = value
            else:
                flops[key] = value
        specs.append(
            PeakSpec(name, f"ini hw_peak_flops: {line}", flops, bandwidth, None, regex=False)
        )
    return tuple(specs)


def _peak_error(line: str, problem: str) -> pytest.UsageError:
    return pytest.UsageError(
        f"pytest-hwbench: ini hw_peak_flops line {line.strip()!r}: {problem}; "
        f"expected {_PEAK_LINE_FORM}"
    )


def find_peak(
    peaks: Sequence[PeakSpec], device_name: str, compute_units: int | None, key: str
) -> tuple[float, str] | None:
    """The peak (per second) of `key` (a dtype key or "bandwidth") for this device, and its source.

    Ini entries come first, unscaled; then the built-in table, scaled to the device's SMs/CUs.
    """
    for spec in (*peaks, *BUILTIN_PEAKS):
        if not spec.matches(device_name):
            continue
        value = spec.bandwidth_bytes_per_s if key == BANDWIDTH_KEY else spec.flops_per_s.get(key)
        if value is None:
            continue
        share = spec.scale(compute_units)
        source = spec.source
        if share != 1.0:
            source += f", scaled to {compute_units} of {spec.compute_units} compute units"
        return value * share, source
    return None
