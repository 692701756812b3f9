"""pytest loads the plugin in every run of every user: importing it must not pull in heavy deps."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "statement",
    [
        "import pytest_hwbench",
        "import pytest_hwbench.plugin",
        "from pytest_hwbench import hardware; hardware.default_registry()",
    ],
)
def test_import_pulls_in_no_heavy_dependency(statement: str) -> None:
    code = (
        f"{statement}\n"
        "import sys\n"
        "heavy = sorted(m for m in ('torch', 'pynvml', 'psutil', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""
