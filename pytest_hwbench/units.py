"""Parsing and printing of sizes, durations and energies given by users (bytes, s, J inside)."""

from __future__ import annotations

import math
import re

__all__ = [
    "ENERGY_FORMS",
    "SizeError",
    "format_bytes",
    "format_duration",
    "format_energy",
    "format_rate",
    "parse_duration",
    "parse_energy",
    "parse_size",
]

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(s|ms|us|µs|ns)?\s*$")

_ENERGY_UNITS: dict[str, float] = {
    "": 1.0,
    "j": 1.0,
    "mj": 1e-3,
    "kj": 1e3,
    "wh": 3600.0,
    "kwh": 3.6e6,
}
_ENERGY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*([a-zA-Z]*)\s*$")

ENERGY_FORMS = "joules as a number (40, 0.5) or with a unit: 40J, 500mJ, 2kJ, 1.5Wh, 0.1kWh"

SIZE_FORMS = (
    "bytes as an int (1048576) or a number with a unit: 512MB (10^6), 512MiB (2^20), 1.5 GiB"
)


class SizeError(ValueError):
    """A size or duration string that cannot be read; the message names the accepted forms."""


def parse_size(value: str | int | float) -> int:
    """Read "512MB" (decimal, 10^6), "512MiB" (binary, 2^20), "1.5 GiB" or an int as bytes."""
    if isinstance(value, bool):
        raise SizeError(f"bad size {value!r}: expected {SIZE_FORMS}")
    if isinstance(value, int):
        if value < 0:
            raise SizeError(f"bad size {value!r}: a size cannot be negative; expected {SIZE_FORMS}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise SizeError(f"bad size {value!r}: expected {SIZE_FORMS}")
        return int(value)
    match = _SIZE_RE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise SizeError(f"bad size {value!r}: expected {SIZE_FORMS}")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: str | float) -> float:
    """Read "10ms", "0.5s", "250us" or a number of seconds, as seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value <= 0:
            raise SizeError(f"bad duration {value!r}: must be a positive number of seconds")
        return float(value)
    match = _DURATION_RE.match(str(value))
    if match is None:
        raise SizeError(
            f"bad duration {value!r}: expected a number with a unit (10ms, 0.5s, 250us) "
            "or plain seconds"
        )
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise SizeError(f"bad duration {value!r}: must be positive")
    return seconds


def parse_energy(value: str | int | float) -> float:
    """Read "40J", "500mJ", "2kJ", "1.5Wh", "0.1kWh" or a number of joules, as joules (>= 0)."""
    if isinstance(value, bool):
        raise SizeError(f"bad energy {value!r}: expected {ENERGY_FORMS}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise SizeError(f"bad energy {value!r}: must be 0 or more; expected {ENERGY_FORMS}")
        return float(value)
    text = str(value).strip()
    match = _ENERGY_RE.match(text)
    # Units are case-insensitive, but "MJ" (megajoules) read as "mj" would be a billion off.
    unit = match.group(2) if match else None
    if unit == "MJ":
        raise SizeError(f"bad energy {value!r}: write megajoules in kJ; expected {ENERGY_FORMS}")
    if match is None or unit is None or unit.lower() not in _ENERGY_UNITS:
        raise SizeError(f"bad energy {value!r}: expected {ENERGY_FORMS}")
    number = text[: len(text) - len(unit)].strip() if unit else text
    return float(number) * _ENERGY_UNITS[unit.lower()]


def format_energy(joules: float, *, signed: bool = False) -> str:
    """Print joules with three significant digits: 40.0 J, 512 mJ, 2.50 kJ (``signed`` adds "+")."""
    sign = "-" if joules < 0 else ("+" if signed else "")
    size = abs(joules)
    if size == 0:
        return f"{sign}0 J"
    for unit, scale in (("MJ", 1e6), ("kJ", 1e3), ("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6)):
        if size >= scale * 0.9995 or unit == "µJ":
            scaled = size / scale
            digits = 0 if scaled >= 99.95 else 1 if scaled >= 9.995 else 2
            return f"{sign}{scaled:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def format_bytes(n: int | float, *, signed: bool = False) -> str:
    """Print a byte count in IEC units: 1.5 GiB, 512.0 MiB, 12 B (``signed`` adds "+")."""
    sign = "-" if n < 0 else ("+" if signed else "")
    size = abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            text = f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
            return sign + text
        size /= 1024
    raise AssertionError("unreachable")


def format_rate(per_second: float, unit: str) -> str:
    """A rate with an SI prefix and three significant digits: 1.23 TFLOP/s, 450 GB/s."""
    scaled, prefix = per_second, ""
    for name, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(per_second) >= scale * 0.9995:  # 999.7 G shows as 1.00 T, not 1000 G
            scaled, prefix = per_second / scale, name
            break
    size = abs(scaled)
    digits = 0 if size >= 99.95 else 1 if size >= 9.995 else 2
    return f"{scaled:.{digits}f} {prefix}{unit}"


def format_duration(seconds: float) -> str:
    """Print a duration with a readable unit: 3.10 ms, 1.25 s, 850 us."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"
