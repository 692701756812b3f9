"""The pytest entry point of pytest-hwbench: its hooks and fixtures, the plugin's front door.

pytest loads this module in every run of every user who has the plugin installed, so it stays
cheap: it imports the options and the markers' table, and a run that uses none of our options,
markers or fixtures never builds `HwbenchSession` (nor imports torch, pynvml, psutil or the
metrics). The hooks here check, per test definition and per collected item, whether the test is
ours, and only then wake the session, which registers the per-test hooks it needs. Below this
module: ``options``, ``marks``, ``planning``, ``measuring``, ``reporting``, ``benchmark/``,
``xdist``, and ``session``, which holds them together.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench.names import (
    DEVICE_FIXTURE,
    DEVICES_FIXTURE,
    DISTRIBUTED_MARKER,
    DTYPE_FIXTURE,
    GPU_PLAN_ENV,
    HW_BENCHMARK_FIXTURE,
    SESSION_PLUGIN_NAME,
)
from pytest_hwbench.plugin.marks import carries_our_markers, is_ours, marker_help_lines
from pytest_hwbench.plugin.options import (
    HwbenchOptions,
    add_options,
    benchmark_plugin_loaded,
    is_xdist_controller,
    resolve_options,
)

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.metrics.energy.metric import EnergyMetric
    from pytest_hwbench.metrics.memory.base import MemoryMetric
    from pytest_hwbench.plugin.benchmark.fixture import HwBenchmark
    from pytest_hwbench.plugin.distributed import RankBenchmark
    from pytest_hwbench.plugin.session import HwbenchSession


class _PluginState:
    """What start-up resolved, and the session once something needs it."""

    __slots__ = (
        "benchmark_plugin",
        "benchmarked",
        "marked_parents",
        "options",
        "registry",
        "session",
    )

    def __init__(
        self,
        options: HwbenchOptions,
        registry: Callable[[], HardwareRegistry],
        benchmark_plugin: bool,
    ) -> None:
        self.options = options
        self.registry = registry
        self.benchmark_plugin = benchmark_plugin
        self.session: HwbenchSession | None = None
        #: Per collector (module, class) id: whether it or a parent carries one of our markers.
        self.marked_parents: dict[int, tuple[object, bool]] = {}
        #: Whether a collected test function uses hw_benchmark.
        self.benchmarked = False


_state_key = pytest.StashKey[_PluginState]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Make our hookspecs known, so conftests and plugins can implement them."""
    from pytest_hwbench.plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """In an xdist worker, pin its GPUs before any conftest can initialize a device."""
    if os.environ.get(GPU_PLAN_ENV):
        from pytest_hwbench.plugin.xdist import apply_worker_assignment

        apply_worker_assignment()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``hwbench`` option group (each option with an ini twin)."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register markers, check options; start the session now if every test needs it."""
    for line in marker_help_lines():
        config.addinivalue_line("markers", line)

    @functools.cache
    def registry() -> HardwareRegistry:
        # Built when first needed, not here: a run that never asks about hardware (an xdist
        # controller, a suite that does not use us) imports no backend. The hooks are historic,
        # so calling them late still reaches every conftest and plugin.
        from pytest_hwbench.hardware.registry import default_registry
        from pytest_hwbench.metrics.memory.registry import default_memory_metric_registry

        built = default_registry()
        config.hook.pytest_hwbench_register_backends.call_historic(kwargs={"registry": built})
        config.hook.pytest_hwbench_register_memory_metrics.call_historic(
            kwargs={"registry": default_memory_metric_registry()}
        )
        return built

    if config.hook.pytest_hwbench_register_backends.get_hookimpls():
        registry()  # conftests add backends: tests that ask hardware directly must see them
    options = resolve_options(config, registry)
    _plan_gpu_pinning(config, options.gpus_per_worker, options.gpus_share, registry)
    state = _PluginState(options, registry, benchmark_plugin_loaded(config))
    config.stash[_state_key] = state
    if options.axis_position == "last":
        config.pluginmanager.register(_LateAxes(), "hwbench_late_axes")
    if options.measures_every_test or is_xdist_controller(config):
        get_session(config)


