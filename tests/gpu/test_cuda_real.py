"""The facts the CUDA unit tests check against `FakeCuda`, checked against a real NVIDIA GPU.

Where these and the fakes disagree, the fake is wrong: fix it, then the unit tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

from pytest_hwbench import hardware
from pytest_hwbench.hardware import _nvml
from pytest_hwbench.hardware.base import Capability
from pytest_hwbench.hardware.cuda import CUDABackend

MiB = 1024 * 1024

# Our own marker skips these where there is no NVIDIA GPU, with the backend's reason.
pytestmark = pytest.mark.hardware("cuda")

# Allocator settings change block and segment sizes; the rounding checks assume the defaults.
DEFAULT_ALLOCATOR = "PYTORCH_CUDA_ALLOC_CONF" not in os.environ


@pytest.fixture(autouse=True)
def _fresh_nvml() -> Iterator[None]:
    _nvml.reset_for_tests()
    yield
    _nvml.reset_for_tests()


def _in_fresh_process(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import torch\n" + code],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_detection_matches_torch() -> None:
    backend = CUDABackend()
    assert backend.is_available()
    assert backend.device_count() == torch.cuda.device_count()
    assert backend.initialize(0) == torch.device("cuda", 0)


def test_properties_match_torch() -> None:
    for index in range(torch.cuda.device_count()):
        props = CUDABackend().properties(index)
        real = torch.cuda.get_device_properties(index)
        assert props.name == real.name
        assert props.total_memory_bytes == real.total_memory
        assert props.compute_capability == f"{real.major}.{real.minor}"
        assert props.multiprocessor_count == real.multi_processor_count
        assert props.runtime_version == torch.version.cuda
        assert props.uuid is not None
        assert props.uuid.split("-", 1)[1] == str(real.uuid)
        assert props.extra["l2_cache_bytes"] == str(real.L2_cache_size)


def test_capabilities_match_the_device() -> None:
    caps = CUDABackend().capabilities(0)
    cc = torch.cuda.get_device_capability(0)
    assert Capability.FP16 in caps
    assert (Capability.BF16 in caps) == (cc >= (8, 0))
    assert (Capability.TF32 in caps) == (cc >= (8, 0))
    assert (Capability.FP8 in caps) == (cc >= (8, 9))
    assert {
        Capability.MEMORY_STATS,
        Capability.PEAK_MEMORY_RESET,
        Capability.DEVICE_MEMORY_INFO,
        Capability.SYNCHRONIZE,
    } <= caps


def test_nvml_maps_each_device_to_its_own_gpu() -> None:
    ok, reason = _nvml.nvml_status()
    if not ok:
        pytest.skip(f"NVML unusable here: {reason}")
    assert _nvml.driver_version()
    for index in range(torch.cuda.device_count()):
        handle = _nvml.handle_for_torch_device(index)
        uuid = _nvml.device_uuid(handle)
        assert uuid is not None
        assert uuid.split("-", 1)[1] == str(torch.cuda.get_device_properties(index).uuid)
        info = _nvml.device_memory_info(handle)
        assert info is not None
        # The whole device holds at least our allocator's segments plus our context.
        assert info.used_bytes >= torch.cuda.memory_reserved(index)


def test_mem_get_info_total_is_the_torch_total() -> None:
    free, total = torch.cuda.mem_get_info(0)
    assert total == torch.cuda.get_device_properties(0).total_memory
    assert 0 < free <= total


def test_counters_are_empty_and_peaks_unresettable_before_init() -> None:
    out = _in_fresh_process(
        "print(torch.cuda.memory_stats(0) == {})\n"
        "try:\n"
        "    torch.cuda.reset_peak_memory_stats(0)\n"
        "    print('reset ok')\n"
        "except RuntimeError as exc:\n"
        "    print(str(exc).startswith('Invalid device argument'))\n"
    )
    # The fake says "Invalid device argument 0: did you call init?"; torch 2.11 prints the int8
    # index as a raw byte, and index 0's NUL byte ends the message right there.
    assert out.splitlines() == ["True", "True"]


def test_invalid_indices_raise_like_the_fake() -> None:
    torch.cuda.init()
    count = torch.cuda.device_count()
    with pytest.raises(AssertionError, match="Invalid device id"):
        torch.cuda.get_device_properties(count)
    # Some torch builds (2.11) print the int8 device index as a raw byte: "\x01", not "1".
    shown = f"({count}|{re.escape(chr(count))})"
    with pytest.raises(RuntimeError, match=f"Invalid device argument {shown}: did you call init"):
        torch.cuda.memory_allocated(count)


def test_an_allocation_moves_allocated_and_its_peak() -> None:
    device = torch.device("cuda", 0)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    block = torch.empty(64 * MiB, dtype=torch.uint8, device=device)
    torch.cuda.synchronize(device)
    assert torch.cuda.memory_allocated(device) - before == 64 * MiB
    assert torch.cuda.max_memory_allocated(device) >= before + 64 * MiB
    del block
    assert torch.cuda.memory_allocated(device) == before
    assert torch.cuda.max_memory_allocated(device) >= before + 64 * MiB  # peak persists
    torch.cuda.reset_peak_memory_stats(device)
    assert torch.cuda.max_memory_allocated(device) == before  # reset: peak = current


@pytest.mark.skipif(not DEFAULT_ALLOCATOR, reason="PYTORCH_CUDA_ALLOC_CONF changes the sizes")
def test_blocks_and_segments_round_like_the_fake() -> None:
    device = torch.device("cuda", 0)
    torch.cuda.empty_cache()
    allocated = torch.cuda.memory_allocated(device)
    reserved = torch.cuda.memory_reserved(device)
    tiny = torch.empty(1, dtype=torch.uint8, device=device)
    assert torch.cuda.memory_allocated(device) - allocated == 512
    # Big enough that no cached segment has room: a new one, rounded up to 2 MiB.
    big = torch.empty(100 * MiB + 1, dtype=torch.uint8, device=device)
    assert torch.cuda.memory_allocated(device) - allocated == 512 + 100 * MiB + 512
    grown = torch.cuda.memory_reserved(device) - reserved
    assert grown in (102 * MiB, 102 * MiB + 2 * MiB)  # plus a small segment, unless one had room
    del big
    assert torch.cuda.memory_reserved(device) - reserved == grown  # cached until empty_cache
    torch.cuda.empty_cache()
    assert torch.cuda.memory_reserved(device) - reserved == grown - 102 * MiB
    del tiny


@pytest.mark.hardware("cuda", min_count=2)
def test_reset_affects_only_the_named_device() -> None:
    blocks = [torch.empty(32 * MiB, dtype=torch.uint8, device=f"cuda:{i}") for i in (0, 1)]
    del blocks
    peak_0 = torch.cuda.max_memory_allocated(0)
    torch.cuda.reset_peak_memory_stats(1)
    assert torch.cuda.max_memory_allocated(0) == peak_0
    assert torch.cuda.max_memory_allocated(1) == torch.cuda.memory_allocated(1)


def test_synchronize_runs() -> None:
    backend = CUDABackend()
    device = backend.initialize(0)
    torch.ones(1024, device=device).sum()
    backend.synchronize(device)
    backend.synchronize()


def test_the_generic_accelerator_backend_yields_to_cuda() -> None:
    """Twin of test_accelerator.py's dedicated-backend test: torch's accelerator here is cuda."""
    from pytest_hwbench.hardware.accelerator import AcceleratorBackend, accelerator_device_type

    registry = hardware.default_registry()
    assert accelerator_device_type() == "cuda"
    assert registry.discover_accelerator() is registry.get("cuda")
    assert "cuda" not in [b.name for b in registry if isinstance(b, AcceleratorBackend)]
    generic = AcceleratorBackend("cuda")
    assert not generic.is_available()
    assert "dedicated backend ('cuda', 'rocm')" in (generic.unavailable_reason() or "")


def test_torch_accelerator_memory_calls_match_the_cuda_allocator() -> None:
    """The generic metric's calls, on a device whose allocator the CUDA metric also reads."""
    from pytest_hwbench.metrics.memory.accelerator import AcceleratorMemoryMetric

    metric = AcceleratorMemoryMetric("cuda:0")  # no backend: every torch.accelerator call used
    with metric:
        block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda:0")
        del block
    series = metric.get_metrics()["series"]
    assert series["allocated"]["exact_peak"] is True
    assert series["allocated"]["peak_delta_bytes"] == 256 * 2**20
    free, total = torch.cuda.mem_get_info(0)
    assert abs(series["device_used"]["end_bytes"] - (total - free)) < 64 * 2**20
