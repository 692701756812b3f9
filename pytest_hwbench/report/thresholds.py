"""``--fail-on`` thresholds: how much a test's peak growth or time may grow between two reports.

They mirror pytest-benchmark's ``--benchmark-compare-fail``: a relative one (``peak:+10%``) fails
when ``new / base * 100 - 100`` exceeds it, an absolute one (``time:+5ms``) when ``new - base``
does; only increases fail.
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
    parse_duration,
    parse_size,
)

__all__ = [
    "THRESHOLD_FORMS",
    "Metric",
    "Threshold",
    "ThresholdError",
    "format_amount",
    "parse_threshold",
]

Metric = Literal["peak", "time"]

THRESHOLD_FORMS = (
    "METRIC:[+]CHANGE, METRIC being peak (peak memory growth) or time (benchmark median, "
    "else test duration) and CHANGE a percentage (peak:+10%, time:5%) or an amount: a size for "
    "peak (peak:+256MiB, peak:+100MB, or plain bytes) or a duration for time (time:+5ms, "
    "time:0.5s, or plain seconds)"
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
    """Percent when `relative`, else bytes (``peak``) or seconds (``time``)."""
    relative: bool
    text: str = ""

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
        return self.change(base, new) > self.limit

    def limit_text(self) -> str:
        """The allowed growth: ``+10%``, ``+256.0 MiB``, ``+5.00 ms``."""
        if self.relative:
            return f"+{self.limit:g}%"
        if self.metric == "peak":
            return format_bytes(self.limit, signed=True)
        return f"+{format_duration(self.limit)}" if self.limit else "+0 s"

    def describe(self) -> str:
        """The threshold as a user would write it: ``peak:+10%``, ``time:+5.00 ms``."""
        return f"{self.metric}:{self.limit_text()}"

    def format_change(self, base: float, new: float) -> str:
        """The measured change in this threshold's terms: ``+16.7%``, ``+2.0 MiB``, ``+1.20 ms``."""
        value = self.change(base, new)
        if self.relative:
            return f"{value:+.1f}%" if math.isfinite(value) else f"{value:+}% (base was 0)"
        return format_amount(self.metric, value)


def parse_threshold(text: str) -> Threshold:
    """Read ``peak:+10%``, ``peak:10%``, ``peak:+256MiB``, ``time:+5ms``, ``time:5%`` or raise."""
    match = _THRESHOLD_RE.match(text)
    if match is None:
        raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}")
    metric, amount = match.group("metric"), match.group("amount")
    if metric not in ("peak", "time"):
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
        elif _NUMBER_RE.match(amount) and float(amount) == 0:
            limit = 0.0  # parse_duration refuses 0; as a threshold it means "any growth fails"
        else:
            limit = parse_duration(amount)
    except SizeError:
        raise ThresholdError(f"bad threshold {text!r}: expected {THRESHOLD_FORMS}") from None
    return Threshold(metric, limit, relative=False, text=text.strip())  # type: ignore[arg-type]


def format_amount(metric: str, value: float) -> str:
    """A change of `metric` for people: ``+2.0 MiB`` for peak, ``-1.20 ms`` for time."""
    if metric == "peak":
        return format_bytes(value, signed=True)
    return ("-" if value < 0 else "+") + format_duration(abs(value))
