from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

from pytest_hwbench.hardware import _nvml
from pytest_hwbench.hardware import cuda as cuda_module
from pytest_hwbench.hardware._torch_cuda import TorchCudaQuery, peak_reset_works
from pytest_hwbench.hardware.base import Capability, HardwareUnavailableError
from pytest_hwbench.hardware.cuda import CUDABackend
from pytest_hwbench.testing._cuda import (
    FakeCuda,
    FakeCudaDevice,
    FakeNVML,
    GiB,
    MiB,
    cpu_only_torch,
    fake_cuda,
    fake_rocm,
)

CPU_ONLY_TORCH = torch.version.cuda is None and torch.version.hip is None
# Saved before any test patches it: the real function of this torch build.
REAL_RESET_PEAK = torch.cuda.reset_peak_memory_stats


@pytest.fixture(autouse=True)
def _fresh_nvml() -> Iterator[None]:
    _nvml.reset_for_tests()
    yield
    _nvml.reset_for_tests()


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.skipif(not CPU_ONLY_TORCH, reason="needs a CPU-only build of torch")
def test_cpu_only_torch_has_no_cuda() -> None:
    backend = CUDABackend()
    assert not backend.is_available()
    assert backend.unavailable_reason() == "torch was built without CUDA"
    assert backend.device_count() == 0
    with pytest.raises(HardwareUnavailableError, match="torch was built without CUDA"):
        backend.initialize(strict=True)


NOT_COMPILED = "AssertionError: Torch not compiled with CUDA enabled"
#: What a real CPU-only build of torch answers to each torch.cuda call our backends make.
CPU_ONLY_ANSWERS = {
    "is_available": "False",
    "device_count": "0",
    "is_initialized": "False",
    "is_bf16_supported": "False",
    "init": NOT_COMPILED,
    "current_device": NOT_COMPILED,
    "set_device": "AttributeError: module 'torch._C' has no attribute '_cuda_setDevice'",
    "get_device_properties": NOT_COMPILED,
    "get_device_capability": NOT_COMPILED,
    "get_device_name": NOT_COMPILED,
    "synchronize": NOT_COMPILED,
    "mem_get_info": NOT_COMPILED,
    "memory_stats": "OrderedDict()",
    "memory_allocated": "0",
    "memory_reserved": "0",
    "max_memory_allocated": "0",
    "max_memory_reserved": "0",
    "reset_peak_memory_stats": (
        "AttributeError: module 'torch._C' has no attribute '_cuda_resetPeakMemoryStats'"
    ),
    "reset_accumulated_memory_stats": (
        "AttributeError: module 'torch._C' has no attribute '_cuda_resetAccumulatedMemoryStats'"
    ),
    "empty_cache": "None",
    "Event": "RuntimeError: Tried to instantiate dummy base class Event",
}


def _torch_cuda_answers() -> dict[str, str]:
    """Each call of `CPU_ONLY_ANSWERS` made now: its result's repr, or its exception."""
    no_argument = {"is_available", "device_count", "is_initialized", "is_bf16_supported", "init"}
    no_argument |= {"current_device", "synchronize", "empty_cache", "Event"}
    answers = {}
    for name in CPU_ONLY_ANSWERS:
        function = getattr(torch.cuda, name)
        try:
            answers[name] = repr(function() if name in no_argument else function(0))
        except Exception as exc:
            answers[name] = f"{type(exc).__name__}: {exc}"
    return answers


@pytest.mark.skipif(not CPU_ONLY_TORCH, reason="needs a CPU-only build of torch")
def test_a_real_cpu_only_build_answers_as_recorded() -> None:
    assert _torch_cuda_answers() == CPU_ONLY_ANSWERS


def test_cpu_only_fake_answers_like_the_real_build_even_over_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_cuda(monkeypatch, count=2)  # a GPU build underneath, as on a CUDA machine
    assert CUDABackend().is_available()
    cpu_only_torch(monkeypatch)
    assert _torch_cuda_answers() == CPU_ONLY_ANSWERS
    assert CUDABackend().unavailable_reason() == "torch was built without CUDA"
    assert not peak_reset_works(0)


