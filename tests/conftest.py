from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_hwbench.hardware.registry import reset_default_registry


@pytest.fixture(autouse=True)
def _fresh_default_registry() -> Iterator[None]:
    """Each test detects hardware anew: no cached registry leaks from a test that faked one."""
    reset_default_registry()
    yield
    reset_default_registry()
