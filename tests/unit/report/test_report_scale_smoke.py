"""benchmarks/report_scale.py still runs and prints its figures (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "report_scale.py"


def test_report_scale_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-browser"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "validate against the schema" in out
    assert "hwbench compare --fail-on peak:+10%" in out
    assert "exit status" in out
    assert "  page size" in out
    assert "hwbench trace (a tenth: 20 tests)" in out
