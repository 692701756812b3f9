"""Hooks pytest-hwbench adds to pytest; implement them in a conftest.py or a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


@pytest.hookspec(firstresult=True)
def pytest_hwbench_default_hardware(definition: pytest.Function) -> Any:
    """The hardware marker for the tests below this conftest.py that carry none of their own.

    Return ``pytest.mark.hardware(...)`` (the same arguments as on a test) or None. It gives
    every test below that uses ``hw_device`` or ``hw_dtype`` the platform and dtype axes, as
    a module's ``pytestmark`` would, but for a whole directory: pytest runs a conftest's
    hooks for the tests under it only. Called at collection, before parametrization (the
    marker arrives too late from ``pytest_collection_modifyitems``).
    """
