"""The benchmark scripts still run and print their tables (no timing is asserted here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_script(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def table_rows(output: str) -> list[str]:
    """The lines after the table's dashed rule, up to the blank line that ends it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_sampler_overhead_quick() -> None:
    output = run_script("sampler_overhead.py", "--quick")
    rows = table_rows(output)
    for workload in ("python loop", "torch matmul"):
        for condition in ("none", "thread 10ms", "process 1ms", "energy 10ms"):
            row = re.compile(rf"{workload}\s+{condition}\s+\d")
            assert any(row.match(line) for line in rows), output
    assert "(no verdict: --quick)" in output


def test_plugin_overhead_quick() -> None:
    output = run_script("plugin_overhead.py", "--quick", "--tests", "50", "--repeats", "1")
    variants = {line.split()[0] for line in table_rows(output)}
    assert {"plain", "unused", "profile-all"} <= variants, output
    if sys.platform.startswith("linux"):
        assert "floor" in variants, output  # the floor plugin loaded and its run passed
        assert re.search(r"profile-all over floor: [+-]\d+\.\d µs/test", output), output
        # The within-run A/B ran both kinds: its conftest still reaches the plugin's internals.
        for kind in ("profile-all", "floor"):
            assert re.search(rf"  {kind}\s+adds [+-]\d+\.\d µs/test", output), output
    # Competitors are measured or said to be skipped (not installed, or failing), never dropped.
    for competitor in ("memray", "monitor"):
        assert competitor in variants or f"{competitor}: skipped, " in output, output
    assert "torch in the pytest process with hwbench installed but unused:" in output


def test_real_suite_says_how_to_set_it_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "real_suite.py"), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"no suite in {tmp_path}: run with --setup first" in proc.stdout


def test_real_suite_runs_its_variants_with_cached_bytecode(tmp_path: Path) -> None:
    """A round over a stand-in suite (the real one needs the package index): every variant
    passes, the table has its ratios, the report is written, and bytecode lands in the cache."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    suite = tmp_path / "linear_operator-0.6" / "test"
    suite.mkdir(parents=True)
    (suite / "test_small.py").write_text(
        "import json\n\n\ndef test_a():\n    assert json.dumps([1]) == '[1]'\n\n\n"
        "def test_b():\n    assert bytearray(2**20)\n"
    )
    output = run_script("real_suite.py", "--workdir", str(tmp_path), "--rounds", "1")
    assert "round 1/1:" in output
    for variant in ("plain", "profile-all", "+report"):
        assert re.search(rf"^{re.escape(variant)}\s+\d+\.\d\d\s+\d\.\d{{3}}x", output, re.M)
    assert re.search(r"^\+report .*<= 1\.03x: (ok|MISSED)$", output, re.M), output
    assert (tmp_path / "hw-report.json").stat().st_size > 0
    assert any((tmp_path / "pycache").rglob("*.pyc"))


def test_energy_overhead_runs_a_pair() -> None:
    output = run_script("energy_overhead.py", "--pairs", "1")
    assert re.search(r"tests' own time\s+median \d\.\d{3}x", output), output
    assert re.search(r"difference of medians: [+-]\d+ us a test", output), output
    assert "(no verdict: fewer than 6 pairs" in output
