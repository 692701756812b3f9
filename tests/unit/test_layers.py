"""The layer contracts hold, and an import that points up breaks them (run as `make lint` does)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("importlinter", reason="import-linter is in the test extra")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the package under `root`, with the project's own contracts."""
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
         "lint_imports_command()", "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(ROOT / "pytest_hwbench", tmp_path / "pytest_hwbench")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_every_contract(package_copy: Path) -> None:
    result = _lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward_import", "contract"),
    [
        ("hardware/cpu.py", "import pytest_hwbench.metrics.memory.cpu", "every import points down"),
        ("metrics/memory/base.py", "import pytest_hwbench.plugin", "every import points down"),
        ("report/model.py", "import pytest_hwbench.metrics", "Reports and metrics"),
        ("report/html.py", "import pytest_hwbench.hardware", "never on hardware"),
        ("cli.py", "import pytest_hwbench.plugin.options", "never the plugin"),
        ("plugin/planning.py", "import pytest_hwbench.plugin.measuring", "Inside the plugin"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    package_copy: Path, module: str, upward_import: str, contract: str
) -> None:
    path = package_copy / "pytest_hwbench" / module
    path.write_text(path.read_text() + f"\n{upward_import}  # noqa\n")
    result = _lint_imports(package_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