def test_a_rocm_build_points_to_the_rocm_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rocm(monkeypatch)
    assert CUDABackend().unavailable_reason() == "torch is a ROCm (HIP) build: use 'rocm'"


def test_a_cuda_build_without_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, available=False)
    assert CUDABackend().unavailable_reason() == (
        "NVIDIA driver not found or no CUDA device visible"
    )


@pytest.mark.parametrize("value", ["", "-1"])
def test_cuda_visible_devices_hiding_everything(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    fake_cuda(monkeypatch, count=2)
    assert torch.cuda.device_count() == 0
    assert CUDABackend().unavailable_reason() == "CUDA_VISIBLE_DEVICES hides every device"


def test_detection_uses_the_one_query_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        cuda_module,
        "query_cuda",
        lambda: TorchCudaQuery("12.4", None, available=True, device_count=3),
    )
    backend = CUDABackend()
    assert backend.device_count() == 3
    assert backend.initialize(2) == torch.device("cuda", 2)


def test_detection_does_not_initialize_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    # Initializing CUDA before pytest-xdist forks its workers would break them.
    cuda = fake_cuda(monkeypatch, count=2)
    backend = CUDABackend()
    assert backend.is_available()
    assert backend.initialize(1) == torch.device("cuda", 1)
    assert not cuda.is_initialized()


@pytest.mark.parametrize("count", [1, 4])
def test_present_with_n_devices(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    fake_cuda(monkeypatch, count=count)
    backend = CUDABackend()
    assert backend.name == "cuda"
    assert backend.torch_device_type == "cuda"
    assert backend.fallbacks == ("rocm", "cpu")
    assert backend.unavailable_reason() is None
    assert backend.device_count() == count
    assert backend.initialize(count - 1) == torch.device("cuda", count - 1)
    with pytest.raises(HardwareUnavailableError, match=f"{count} cuda device"):
        backend.initialize(count)
    assert (Capability.MULTI_DEVICE in backend.capabilities(0)) == (count > 1)


def test_importing_the_modules_imports_neither_torch_nor_pynvml() -> None:
    code = (
        "import sys, pytest_hwbench.hardware.cuda, pytest_hwbench.hardware.rocm, "
        "pytest_hwbench.hardware._nvml, pytest_hwbench.testing._cuda; "
        "print(sorted({'torch', 'pynvml'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- properties ---------------------------------------------------------------------------------


def test_properties_come_from_torch_and_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2, capability=(8, 0))
    props = CUDABackend().properties(1)
    torch_props = torch.cuda.get_device_properties(1)
    assert props.backend == "cuda"
    assert props.index == 1
    assert props.name == torch_props.name == "NVIDIA A100-SXM4-80GB"
    assert props.vendor == "NVIDIA"
    assert props.total_memory_bytes == torch_props.total_memory  # bytes, not MiB
    assert props.total_memory_bytes > 70 * GiB
    assert props.compute_capability == "8.0"
    assert props.multiprocessor_count == 108
    assert props.uuid == f"GPU-{torch_props.uuid}" == cuda.devices[1].nvml_uuid
    assert props.driver_version == "550.54.15"
    assert props.runtime_version == "12.4"
    assert props.extra["l2_cache_bytes"] == str(40 * MiB)
    assert props.extra["nvml"] == "ok"


def test_properties_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, nvml=False)
    backend = CUDABackend()
    props = backend.properties(0)
    assert props.driver_version is None
    assert props.uuid == cuda.devices[0].nvml_uuid  # still known, from torch
    assert props.extra["nvml"].startswith("unavailable: nvidia-ml-py is not installed")
    # The runtime still reports the device's free and total memory.
    assert Capability.DEVICE_MEMORY_INFO in backend.capabilities(0)


