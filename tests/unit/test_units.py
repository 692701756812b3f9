from __future__ import annotations

import pytest

from pytest_hwbench.units import (
    SizeError,
    format_bytes,
    format_duration,
    format_energy,
    format_rate,
    parse_duration,
    parse_energy,
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


@pytest.mark.parametrize(
    ("value", "joules"),
    [
        (40, 40.0),
        (0.5, 0.5),
        ("40J", 40.0),
        ("40 j", 40.0),
        ("500mJ", 0.5),
        ("2kJ", 2000.0),
        ("1.5Wh", 5400.0),
        ("0.1kWh", 360_000.0),
        ("1e3J", 1000.0),
        ("0", 0.0),
    ],
)
def test_parse_energy_reads_joules_and_their_units(value: str | float, joules: float) -> None:
    assert parse_energy(value) == pytest.approx(joules)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 joules", "bad energy '5 joules': expected joules as a number (40, 0.5) or with a unit"),
        (-1, "must be 0 or more"),
        (float("nan"), "must be 0 or more"),
        (True, "bad energy True"),
        ("1MJ", "write megajoules in kJ"),
        ("", "bad energy ''"),
    ],
)
def test_parse_energy_refuses_what_it_cannot_read(value: object, message: str) -> None:
    with pytest.raises(SizeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_energy(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("joules", "text"),
    [
        (0, "0 J"),
        (0.0005, "500 µJ"),
        (0.125, "125 mJ"),
        (0.9996, "1.00 J"),
        (3.75, "3.75 J"),
        (40, "40.0 J"),
        (512.3, "512 J"),
        (2500, "2.50 kJ"),
        (-3, "-3.00 J"),
    ],
)
def test_format_energy_keeps_three_significant_digits(joules: float, text: str) -> None:
    assert format_energy(joules) == text
    assert format_energy(abs(joules), signed=True) == "+" + text.lstrip("-")
