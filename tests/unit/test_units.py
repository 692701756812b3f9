from __future__ import annotations

import pytest

from pytest_hwbench.units import (
    SizeError,
    format_bytes,
    format_duration,
    format_rate,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MB", 512_000_000),
        ("512MiB", 512 * 2**20),
        ("1.5 GiB", int(1.5 * 2**30)),
        ("2gb", 2_000_000_000),
        ("100", 100),
        ("64 B", 64),
        (1048576, 1048576),
        ("0.5KiB", 512),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["12 parsecs", "", "GiB", "-5MiB", "1..2GB", -1, True])
def test_bad_size_names_the_string_and_the_accepted_forms(bad: object) -> None:
    with pytest.raises(SizeError, match=r"bad size .*512MB \(10\^6\), 512MiB \(2\^20\)"):
        parse_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10ms", 0.01), ("0.5s", 0.5), ("250us", 250e-6), ("2", 2.0), (0.001, 0.001)],
)
def test_parse_duration(text: str | float, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["10 fortnights", "0ms", -1.0])
def test_bad_duration(bad: str | float) -> None:
    with pytest.raises(SizeError, match="bad duration"):
        parse_duration(bad)


def test_format_bytes_uses_iec_units() -> None:
    assert format_bytes(12) == "12 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(11.2 * 2**30) == "11.2 GiB"
    assert format_bytes(-3 * 2**20) == "-3.0 MiB"
    assert format_bytes(2**20, signed=True) == "+1.0 MiB"


def test_format_duration() -> None:
    assert format_duration(0.0031) == "3.10 ms"
    assert format_duration(1.25) == "1.25 s"
    assert format_duration(0.00085) == "850 us"


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (1.234e12, "1.23 TFLOP/s"),
        (450e9, "450 GFLOP/s"),
        (999.7e9, "1.00 TFLOP/s"),  # rounds up into the next prefix, never "1000 GFLOP/s"
        (12.0, "12.0 FLOP/s"),
        (0.5, "0.50 FLOP/s"),
    ],
)
def test_rates_get_an_si_prefix_and_three_digits(rate: float, text: str) -> None:
    assert format_rate(rate, "FLOP/s") == text
