"""Which memory metric measures which backend: found by the metrics side, extended by others."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable

import pytest

from pytest_hwbench.hardware.base import HardwareDetectionWarning
from pytest_hwbench.hardware.cpu import CPUBackend
from pytest_hwbench.hardware.cuda import CUDABackend
from pytest_hwbench.hardware.mps import MPSBackend
from pytest_hwbench.hardware.rocm import ROCmBackend
from pytest_hwbench.hardware.xpu import XPUBackend
from pytest_hwbench.metrics.memory import MemoryMetricFactory
from pytest_hwbench.metrics.memory.base import MemoryMetric
from pytest_hwbench.metrics.memory.cpu import CPUMemoryMetric
from pytest_hwbench.metrics.memory.cuda import CUDAMemoryMetric
from pytest_hwbench.metrics.memory.mps import MPSMemoryMetric
from pytest_hwbench.metrics.memory.registry import (
    ENTRY_POINT_GROUP,
    MemoryMetricRegistry,
    default_memory_metric_registry,
)
from pytest_hwbench.metrics.memory.rocm import ROCmMemoryMetric
from pytest_hwbench.metrics.memory.xpu import XPUMemoryMetric
from pytest_hwbench.testing import FakeBackend, fake_registry


class CounterMetric(MemoryMetric):
    """A third party's metric: one series read from a counter the test controls."""

    platform = "tpu"
    primary_series = "used"
    used = 1000

    def series(self) -> tuple[str, ...]:
        return ("used",)

    def _read(self) -> dict[str, int]:
        return {"used": type(self).used}


@pytest.mark.parametrize(
    ("backend", "metric"),
    [
        (CPUBackend(), CPUMemoryMetric),
        (CUDABackend(), CUDAMemoryMetric),
        (ROCmBackend(), ROCmMemoryMetric),
        (MPSBackend(), MPSMemoryMetric),
        (XPUBackend(), XPUMemoryMetric),
    ],
    ids=lambda value: getattr(value, "name", None) or getattr(value, "__name__", ""),
)
def test_builtin_backends_get_their_platform_metric(
    backend: object, metric: type[MemoryMetric]
) -> None:
    assert default_memory_metric_registry().metric_class_for(backend) is metric  # type: ignore[arg-type]


def test_a_subclass_of_a_backend_is_measured_as_its_base() -> None:
    class PinnedCUDA(CUDABackend):
        name = "pinned-cuda"

    assert default_memory_metric_registry().metric_class_for(PinnedCUDA()) is CUDAMemoryMetric


def test_a_fake_named_like_a_builtin_is_measured_on_the_host() -> None:
    # A FakeBackend("cuda") has no torch.cuda behind it: the CUDA metric would call a missing GPU.
    fake = FakeBackend("cuda")
    assert default_memory_metric_registry().metric_class_for(fake) is CPUMemoryMetric


def test_a_metric_registered_by_platform_name_measures_that_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_registry(monkeypatch, FakeBackend("tpu", torch_device_type="cpu"))
    default_memory_metric_registry().register(CounterMetric)
    metric = MemoryMetricFactory.create("tpu")
    assert type(metric) is CounterMetric
    with metric:
        CounterMetric.used = 5000
        metric.record_memory("grown")
    CounterMetric.used = 1000
    stats = metric.get_metrics()["series"]["used"]
    assert (stats["start_bytes"], stats["peak_bytes"]) == (1000, 5000)


def test_a_class_registration_wins_over_a_name() -> None:
    registry = MemoryMetricRegistry()
    registry.register(CounterMetric, backend="cpu")
    registry.register(CPUMemoryMetric, backend=CPUBackend)
    assert registry.metric_class_for(CPUBackend()) is CPUMemoryMetric
    assert registry.metric_class_for(FakeBackend("cpu")) is CounterMetric


def test_registering_a_taken_key_needs_override() -> None:
    registry = MemoryMetricRegistry()
    registry.register(CounterMetric)
    with pytest.raises(ValueError, match=r"already registered for 'tpu'.*pass override=True"):
        registry.register(CPUMemoryMetric, backend="TPU")
    registry.register(CPUMemoryMetric, backend="tpu", override=True)
    assert registry.metric_class_for(FakeBackend("tpu")) is CPUMemoryMetric


def test_a_dotted_metric_needs_the_backend_it_measures() -> None:
    with pytest.raises(TypeError, match="needs backend="):
        MemoryMetricRegistry().register("acme:Metric")


def test_entry_point_metric_measures_its_platform(
    monkeypatch: pytest.MonkeyPatch, install_entry_points: Callable[..., None]
) -> None:
    module = types.ModuleType("acme_tpu_metric")
    module.CounterMetric = CounterMetric  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acme_tpu_metric", module)
    install_entry_points(ENTRY_POINT_GROUP, ("tpu", "acme_tpu_metric:CounterMetric"))
    registry = default_memory_metric_registry()
    assert registry.metric_class_for(FakeBackend("tpu")) is CounterMetric
    assert registry.metric_class_for(CPUBackend()) is CPUMemoryMetric


def test_broken_entry_point_metric_is_a_warning_and_host_measuring(
    monkeypatch: pytest.MonkeyPatch, install_entry_points: Callable[..., None]
) -> None:
    module = types.ModuleType("acme_not_metric")
    module.thing = 42  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acme_not_metric", module)
    install_entry_points(
        ENTRY_POINT_GROUP, ("npu", "no_such_module_xyz:NPUMetric"), ("ipu", "acme_not_metric:thing")
    )
    with pytest.warns(HardwareDetectionWarning) as caught:
        registry = default_memory_metric_registry()
    messages = [str(w.message) for w in caught]
    assert any("'npu' failed to load" in m and "no_such_module_xyz" in m for m in messages)
    assert any("'ipu'" in m and "is not a MemoryMetric subclass" in m for m in messages)
    assert registry.metric_class_for(FakeBackend("npu")) is CPUMemoryMetric


def test_conftest_hook_adds_a_backend_and_its_metric(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from pytest_hwbench.metrics.memory import MemoryMetric
        from pytest_hwbench.testing import FakeBackend

        class TPUMetric(MemoryMetric):
            platform = "tpu"
            primary_series = "hbm"

            def series(self):
                return ("hbm",)

            def _read(self):
                return {"hbm": 3 * 2**20}

        @pytest.hookimpl(optionalhook=True)
        def pytest_hwbench_register_backends(registry):
            registry.register(FakeBackend("tpu", torch_device_type="cpu"))

        @pytest.hookimpl(optionalhook=True)
        def pytest_hwbench_register_memory_metrics(registry):
            registry.register(TPUMetric)
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("tpu")
        def test_on_tpu(memory_profile):
            memory_profile.record_memory("step")
        """
    )
    report = pytester.path / "hw.json"
    result = pytester.runpytest_subprocess(f"--hw-report={report}")
    result.assert_outcomes(passed=1)
    (entry,) = json.loads(report.read_text())["tests"]
    assert entry["platform"] == "tpu"
    assert entry["memory"]["primary_series"] == "hbm"
    assert entry["memory"]["series"]["hbm"]["peak_bytes"] == 3 * 2**20
    # Without our plugin the optional hooks are simply not called: the conftest still loads.
    pytester.runpytest_subprocess("-p", "no:hwbench", "-p", "no:cacheprovider").assert_outcomes(
        passed=0, errors=1
    )