def test_nvml_that_fails_to_init_is_tried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(
        monkeypatch, count=4, nvml={"init_error": FakeNVML().NVML_ERROR_DRIVER_NOT_LOADED}
    )
    backend = CUDABackend()
    for index in range(4):
        props = backend.properties(index)
        assert props.driver_version is None
        assert props.extra["nvml"].startswith("unavailable: NVIDIA driver not found")
        backend.capabilities(index)
    assert cuda.nvml is not None
    assert cuda.nvml.init_calls == 1


def test_properties_are_cached_until_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch)
    backend = CUDABackend()
    first = backend.properties(0)
    cuda.devices[0].name = "renamed"
    assert backend.properties(0) is first
    backend.refresh()
    assert backend.properties(0).name == "NVIDIA H100 80GB HBM3"  # torch's props are fixed


# -- capabilities -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((7, 0), {"fp16"}),
        ((8, 0), {"fp16", "bf16", "tf32"}),
        ((8, 9), {"fp16", "bf16", "tf32", "fp8"}),
        ((9, 0), {"fp16", "bf16", "tf32", "fp8"}),
    ],
)
def test_precision_follows_compute_capability(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: set[str]
) -> None:
    fake_cuda(monkeypatch, capability=capability)
    caps = {c.value for c in CUDABackend().capabilities(0)}
    assert caps & {"fp16", "bf16", "tf32", "fp8"} == expected
    assert {"memory_stats", "peak_memory_reset", "device_memory_info", "synchronize"} <= caps
    assert "multi_device" not in caps


@pytest.mark.parametrize("current", [0, 1])
def test_bf16_is_answered_per_device(monkeypatch: pytest.MonkeyPatch, current: int) -> None:
    # torch.cuda.is_bf16_supported() speaks for the current device only.
    fake_cuda(monkeypatch, devices=[FakeCudaDevice.nvidia((7, 0)), FakeCudaDevice.nvidia((8, 0))])
    torch.cuda.set_device(current)
    backend = CUDABackend()
    assert not backend.has_capability("bf16", 0)
    assert backend.has_capability("bf16", 1)


def test_no_peak_reset_where_torch_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, peak_reset=False)
    caps = CUDABackend().capabilities(0)
    assert Capability.PEAK_MEMORY_RESET not in caps
    assert Capability.MEMORY_STATS in caps


@pytest.mark.skipif(not CPU_ONLY_TORCH, reason="needs a CPU-only build of torch")
def test_cpu_only_torch_cannot_reset_peaks() -> None:
    with pytest.raises(AttributeError, match="_cuda_resetPeakMemoryStats"):
        REAL_RESET_PEAK(0)
    assert not peak_reset_works(0)


@pytest.mark.skipif(not CPU_ONLY_TORCH, reason="needs a CPU-only build of torch")
def test_real_cpu_only_reset_inside_a_fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", REAL_RESET_PEAK)
    assert not CUDABackend().has_capability("peak_memory_reset")


def test_no_device_memory_info_without_nvml_or_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, nvml=False)

    def broken(device: object = None) -> tuple[int, int]:
        raise RuntimeError("CUDA error: operation not supported")

    monkeypatch.setattr(torch.cuda, "mem_get_info", broken)
    assert not CUDABackend().has_capability("device_memory_info")


def test_integrated_gpus_have_unified_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, devices=[FakeCudaDevice.nvidia((8, 7), is_integrated=True)])
    assert CUDABackend().has_capability("unified_memory")


def test_has_capability_is_false_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, available=False)
    assert not CUDABackend().has_capability("fp16")


# -- synchronize --------------------------------------------------------------------------------


def test_synchronize_calls_torch_for_that_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2)
    backend = CUDABackend()
    device = backend.initialize(1)
    backend.synchronize(device)
    backend.synchronize()
    assert cuda.synchronize_calls == [device, None]
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        backend.synchronize(2)


