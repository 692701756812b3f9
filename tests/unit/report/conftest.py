"""Fixtures of the report tool tests: writing reports, and a headless chromium."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cdp_browser import Browser, find_chromium
from report_builders import Report

from pytest_hwbench.report import schema_path

CHROMIUM_MISSING = (
    "no chromium on PATH (chromium, chromium-browser or google-chrome); "
    "on Debian/Ubuntu: apt-get install -y chromium"
)


@pytest.fixture
def write_report(tmp_path: Path) -> Callable[[Report, str], Path]:
    """Write a report (checked against the schema first) into tmp_path; return its path."""
    import jsonschema

    schema = json.loads(schema_path().read_text())

    def write(data: Report, name: str = "report.json") -> Path:
        jsonschema.validate(data, schema)
        path = tmp_path / name
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """chromium's executable, or skip."""
    path = find_chromium()
    if path is None:
        pytest.skip(CHROMIUM_MISSING)
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    """One headless chromium for a module's tests (each loads its own page)."""
    with Browser(chromium_path) as instance:
        yield instance
