"""The generic `torch.accelerator` backend and its memory metric, on a fake out-of-tree device.

In this process the fakes use device types torch already knows ("hpu", "maia"): faking "npu"
renames torch's PrivateUse1 type for good, which `tests/plugin/test_generic_accelerator.py`
does in subprocesses.
"""

from __future__ import annotations

import pytest
import torch

from pytest_hwbench import hardware
from pytest_hwbench.hardware import Capability, HardwareFallbackWarning
from pytest_hwbench.hardware.accelerator import AcceleratorBackend
from pytest_hwbench.metrics.memory import MemoryMetricFactory
from pytest_hwbench.metrics.memory.accelerator import AcceleratorMemoryMetric
from pytest_hwbench.testing import (
    FakeAccelerator,
    FakeAcceleratorDeviceProperties,
    fake_accelerator,
    fake_cuda,
)

MiB = 2**20
GiB = 2**30


def test_known_device_types_are_registered_without_torch_and_absent_here() -> None:
    registry = hardware.default_registry()
    for name in ("npu", "hpu", "mlu", "musa", "mtia"):
        assert isinstance(registry.get(name), AcceleratorBackend)
    npu = hardware.get_hardware_backend("npu")
    assert npu.torch_device_type == "npu"
    assert npu.communication_backend == "hccl"
    assert npu.visibility_variables == ("ASCEND_RT_VISIBLE_DEVICES",)
    assert not npu.is_available()
    assert npu.unavailable_reason() == (
        "torch has no accelerator here (no npu backend is loaded: install torch_npu)"
    )
    assert "npu" not in hardware.get_available_hardware()


def test_a_fake_gaudi_is_a_platform_with_devices_properties_and_capabilities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_accelerator(
        monkeypatch,
        "hpu",
        count=2,
        properties=FakeAcceleratorDeviceProperties(name="GAUDI2", total_memory=96 * GiB),
    )
    assert "hpu" in hardware.get_available_hardware()
    hpu = hardware.get_hardware_backend("hpu")
    assert hpu.device_count() == 2
    props = hpu.properties(1)
    assert (props.name, props.vendor, props.total_memory_bytes) == (
        "GAUDI2",
        "Intel (Habana Labs)",
        96 * GiB,
    )
    assert props.extra["supported_dtypes"] == "bfloat16,bool,float16,float32,int32,int64,int8"
    assert props.extra["cube_core_num"] == "20"  # the device module's own properties
    assert hpu.capabilities(1) == {
        Capability.SYNCHRONIZE,
        Capability.FP16,
        Capability.BF16,
        Capability.MEMORY_STATS,
        Capability.PEAK_MEMORY_RESET,
        Capability.DEVICE_MEMORY_INFO,
        Capability.MULTI_DEVICE,
    }
    assert hpu.dtype_unmet_reason("float64", 0) == "hpu: float64 needs fp64, which hpu:0 lacks"
    assert hardware.initialize_hardware("hpu:1") == torch.device("hpu", 1)


def test_dtypes_from_the_device_module_where_torch_cannot_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_accelerator(monkeypatch, "hpu", supported_dtypes=None)
    module = torch.hpu  # type: ignore[attr-defined]
    monkeypatch.setattr(module, "is_bf16_supported", lambda: True, raising=False)
    caps = hardware.get_hardware_backend("hpu").capabilities(0)
    assert Capability.BF16 in caps
    assert Capability.FP16 not in caps  # nothing says so: not claimed
    assert "supported_dtypes" not in hardware.get_hardware_backend("hpu").properties(0).extra
    assert fake.synchronize_calls == {}


def test_a_privateuse1_name_nobody_registered_is_found_through_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = hardware.default_registry()
    assert "maia" not in registry.names()
    fake_accelerator(monkeypatch, "maia", count=3)
    backend = hardware.get_hardware_backend("maia")  # an unknown name asks torch first
    assert isinstance(backend, AcceleratorBackend)
    assert backend.device_count() == 3
    assert "PrivateUse1" in backend.description
    assert backend.communication_backend is None
    assert "maia" in hardware.get_available_hardware()
    inventory = hardware.hardware_inventory()
    assert inventory["torch"]["accelerator"] == "maia"
    (maia,) = [b for b in inventory["backends"] if b["name"] == "maia"]
    assert maia["available"] is True
    assert len(maia["devices"]) == 3


def test_an_absent_device_says_why_and_falls_back_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_accelerator(monkeypatch, "hpu", available=False)
    hpu = hardware.get_hardware_backend("hpu")
    assert hpu.unavailable_reason() == (
        "torch has a hpu backend but no device or driver answers "
        "(torch.accelerator.is_available() is False)"
    )
    with pytest.warns(HardwareFallbackWarning, match="hpu was requested but is not available"):
        assert hardware.initialize_hardware("hpu") == torch.device("cpu")
    mtia = hardware.get_hardware_backend("mtia")
    assert mtia.unavailable_reason() == "torch's accelerator here is hpu, not mtia (install mtia)"


def test_a_dedicated_backend_wins_over_the_generic_one(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch)
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda **_: torch.device("cuda"))
    registry = hardware.default_registry()
    assert registry.discover_accelerator() is registry.get("cuda")
    assert [b.name for b in registry if b.torch_device_type == "cuda"] == ["cuda", "rocm"]
    generic = AcceleratorBackend("cuda")
    assert not generic.is_available()
    assert generic.unavailable_reason() == (
        "cuda devices have a dedicated backend ('cuda', 'rocm'), which measures them instead "
        "of the generic torch.accelerator one"
    )