# -- the fake allocator behaves like torch's ----------------------------------------------------


def test_counters_are_empty_until_cuda_initializes(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2)
    assert torch.cuda.memory_stats(0) == {}
    assert torch.cuda.memory_allocated(99) == 0  # torch answers 0 before init, even for this
    with pytest.raises(RuntimeError, match="Invalid device argument 0: did you call init"):
        torch.cuda.reset_peak_memory_stats(0)
    torch.cuda.init()
    assert cuda.is_initialized()
    assert torch.cuda.memory_allocated(0) == 0
    with pytest.raises(RuntimeError, match="Invalid device argument 99: did you call init"):
        torch.cuda.memory_allocated(99)
    with pytest.raises(AssertionError, match="Invalid device id"):
        torch.cuda.get_device_properties(2)


def test_device_arguments_are_read_like_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2)
    cuda.allocate("cuda:1", 1 * MiB)
    assert torch.cuda.memory_allocated(1) == 1 * MiB
    assert torch.cuda.memory_allocated("cuda:1") == 1 * MiB
    assert torch.cuda.memory_allocated(torch.device("cuda", 1)) == 1 * MiB
    assert torch.cuda.memory_allocated() == 0  # None: the current device, 0
    torch.cuda.set_device(1)
    assert torch.cuda.memory_allocated(torch.device("cuda")) == 1 * MiB
    assert torch.cuda.memory_allocated() == 1 * MiB
    with torch.cuda.device(0):
        assert torch.cuda.current_device() == 0
    assert torch.cuda.current_device() == 1
    with pytest.raises(ValueError, match="Expected a cuda device, but got: cpu"):
        torch.cuda.memory_allocated(torch.device("cpu"))


def test_blocks_round_to_512_bytes_and_segments_to_torch_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = fake_cuda(monkeypatch)
    cuda.allocate(0, 1)
    assert torch.cuda.memory_allocated(0) == 512
    assert torch.cuda.memory_reserved(0) == 2 * MiB  # a small-pool segment
    assert torch.cuda.memory_stats(0)["requested_bytes.all.current"] == 1
    for _ in range(3):  # more small blocks share that segment...
        cuda.allocate(0, 512 * 1024)
    assert torch.cuda.memory_reserved(0) == 2 * MiB
    cuda.allocate(0, 512 * 1024)  # ...until it is full
    assert torch.cuda.memory_reserved(0) == 4 * MiB
    cuda.allocate(0, 3 * MiB)  # a large block under 10 MiB: a 20 MiB segment
    assert torch.cuda.memory_reserved(0) == 24 * MiB
    cuda.allocate(0, 11 * MiB)  # split off the 17 MiB still free in that segment
    assert torch.cuda.memory_reserved(0) == 24 * MiB
    cuda.allocate(0, 11 * MiB + 1)  # no room left: 10 MiB and over get a segment rounded to 2 MiB
    assert torch.cuda.memory_reserved(0) == 24 * MiB + 12 * MiB
    assert torch.cuda.memory_allocated(0) == 512 + 2 * MiB + 3 * MiB + 22 * MiB + 512
    stats = torch.cuda.memory_stats(0)
    assert stats["segment.all.current"] == 4
    assert stats["reserved_bytes.large_pool.current"] == 32 * MiB
    assert stats["reserved_bytes.small_pool.current"] == 4 * MiB


def test_freed_memory_stays_reserved_until_empty_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch)
    block = cuda.allocate(0, 100 * MiB)
    cuda.free(block)
    assert torch.cuda.memory_allocated(0) == 0
    assert torch.cuda.memory_reserved(0) == 100 * MiB
    cuda.allocate(0, 60 * MiB)  # reuses the cached segment
    assert torch.cuda.memory_reserved(0) == 100 * MiB
    torch.cuda.empty_cache()  # the segment is in use: it stays
    assert torch.cuda.memory_reserved(0) == 100 * MiB
    with pytest.raises(ValueError, match="already freed"):
        cuda.free(block)