def get_session(config: pytest.Config) -> HwbenchSession:
    """The run's `HwbenchSession`, created (and registered for its hooks) on first use."""
    state = config.stash.get(_state_key, None)
    if state is None:
        raise RuntimeError("pytest-hwbench is not configured in this session")
    if state.session is None:
        from pytest_hwbench.plugin.session import HwbenchSession

        state.session = HwbenchSession(config, state.options, state.registry)
        config.pluginmanager.register(state.session, SESSION_PLUGIN_NAME)
    return state.session


def _plan_gpu_pinning(
    config: pytest.Config,
    per_worker: int | None,
    share: bool,
    registry: Callable[[], HardwareRegistry],
) -> None:
    """In the xdist controller, split the GPUs among workers (they inherit the plan)."""
    workers = getattr(config.option, "numprocesses", None)
    if per_worker is None or hasattr(config, "workerinput") or not isinstance(workers, int):
        return
    from pytest_hwbench.plugin.xdist import GpuPlanError, plan

    try:
        gpu_plan = plan(per_worker, workers, registry(), share=share)
    except GpuPlanError as exc:
        raise pytest.UsageError(f"pytest-hwbench: {exc}") from None
    os.environ[GPU_PLAN_ENV] = gpu_plan.to_json()

    def forget_plan() -> None:
        os.environ.pop(GPU_PLAN_ENV, None)

    config.add_cleanup(forget_plan)


# -- collection ------------------------------------------------------------------------------------


def _takes_an_axis(metafunc: pytest.Metafunc) -> bool:
    fixtures = metafunc.fixturenames
    return DEVICE_FIXTURE in fixtures or DTYPE_FIXTURE in fixtures or DEVICES_FIXTURE in fixtures


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Validate our markers and parametrize ``hw_device`` and ``hw_dtype``.

    Before any other parametrization (pytest's ``parametrize`` markers, a conftest's own
    ``pytest_generate_tests``), so that the platform leads the test's id (``[cuda-8]``),
    unless ini ``hw_axis_position = last`` (see `_LateAxes`).
    """
    state = metafunc.config.stash[_state_key]
    if HW_BENCHMARK_FIXTURE in metafunc.fixturenames:
        state.benchmarked = True
    if _takes_an_axis(metafunc) or carries_our_markers(metafunc.definition, state.marked_parents):
        get_session(metafunc.config).planning.generate_tests(metafunc)


class _LateAxes:
    """With ini ``hw_axis_position = last``: the axes after every other parametrization."""

    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrize ``hw_device`` and ``hw_dtype`` last: ids ``[8-cuda-float32]``."""
        if _takes_an_axis(metafunc):
            get_session(metafunc.config).planning.generate_tests(metafunc, late=True)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    """Around the other plugins' hooks: our tests get their platform and skips or deselection.

    Before the others, hw_benchmark tests become pytest-benchmark tests (--benchmark-only sees
    them); after them all (deselection by -k, markers added by conftests), each of our tests is
    planned, and those that cannot run are skipped or deselected.
    """
    state = config.stash[_state_key]
    if state.benchmark_plugin and state.benchmarked:
        # A distributed test's ranks time it themselves: pytest-benchmark stays out of it.
        benchmarked = [
            i
            for i in items
            if HW_BENCHMARK_FIXTURE in getattr(i, "fixturenames", ())
            and i.get_closest_marker(DISTRIBUTED_MARKER) is None
        ]
        if benchmarked:
            from pytest_hwbench.plugin.benchmark.fixture import require_benchmark_fixture

            require_benchmark_fixture(benchmarked)
    yield
    state.marked_parents.clear()  # a conftest may have marked a module or class since
    ours = [item for item in items if is_ours(item, state.marked_parents)]
    if ours or state.session is not None:
        get_session(config).classify_items(items, ours)


