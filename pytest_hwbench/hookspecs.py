"""Hooks pytest-hwbench adds to pytest; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry


@pytest.hookspec(historic=True)
def pytest_hwbench_register_backends(registry: HardwareRegistry) -> None:
    """Register extra hardware backends, e.g. ``registry.register(MyTPUBackend)``.

    Historic: a conftest.py loaded after start-up is still called with the session's registry.
    """
