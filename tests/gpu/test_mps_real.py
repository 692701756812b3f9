"""The facts the MPS unit tests check against `FakeMPS`, checked against a real Mac GPU."""

from __future__ import annotations

import platform

import pytest
import torch

from pytest_hwbench.hardware.base import Capability, HardwareUnavailableError
from pytest_hwbench.hardware.mps import MPSBackend

pytestmark = pytest.mark.hardware("mps")

MIB = 1024 * 1024


def test_one_device_that_initializes() -> None:
    backend = MPSBackend()
    assert backend.is_available()
    assert backend.unavailable_reason() is None
    assert backend.device_count() == 1
    assert backend.initialize() == torch.device("mps", 0)
    with pytest.raises(HardwareUnavailableError, match=r"index 1 is out of range: 1 mps device "):
        backend.initialize(1)


def test_properties_match_torch_in_bytes() -> None:
    props = MPSBackend().properties()
    assert props.name
    assert props.vendor in {"Apple", "AMD"}
    if hasattr(torch.mps, "recommended_max_memory"):
        assert props.total_memory_bytes == torch.mps.recommended_max_memory()
    assert props.total_memory_bytes > 512 * MIB
    assert props.extra["macos_version"] == platform.mac_ver()[0]


def test_capabilities_match_what_the_device_runs() -> None:
    caps = MPSBackend().capabilities()
    assert {Capability.MEMORY_STATS, Capability.SYNCHRONIZE} <= caps
    assert Capability.MULTI_DEVICE not in caps
    a = torch.ones((4, 4), dtype=torch.float16, device="mps")
    assert (a @ a).sum().item() == 64.0
    assert Capability.FP16 in caps
    if Capability.BF16 in caps:
        b = torch.ones((4, 4), dtype=torch.bfloat16, device="mps")
        assert (b @ b).float().sum().item() == 64.0
    if platform.machine() == "arm64":
        assert Capability.UNIFIED_MEMORY in caps


def test_a_real_allocation_moves_the_allocator_figures() -> None:
    backend = MPSBackend()
    backend.synchronize()
    torch.mps.empty_cache()
    before = torch.mps.current_allocated_memory()
    tensor = torch.empty(8 * MIB, dtype=torch.uint8, device="mps")
    backend.synchronize()
    during = torch.mps.current_allocated_memory()
    assert during - before >= 8 * MIB
    assert torch.mps.driver_allocated_memory() >= during

    del tensor
    backend.synchronize()
    assert torch.mps.current_allocated_memory() <= during - 8 * MIB
    driver_cached = torch.mps.driver_allocated_memory()
    torch.mps.empty_cache()
    assert torch.mps.driver_allocated_memory() <= driver_cached


def test_peak_reset_capability_matches_torch_accelerator() -> None:
    caps = MPSBackend().capabilities()
    if Capability.PEAK_MEMORY_RESET not in caps:
        pytest.skip("this torch keeps no MPS peak statistics")
    torch.accelerator.reset_peak_memory_stats(0)
    tensor = torch.empty(4 * MIB, dtype=torch.uint8, device="mps")
    del tensor
    torch.mps.synchronize()
    assert torch.accelerator.max_memory_allocated(0) >= 4 * MIB
    torch.accelerator.reset_peak_memory_stats(0)
    assert torch.accelerator.max_memory_allocated(0) == torch.accelerator.memory_allocated(0)