# -- hooks of other plugins, declared optional: they exist only where that plugin is installed ----


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """pytest-benchmark's machine info gets the accelerators, in runs that use hwbench."""
    state = config.stash.get(_state_key, None)
    if state is not None and state.session is not None:
        from pytest_hwbench.plugin.benchmark.machine import update_machine_info

        update_machine_info(config, machine_info, state.session.registry)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: a worker is down; take its inventory, or give a crashed one's GPUs away.

    A crashed worker's replacement starts right after this hook and takes over its GPUs.
    """
    if error is not None and os.environ.get(GPU_PLAN_ENV):
        from pytest_hwbench.plugin.xdist import release_crashed_worker

        release_crashed_worker(str(getattr(node.gateway, "id", "")))
    state = node.config.stash.get(_state_key, None)
    if state is not None and state.session is not None:
        state.session.take_worker_inventory(node)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def hw_device(request: pytest.FixtureRequest) -> torch.device:
    """The `torch.device` this test runs on; tests using it run once per selected platform."""
    session = get_session(request.config)
    name = getattr(request, "param", None) or session.platform_of(request.node)
    return session.registry.get(str(name)).initialize(0, strict=True)


@pytest.fixture
def hw_dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """The `torch.dtype` this test computes in; tests using it run once per selected dtype.

    The dtypes: the ``hardware`` marker's ``dtypes=``, else ``--hw-dtypes``, else float32. A
    device that cannot compute in one (no fp64 on MPS) skips that instance, saying why.
    """
    import torch

    dtype: torch.dtype = getattr(torch, str(getattr(request, "param", None) or "float32"))
    return dtype


@pytest.fixture
def hw_devices(request: pytest.FixtureRequest) -> list[torch.device]:
    """The devices this test was granted on its platform: its marker's ``min_count`` of them.

    One without ``min_count``. Under xdist with ``--hw-gpus-per-worker``, from the worker's
    own GPUs (a test needing more than a worker has is skipped, saying so).
    """
    session = get_session(request.config)
    plan = session.planning.plan(request.node)
    backend = session.registry.get(plan.platform)
    return [backend.initialize(index, strict=True) for index in range(plan.device_count)]


@pytest.fixture
def hw_rank() -> int:
    """The rank of the process running a ``distributed`` test (0 .. hw_world_size - 1), else 0."""
    return 0


@pytest.fixture
def hw_world_size(request: pytest.FixtureRequest) -> int:
    """The number of ranks of a ``distributed`` test; 1 elsewhere."""
    session = get_session(request.config)
    plan = session.planning.plan(request.node)
    if plan.distributed is None:
        return 1
    return plan.distributed.world_size_on(session.registry.get(plan.platform))


@pytest.fixture
def hw_backend(request: pytest.FixtureRequest, hw_device: torch.device) -> HardwareBackend:
    """The `HardwareBackend` behind `hw_device` (properties, capabilities, synchronize)."""
    return get_session(request.config).backend_of(request.node)


@pytest.fixture
def memory_profile(request: pytest.FixtureRequest) -> Iterator[MemoryMetric]:
    """A running memory metric for this test's device; results go into the report.

    Call ``memory_profile.record_memory("label")`` to mark points of interest.
    """
    measuring = get_session(request.config).measuring
    metric = measuring.start(request.node)
    try:
        yield metric
    finally:
        measuring.finish(request.node)


@pytest.fixture
def energy_profile(request: pytest.FixtureRequest) -> Iterator[EnergyMetric]:
    """A running energy metric over this test's device's counters; results go into the report.

    From this fixture's setup to the test's end: a test with an energy_limit is judged at its
    call's end, others at teardown. Counters are device-wide. Where the device has none to
    read, the metric's ``available`` is False and its results say why (the test runs as usual).
    """
    energy = get_session(request.config).energy
    metric = energy.start(request.node)
    try:
        yield metric
    finally:
        energy.finish(request.node)


@pytest.fixture
def hw_benchmark(request: pytest.FixtureRequest) -> Iterator[HwBenchmark | RankBenchmark]:
    """pytest-benchmark's ``benchmark`` on this test's device: synchronized rounds, plus memory.

    ``hw_benchmark(fn, *args, flops=..., bytes_moved=..., dtype=...)`` or ``.pedantic(...)``.
    """
    from pytest_hwbench.plugin.benchmark.fixture import hw_benchmark_fixture

    session = get_session(request.config)
    if session.planning.plan(request.node).distributed is not None:
        from pytest_hwbench.plugin.distributed import RankBenchmark

        yield RankBenchmark(session.options.benchmark_warmup)  # the ranks run it
        return
    backend = session.backend_of(request.node)
    energy = session.energy if session.options.energy else None
    yield from hw_benchmark_fixture(request, session.measuring, backend, session.options, energy)


@pytest.fixture(scope="session")
def hw_info(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The machine's hardware inventory (the same data as ``hwbench info --json``)."""
    return get_session(request.config).machine_inventory(import_torch=True)
