from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_hwbench.report import schema_path


def _load_valid_report(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(schema_path().read_text()))
    return data


@pytest.fixture
def load_valid_report() -> Callable[[Path], dict[str, Any]]:
    """Read a report and validate it against the shipped JSON Schema."""
    return _load_valid_report


@pytest.fixture
def report_path(pytester: pytest.Pytester) -> Path:
    return pytester.path / "out" / "hw.json"