def test_empty_cache_returns_only_free_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch)
    keep = cuda.allocate(0, 12 * MiB)
    cuda.free(cuda.allocate(0, 40 * MiB))
    assert torch.cuda.memory_reserved(0) == 52 * MiB
    torch.cuda.empty_cache()
    assert torch.cuda.memory_reserved(0) == 12 * MiB
    assert torch.cuda.memory_allocated(0) == keep.size


def test_peaks_persist_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch)
    base = cuda.allocate(0, 10 * MiB)
    spike = cuda.allocate(0, 50 * MiB)
    cuda.free(spike)
    assert torch.cuda.memory_allocated(0) == 10 * MiB
    assert torch.cuda.max_memory_allocated(0) == 60 * MiB
    assert torch.cuda.max_memory_reserved(0) == torch.cuda.memory_reserved(0) == 60 * MiB
    torch.cuda.empty_cache()
    assert torch.cuda.max_memory_reserved(0) == 60 * MiB
    torch.cuda.reset_peak_memory_stats(0)
    # A reset sets each peak to the current value, not to zero.
    assert torch.cuda.max_memory_allocated(0) == 10 * MiB
    assert torch.cuda.max_memory_reserved(0) == torch.cuda.memory_reserved(0) == 10 * MiB
    cuda.free(base)
    assert torch.cuda.max_memory_allocated(0) == 10 * MiB


def test_reset_affects_only_the_named_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2)
    for index in (0, 1):
        cuda.free(cuda.allocate(index, 30 * MiB))
    torch.cuda.reset_peak_memory_stats(1)
    assert torch.cuda.max_memory_allocated(0) == 30 * MiB
    assert torch.cuda.max_memory_allocated(1) == 0
    torch.cuda.reset_peak_memory_stats()  # None: the current device, 0
    assert torch.cuda.max_memory_allocated(0) == 0


def test_out_of_memory_frees_the_cache_then_raises_torchs_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = fake_cuda(monkeypatch, total_memory=1 * GiB)
    cuda.free(cuda.allocate(0, 300 * MiB))
    cuda.allocate(0, 400 * MiB)  # fits only once the cached 300 MiB went back
    stats = torch.cuda.memory_stats(0)
    assert stats["num_alloc_retries"] == 1
    assert torch.cuda.memory_reserved(0) == 400 * MiB
    with pytest.raises(
        torch.cuda.OutOfMemoryError, match=r"CUDA out of memory\. Tried to allocate"
    ):
        cuda.allocate(0, 200 * MiB)
    assert torch.cuda.memory_stats(0)["num_ooms"] == 1


def test_memory_stats_have_torchs_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch)
    cuda.allocate(0, 1 * MiB)
    stats = torch.cuda.memory_stats(0)
    for key in (
        "allocated_bytes.all.current",
        "allocated_bytes.all.peak",
        "allocated_bytes.small_pool.allocated",
        "reserved_bytes.large_pool.freed",
        "active_bytes.all.current",
        "requested_bytes.all.current",
        "allocation.all.current",
        "segment.all.peak",
        "num_alloc_retries",
        "num_ooms",
    ):
        assert key in stats, key
    assert list(stats) == sorted(stats)
    assert all(isinstance(value, int) for value in stats.values())


def test_mem_get_info_is_free_and_total_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch)
    gpu = cuda.devices[0]
    free, total = torch.cuda.mem_get_info(0)
    assert total == gpu.total_memory
    assert free == total - gpu.context_bytes  # asking created the context
    cuda.allocate(0, 64 * MiB)
    assert torch.cuda.mem_get_info(0)[0] == free - 64 * MiB


def test_fake_cuda_without_install_changes_nothing() -> None:
    before = (torch.version.cuda, torch.cuda.is_available)
    FakeCuda(count=2)
    assert (torch.version.cuda, torch.cuda.is_available) == before
