"""The pytest entry point of pytest-hwbench: options, markers, fixtures and the report."""

from __future__ import annotations

import pytest


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Make our hookspecs known, so conftests can implement them."""
    from pytest_hwbench import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    """Register markers and let plugins and conftests add hardware backends."""
    config.addinivalue_line(
        "markers",
        "hardware(*names, requires=(), min_memory=None, min_count=1): run only where one of the "
        "named platforms (cpu, cuda, rocm, mps, xpu, ...) is available",
    )
    from pytest_hwbench.hardware.registry import default_registry

    config.hook.pytest_hwbench_register_backends.call_historic(
        kwargs={"registry": default_registry()}
    )
