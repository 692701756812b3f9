"""The facts the XPU unit tests check against `FakeXPU`, checked against real Intel GPUs."""

from __future__ import annotations

import pytest
import torch

from pytest_hwbench.hardware.base import Capability, HardwareUnavailableError
from pytest_hwbench.hardware.xpu import XPUBackend

pytestmark = pytest.mark.hardware("xpu")

MIB = 1024 * 1024


def test_every_device_initializes() -> None:
    backend = XPUBackend()
    count = torch.xpu.device_count()
    assert backend.device_count() == count >= 1
    for index in range(count):
        assert backend.initialize(index) == torch.device("xpu", index)
    with pytest.raises(HardwareUnavailableError, match=rf"index {count} is out of range: {count} "):
        backend.initialize(count)


def test_properties_match_torch_in_bytes() -> None:
    backend = XPUBackend()
    for index in range(backend.device_count()):
        props = backend.properties(index)
        real = torch.xpu.get_device_properties(index)
        assert props.name == real.name
        assert props.total_memory_bytes == real.total_memory
        assert props.multiprocessor_count == real.max_compute_units
        assert props.driver_version == real.driver_version
        assert props.runtime_version == torch.version.xpu


def test_capabilities_match_the_device() -> None:
    backend = XPUBackend()
    for index in range(backend.device_count()):
        caps = backend.capabilities(index)
        real = torch.xpu.get_device_properties(index)
        assert (Capability.FP16 in caps) is bool(real.has_fp16)
        assert (Capability.UNIFIED_MEMORY in caps) is bool(real.is_integrated_gpu)
        assert {Capability.MEMORY_STATS, Capability.SYNCHRONIZE} <= caps
        assert (Capability.MULTI_DEVICE in caps) is (backend.device_count() > 1)


def test_a_real_allocation_moves_allocated_and_reserved() -> None:
    torch.xpu.synchronize(0)
    torch.xpu.empty_cache()
    before = torch.xpu.memory_allocated(0)
    tensor = torch.empty(3 * MIB, dtype=torch.uint8, device="xpu:0")
    assert torch.xpu.memory_allocated(0) - before == 3 * MIB
    reserved = torch.xpu.memory_reserved(0)
    assert reserved >= torch.xpu.memory_allocated(0)
    assert reserved % (2 * MIB) == 0  # segments come in 2 MiB multiples

    del tensor
    assert torch.xpu.memory_allocated(0) == before
    assert torch.xpu.memory_reserved(0) == reserved  # cached until empty_cache
    torch.xpu.empty_cache()
    assert torch.xpu.memory_reserved(0) < reserved


def test_peaks_persist_until_reset_which_sets_them_to_current() -> None:
    torch.xpu.reset_peak_memory_stats(0)
    start = torch.xpu.memory_allocated(0)
    tensor = torch.empty(8 * MIB, dtype=torch.uint8, device="xpu:0")
    del tensor
    assert torch.xpu.max_memory_allocated(0) >= start + 8 * MIB
    torch.xpu.reset_peak_memory_stats(0)
    assert torch.xpu.max_memory_allocated(0) == torch.xpu.memory_allocated(0)


@pytest.mark.hardware("xpu", min_count=2)
def test_reset_only_touches_the_named_device() -> None:
    torch.xpu.reset_peak_memory_stats(1)
    tensor = torch.empty(8 * MIB, dtype=torch.uint8, device="xpu:1")
    del tensor
    peak_1 = torch.xpu.max_memory_allocated(1)
    torch.xpu.reset_peak_memory_stats(0)
    assert torch.xpu.max_memory_allocated(1) == peak_1


def test_bad_indices_raise_what_the_fake_raises() -> None:
    count = torch.xpu.device_count()
    with pytest.raises(RuntimeError, match=rf"device is out of range, device is {count}"):
        torch.xpu.get_device_properties(count)
    with pytest.raises(RuntimeError, match=rf"Invalid device argument {count}: did you call init?"):
        torch.xpu.memory_allocated(count)


def test_mem_get_info_sees_the_whole_device() -> None:
    if Capability.DEVICE_MEMORY_INFO not in XPUBackend().capabilities(0):
        pytest.skip("this driver does not report free memory")
    free, total = torch.xpu.mem_get_info(0)
    assert total == torch.xpu.get_device_properties(0).total_memory
    assert 0 <= free <= total - torch.xpu.memory_reserved(0)
