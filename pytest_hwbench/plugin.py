"""The pytest entry point of pytest-hwbench: options, markers and fixtures.

Kept thin and cheap to import (pytest loads it in every run): the state and the hook logic live
in `HwbenchSession`, and torch, pynvml and psutil load only when a test needs them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench._options import add_options, resolve_options

if TYPE_CHECKING:
    import torch

    from pytest_hwbench._benchmark import HwBenchmark
    from pytest_hwbench._session import HwbenchSession
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.metrics.memory.base import MemoryMetric

SESSION_PLUGIN_NAME = "hwbench_session"

MARKERS = (
    "hardware(*names, requires=(), min_memory=None, min_count=1): run only where one of the named "
    "platforms is available and meets the requirements (capabilities such as 'bf16', device "
    "memory such as '16GiB', device count); with the hw_device fixture, run once per platform",
    "memory_limit(size=None, **per_platform): fail the test when its peak memory growth exceeds "
    "size ('2GiB', '500MB', bytes), or per platform: memory_limit(cuda='2GiB', cpu='500MiB')",
    "memory_leak_limit(size): fail the test when its device memory after teardown exceeds what "
    "it held before by more than size",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Make our hookspecs known, so conftests and plugins can implement them."""
    from pytest_hwbench import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """In an xdist worker, pin its GPUs before any conftest can initialize a device."""
    from pytest_hwbench._xdist import apply_worker_assignment

    apply_worker_assignment()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``hwbench`` option group (each option with an ini twin)."""
    add_options(parser)
    # hw_benchmark (pytest_hwbench/_benchmark.py): its ini settings.
    from pytest_hwbench._benchmark import add_benchmark_options

    add_benchmark_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register markers, let plugins add backends, check options, start the session object."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    import functools

    from pytest_hwbench._session import HwbenchSession

    @functools.cache
    def registry() -> HardwareRegistry:
        # Built when first needed, not here: a run that never asks about hardware (an xdist
        # controller, a suite that does not use us) imports no backend. The hook is historic, so
        # calling it late still reaches every conftest and plugin.
        from pytest_hwbench.hardware.registry import default_registry

        built = default_registry()
        config.hook.pytest_hwbench_register_backends.call_historic(kwargs={"registry": built})
        return built

    if config.hook.pytest_hwbench_register_backends.get_hookimpls():
        registry()  # conftests add backends: tests that ask hardware directly must see them
    options = resolve_options(config, registry)
    _plan_gpu_pinning(config, options.gpus_per_worker, options.gpus_share)
    session = HwbenchSession(config, options, registry)
    config.pluginmanager.register(session, SESSION_PLUGIN_NAME)
    # hw_benchmark (pytest_hwbench/_benchmark.py): check its ini; pytest-benchmark hooks if loaded.
    from pytest_hwbench._benchmark import configure_benchmarks

    configure_benchmarks(config, session)
    if config.pluginmanager.has_plugin("xdist"):
        from pytest_hwbench._session import XdistHooks

        config.pluginmanager.register(XdistHooks(session), "hwbench_xdist")


def _plan_gpu_pinning(config: pytest.Config, per_worker: int | None, share: bool) -> None:
    """In the xdist controller, split the GPUs among workers (they inherit the plan)."""
    import os

    from pytest_hwbench._xdist import ASSIGNMENT_ENV, GpuPlanError, plan

    workers = getattr(config.option, "numprocesses", None)
    if per_worker is None or hasattr(config, "workerinput") or not isinstance(workers, int):
        return
    try:
        gpu_plan = plan(per_worker, workers, share=share)
    except GpuPlanError as exc:
        raise pytest.UsageError(f"pytest-hwbench: {exc}") from None
    os.environ[ASSIGNMENT_ENV] = gpu_plan.to_json()

    def forget_plan() -> None:
        os.environ.pop(ASSIGNMENT_ENV, None)

    config.add_cleanup(forget_plan)


def _session(config: pytest.Config) -> HwbenchSession:
    session: HwbenchSession | None = config.pluginmanager.get_plugin(SESSION_PLUGIN_NAME)
    if session is None:
        raise RuntimeError("pytest-hwbench is not configured in this session")
    return session


@pytest.fixture
def hw_device(request: pytest.FixtureRequest) -> torch.device:
    """The `torch.device` this test runs on; tests using it run once per selected platform."""
    session = _session(request.config)
    name = getattr(request, "param", None) or session.platform_of(request.node)
    return session.registry.get(str(name)).initialize(0, strict=True)


@pytest.fixture
def hw_backend(request: pytest.FixtureRequest, hw_device: torch.device) -> HardwareBackend:
    """The `HardwareBackend` behind `hw_device` (properties, capabilities, synchronize)."""
    session = _session(request.config)
    return session.registry.get(session.platform_of(request.node))


@pytest.fixture
def memory_profile(request: pytest.FixtureRequest) -> Iterator[MemoryMetric]:
    """A running memory metric for this test's device; results go into the report.

    Call ``memory_profile.record_memory("label")`` to mark points of interest.
    """
    session = _session(request.config)
    metric = session.start_metric(request.node)
    try:
        yield metric
    finally:
        session.finish_metric(request.node)


@pytest.fixture
def hw_benchmark(request: pytest.FixtureRequest) -> Iterator[HwBenchmark]:
    """pytest-benchmark's ``benchmark`` on this test's device: synchronized rounds, plus memory.

    ``hw_benchmark(fn, *args, flops=..., bytes_moved=..., dtype=...)`` or ``.pedantic(...)``.
    """
    from pytest_hwbench._benchmark import hw_benchmark_fixture

    yield from hw_benchmark_fixture(request, _session(request.config))


@pytest.fixture(scope="session")
def hw_info(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The machine's hardware inventory (the same data as ``hwbench info --json``)."""
    return _session(request.config).machine_inventory()