def test_metric_has_exact_allocator_peaks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_accelerator(monkeypatch, "hpu", count=2, external_used_bytes=GiB)
    metric = MemoryMetricFactory.create("hpu:1")
    assert isinstance(metric, AcceleratorMemoryMetric)
    assert metric.platform == "hpu"
    assert metric.primary_series == "allocated"
    kept = fake.allocate(1, 4 * MiB)
    with metric:
        fake.free(fake.allocate(1, 64 * MiB))  # a spike no sampler sees
        fake.allocate(0, 32 * MiB)  # another device: not this metric's
    metrics = metric.get_metrics()
    series = metrics["series"]
    assert series["allocated"]["exact_peak"] is True
    assert series["allocated"]["peak_delta_bytes"] == 64 * MiB
    assert series["reserved"]["peak_bytes"] >= 68 * MiB
    total = 64 * GiB
    free, _ = fake.get_memory_info(1)
    assert series["device_used"]["end_bytes"] == total - free
    assert series["device_used"]["end_bytes"] >= GiB  # other processes count here
    assert metrics["device"]["device"] == "hpu:1"
    assert fake.synchronize_calls[1] >= 2  # before the reset and before the last reading
    fake.free(kept)


def test_metric_without_a_peak_reset_samples_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_accelerator(monkeypatch, "hpu", peak_reset=False, initialized=True)
    backend = hardware.get_hardware_backend("hpu")
    assert Capability.PEAK_MEMORY_RESET not in backend.capabilities(0)
    metric = MemoryMetricFactory.create("hpu", interval="1ms")
    with metric:
        handle = fake.allocate(0, 16 * MiB)
        metric.record_memory("held")
        fake.free(handle)
    metrics = metric.get_metrics()
    assert metrics["series"]["allocated"]["exact_peak"] is False
    assert metrics["series"]["allocated"]["peak_delta_bytes"] == 16 * MiB
    assert any("reset_peak_memory_stats does not work on hpu" in w for w in metrics["warnings"])


def test_metric_of_an_allocator_without_statistics_reads_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_accelerator(monkeypatch, "hpu", allocator_stats=False, initialized=True)
    with pytest.raises(RuntimeError, match="Allocator for hpu is not a DeviceAllocator"):
        torch.accelerator.memory_allocated(0)
    backend = hardware.get_hardware_backend("hpu")
    assert Capability.MEMORY_STATS not in backend.capabilities(0)
    metric = MemoryMetricFactory.create("hpu")
    assert metric.series() == ("device_used", "rss")
    assert metric.primary_series == "device_used"
    with metric:
        handle = fake.allocate(0, 30 * MiB)
        metric.record_memory("held")
        fake.free(handle)
    metrics = metric.get_metrics()
    assert metrics["series"]["device_used"]["peak_delta_bytes"] >= 30 * MiB
    assert "allocated" not in metrics["series"]
    assert any("gives torch.accelerator no statistics" in w for w in metrics["warnings"])


def test_fake_follows_torch_accelerator_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_accelerator(monkeypatch, "hpu", count=2)
    # Before the allocator is initialized torch answers itself: empty stats, no-op resets.
    assert torch.accelerator.memory_stats(0) == {}
    torch.accelerator.reset_peak_memory_stats(1)
    assert torch.accelerator.memory_allocated("hpu:1") == 0
    with pytest.raises(RuntimeError, match="device is out of range, device is 2"):
        fake.allocate(2, MiB)
    handle = fake.allocate(1, 3 * MiB)
    with pytest.raises(ValueError, match="cuda doesn't match the current accelerator hpu"):
        torch.accelerator.memory_allocated("cuda:0")
    assert torch.accelerator.memory_allocated(1) == 3 * MiB
    assert torch.accelerator.memory_reserved(1) == 20 * MiB  # a large-pool segment
    fake.free(handle)
    assert torch.accelerator.max_memory_allocated(1) == 3 * MiB
    torch.accelerator.reset_peak_memory_stats(1)
    assert torch.accelerator.max_memory_allocated(1) == 0
    assert torch.accelerator.current_accelerator() == torch.device("hpu")
    assert FakeAccelerator.installed("hpu") is fake
    with pytest.raises(LookupError, match="no FakeAccelerator is installed for 'npu'"):
        FakeAccelerator.installed("npu")


def test_fake_signatures_are_torch_accelerators() -> None:
    """Every function the fake stands in for takes what torch's own takes, the same way."""
    import inspect

    fake = FakeAccelerator("hpu")
    checked = 0
    for name, function in fake._api().items():
        real = getattr(torch.accelerator, name, None)
        if real is None:  # an older torch without it: the fake leaves it out
            continue
        real_params = [
            (p.name, p.kind, p.default) for p in inspect.signature(real).parameters.values()
        ]
        fake_params = [
            (p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()
        ]
        assert fake_params == real_params, name
        checked += 1
    assert checked >= 15


def test_a_sampled_peak_is_said_once_however_many_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_accelerator(monkeypatch, "hpu", peak_reset=False, initialized=True)
    metric = MemoryMetricFactory.create("hpu")
    with metric:
        for label in ("a", "b", "c"):
            with metric.measure(label):
                fake.free(fake.allocate(0, MiB))
    warnings = metric.get_metrics()["warnings"]
    assert sum("reset_peak_memory_stats does not work" in w for w in warnings) == 1


def test_the_inventory_keeps_torchs_own_accelerator_even_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_accelerator(monkeypatch, "hpu", available=False)
    inventory = hardware.hardware_inventory()
    (hpu,) = [b for b in inventory["backends"] if b["name"] == "hpu"]
    assert hpu["available"] is False
    assert "no device or driver answers" in hpu["reason"]
    assert "npu" not in [b["name"] for b in inventory["backends"]]
