"""``--fail-on`` thresholds: how much a test's peak growth, median, duration or energy may grow.

They mirror pytest-benchmark's ``--benchmark-compare-fail``: a relative one (``peak:+10%``) fails
when ``new / base * 100 - 100`` exceeds it, an absolute one (``time:+5ms``) when ``new - base``
does; only increases fail. A combined one (``peak:+10%,+1MiB``) fails only when both are
exceeded: a small test's few kB of noise are many percent, a big test's few percent many MiB.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from pytest_hwbench.units import (
    SizeError,
    format_bytes,
    format_duration,
    format_energy,
    parse_duration,
    parse_energy,
    parse_size,
)

__all__ = [
    "METRICS",
    "THRESHOLD_FORMS",
    "Metric",
    "Threshold",
    "ThresholdError",
    "format_amount",
    "parse_threshold",
]

Metric = Literal["peak", "time", "duration", "energy"]
#: What each metric compares, for messages.
METRICS = {
    "peak": "peak memory growth",
    "time": "benchmark median, of tests both runs benchmarked",
    "duration": "a test's setup + call + teardown time",
    "energy": "the energy a test's device used, of tests both runs measured",
}

THRESHOLD_FORMS = (
    "METRIC:[+]CHANGE, METRIC being peak (peak memory growth), time (benchmark median), "
    "duration (a test's setup + call + teardown) or energy (its device's joules) and CHANGE a "
    "percentage (peak:+10%, time:5%), an amount: a size for peak (peak:+256MiB, peak:+100MB, or "
    "plain bytes), a duration for time and duration (time:+5ms, duration:0.5s, or plain "
    "seconds), an energy for energy (energy:+5J, energy:+500mJ, or plain joules), or both, "
    "comma-separated, to fail only when both are crossed (peak:+10%,+1MiB)"
)
_THRESHOLD_RE = re.compile(
    r"^\s*(?P<metric>[a-z]+)\s*:\s*(?P<plus>\+)?\s*(?P<amount>[^%]*?)\s*(?P<percent>%)?\s*$"
)
_NUMBER_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


class ThresholdError(ValueError):
    """A ``--fail-on`` string that cannot be read; the message names it and the accepted forms."""


@dataclass(frozen=True)
class Threshold:
    """How much a metric may grow from the base report to the new one before the check fails."""

    metric: Metric
    limit: float
    """Percent when `relative`, else bytes (``peak``), joules (``energy``) or seconds."""
    relative: bool
    text: str = ""
    also: float | None = None
    """With a relative limit: an amount (bytes, joules or seconds) that must be exceeded too."""

    def change(self, base: float, new: float) -> float:
        """The change this threshold measures: percent of `base` if relative, else a difference."""
        if not self.relative:
            return new - base
        if base == 0:
            # pytest-benchmark treats any change from 0 as infinite; 0 -> 0 is no change at all.
            return 0.0 if new == 0 else math.copysign(math.inf, new)
        return (new - base) / abs(base) * 100

    def crossed(self, base: float, new: float) -> bool:
        """Whether `base` -> `new` exceeds the threshold (strictly, as in pytest-benchmark)."""
        if self.also is not None and not new - base > self.also:
            return False
        return self.change(base, new) > self.limit

    def limit_text(self) -> str:
        """The allowed growth: ``+10%``, ``+256.0 MiB``, ``+5.00 ms``, ``+10% and +1.0 MiB``."""
        if self.relative:
            if self.also is not None:
                return f"+{self.limit:g}% and {_amount_text(self.metric, self.also)}"
            return f"+{self.limit:g}%"
        return _amount_text(self.metric, self.limit)

    def describe(self) -> str:
        """The threshold as a user would write it: ``peak:+10%``, ``peak:+10%,+1.0 MiB``."""
        return f"{self.metric}:{self.limit_text().replace(' and ', ',')}"

    def format_change(self, base: float, new: float) -> str:
        """The measured change in this threshold's terms: ``+16.7%``, ``+2.0 MiB``, ``+1.20 ms``."""
        value = self.change(base, new)
        if not self.relative:
            return format_amount(self.metric, value)
        if not math.isfinite(value):  # from 0: a percentage says nothing, the amount does
            return f"{format_amount(self.metric, new - base)} (base was 0)"
        if self.also is not None:
            return f"{value:+.1f}% and {format_amount(self.metric, new - base)}"
        return f"{value:+.1f}%"


def _amount_text(metric: str, amount: float) -> str:
    if metric == "peak":
        return format_bytes(amount, signed=True)
    if metric == "energy":
        return format_energy(amount, signed=True)
    return f"+{format_duration(amount)}" if amount else "+0 s"


def parse_threshold(text: str) -> Threshold:
    """Read ``peak:+10%``, ``peak:+256MiB``, ``time:+5ms``, ``peak:+10%,+1MiB``... or raise."""
    metric_part, _, changes = text.partition(":")
    if "," not in changes:
        return _parse_single(text)
    parts = [part.strip() for part in changes.split(",")]
    if len(parts) != 2:
        raise ThresholdError(
            f"bad threshold {text!r}: combine one percentage and one amount; "
            f"expected {THRESHOLD_FORMS}"
        )
    first, second = (_parse_single(f"{metric_part}:{part}") for part in parts)
    relative, absolute = (first, second) if first.relative else (second, first)
    if not relative.relative or absolute.relative:
        raise ThresholdError(
            f"bad threshold {text!r}: combine one percentage and one amount, as in "
            f"{metric_part.strip()}:+10%,+1MiB; expected {THRESHOLD_FORMS}"
        )
    return Threshold(
        relative.metric, relative.limit, relative=True, text=text.strip(), also=absolute.limit
    )


def _parse_single(text: str) -> Threshold:
    match = _THRESHOLD_RE.match(text)
    if match is None:
        raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}")
    metric, amount = match.group("metric"), match.group("amount")
    if metric not in METRICS:
        raise ThresholdError(
            f"bad threshold {text!r}: unknown metric {metric!r}; expected {THRESHOLD_FORMS}"
        )
    if not amount or amount.startswith(("-", "+")):
        raise ThresholdError(
            f"bad threshold {text!r}: the change must be a non-negative amount (only growth "
            f"fails); expected {THRESHOLD_FORMS}"
        )
    if match.group("percent"):
        if not _NUMBER_RE.match(amount):
            raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}")
        return Threshold(metric, float(amount), relative=True, text=text.strip())  # type: ignore[arg-type]
    limit: float
    try:
        if metric == "peak":
            limit = float(parse_size(amount))
        elif metric == "energy":
            limit = parse_energy(amount)
        elif _NUMBER_RE.match(amount) and float(amount) == 0:
            limit = 0.0  # parse_duration refuses 0; as a threshold it means "any growth fails"
        else:
            limit = parse_duration(amount)
    except SizeError:
        raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}") from None
    return Threshold(metric, limit, relative=False, text=text.strip())  # type: ignore[arg-type]


def format_amount(metric: str, value: float) -> str:
    """A change of `metric` for people: ``+2.0 MiB`` for peak, ``+3.10 J``, ``-1.20 ms``."""
    if metric == "peak":
        return format_bytes(value, signed=True)
    if metric == "energy":
        return format_energy(value, signed=True)
    return ("-" if value < 0 else "+") + format_duration(abs(value))
