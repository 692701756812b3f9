"""Hooks pytest-hwbench adds to pytest; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.metrics.memory.registry import MemoryMetricRegistry


@pytest.hookspec(historic=True)
def pytest_hwbench_register_backends(registry: HardwareRegistry) -> None:
    """Register extra hardware backends, e.g. ``registry.register(MyTPUBackend)``.

    Historic: a conftest.py loaded after start-up is still called with the session's registry.
    """


@pytest.hookspec(historic=True)
def pytest_hwbench_register_memory_metrics(registry: MemoryMetricRegistry) -> None:
    """Register the memory metric of a backend you added, e.g. ``registry.register(TPUMetric)``.

    ``register(metric_class)`` measures the platform the metric's ``platform`` names;
    ``register(metric_class, backend=BackendClass)`` measures that class and its subclasses.
    Historic, as `pytest_hwbench_register_backends`.
    """
