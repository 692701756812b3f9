from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from pytest_hwbench import hardware
from pytest_hwbench.hardware import _nvml
from pytest_hwbench.hardware import rocm as rocm_module
from pytest_hwbench.hardware._torch_cuda import TorchCudaQuery
from pytest_hwbench.hardware.base import Capability, HardwareFallbackWarning
from pytest_hwbench.hardware.cuda import CUDABackend
from pytest_hwbench.hardware.rocm import ROCmBackend
from pytest_hwbench.testing._cuda import FakeCudaDevice, GiB, MiB, fake_cuda, fake_rocm

CPU_ONLY_TORCH = torch.version.cuda is None and torch.version.hip is None


@pytest.fixture(autouse=True)
def _fresh_nvml() -> Iterator[None]:
    _nvml.reset_for_tests()
    yield
    _nvml.reset_for_tests()


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.skipif(not CPU_ONLY_TORCH, reason="needs a CPU-only build of torch")
def test_cpu_only_torch_has_no_rocm() -> None:
    backend = ROCmBackend()
    assert not backend.is_available()
    assert backend.unavailable_reason() == "torch was built without ROCm (HIP)"


def test_a_cuda_build_points_to_the_cuda_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch)
    assert ROCmBackend().unavailable_reason() == (
        "torch is a CUDA build, not ROCm (HIP): use 'cuda'"
    )


def test_a_hip_build_without_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rocm(monkeypatch, available=False)
    assert ROCmBackend().unavailable_reason() == (
        "AMD GPU driver (ROCm) not found or no ROCm device visible"
    )


@pytest.mark.parametrize("variable", ["HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"])
def test_visibility_variables_hiding_everything(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "-1")
    fake_rocm(monkeypatch, count=2)
    assert torch.cuda.device_count() == 0
    assert ROCmBackend().unavailable_reason() == f"{variable} hides every device"


def test_detection_uses_the_one_query_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        rocm_module,
        "query_rocm",
        lambda: TorchCudaQuery(None, "6.2.41133", available=True, device_count=8),
    )
    assert ROCmBackend().device_count() == 8


@pytest.mark.parametrize("count", [1, 4])
def test_present_with_n_devices(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    fake_rocm(monkeypatch, count=count)
    backend = ROCmBackend()
    assert backend.name == "rocm"
    assert backend.torch_device_type == "cuda"  # torch calls HIP devices "cuda"
    assert backend.fallbacks == ("cuda", "cpu")
    assert backend.device_count() == count
    assert backend.initialize(count - 1) == torch.device("cuda", count - 1)
    assert (Capability.MULTI_DEVICE in backend.capabilities(0)) == (count > 1)
    assert not CUDABackend().is_available()


# -- properties ---------------------------------------------------------------------------------


def test_properties_name_the_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rocm(monkeypatch, count=2)
    props = ROCmBackend().properties(1)
    torch_props = torch.cuda.get_device_properties(1)
    assert props.backend == "rocm"
    assert props.vendor == "AMD"
    assert props.name == "AMD Instinct MI250X/MI250"
    assert props.total_memory_bytes == torch_props.total_memory == 64 * GiB
    assert props.compute_capability == "gfx90a"
    assert props.extra["gcnArchName"] == "gfx90a:sramecc+:xnack-"
    assert props.extra["l2_cache_bytes"] == str(8 * MiB)
    assert props.multiprocessor_count == 110
    assert props.runtime_version == torch.version.hip == "6.2.41133-dd7f95766"
    assert props.uuid == str(torch_props.uuid)


def test_amdgpu_driver_version_is_read_from_sysfs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    version_file = tmp_path / "version"
    version_file.write_text("6.8.5\n")
    monkeypatch.setattr(rocm_module, "_AMDGPU_VERSION_FILE", version_file)
    fake_rocm(monkeypatch)
    assert ROCmBackend().properties(0).driver_version == "6.8.5"
    monkeypatch.setattr(rocm_module, "_AMDGPU_VERSION_FILE", version_file.with_name("absent"))
    assert rocm_module.amdgpu_driver_version() is None


# -- capabilities -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("gfx90a", {"fp16", "bf16"}),
        ("gfx942", {"fp16", "bf16", "fp8", "tf32"}),
        ("gfx950", {"fp16", "bf16", "fp8", "tf32"}),
        ("gfx1100", {"fp16", "bf16"}),
    ],
)
def test_precision_follows_the_architecture(
    monkeypatch: pytest.MonkeyPatch, arch: str, expected: set[str]
) -> None:
    fake_rocm(monkeypatch, arch=arch)
    caps = {c.value for c in ROCmBackend().capabilities(0)}
    assert caps & {"fp16", "bf16", "tf32", "fp8"} == expected
    assert {"memory_stats", "peak_memory_reset", "device_memory_info", "synchronize"} <= caps


def test_no_tf32_unless_torch_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rocm(monkeypatch, arch="gfx942")
    monkeypatch.delattr(torch.cuda, "is_tf32_supported")  # as in torch builds before the call
    assert not ROCmBackend().has_capability("tf32")


def test_tf32_is_not_guessed_for_another_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch answers for the current device only; a device of another kind gets no answer.
    fake_rocm(monkeypatch, devices=[FakeCudaDevice.amd("gfx90a"), FakeCudaDevice.amd("gfx942")])
    backend = ROCmBackend()
    assert not backend.has_capability("tf32", 0)
    assert not backend.has_capability("tf32", 1)
    torch.cuda.set_device(1)
    backend.refresh()
    assert backend.has_capability("tf32", 1)


def test_peak_reset_and_allocator_work_through_torch_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    rocm = fake_rocm(monkeypatch)
    backend = ROCmBackend()
    assert backend.has_capability("peak_memory_reset")
    rocm.free(rocm.allocate(0, 8 * MiB))
    assert torch.cuda.max_memory_allocated(0) == 8 * MiB
    torch.cuda.reset_peak_memory_stats(0)
    assert torch.cuda.max_memory_allocated(0) == 0
    backend.synchronize(backend.initialize(0))
    assert rocm.synchronize_calls == [torch.device("cuda", 0)]
    with pytest.raises(torch.cuda.OutOfMemoryError, match="HIP out of memory"):
        rocm.allocate(0, 65 * GiB)


# -- with the registry --------------------------------------------------------------------------


def test_cuda_devices_resolve_to_rocm_on_a_hip_build(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rocm(monkeypatch, count=2)
    # A torch.device says only "cuda": the backend that is here answers for it.
    assert hardware.parse_device_spec(torch.device("cuda", 1)) == ("rocm", 1)
    assert hardware.default_registry().backend_for_device(torch.device("cuda", 1)).name == "rocm"
    assert "rocm" in hardware.get_available_hardware()
    assert "cuda" not in hardware.get_available_hardware()


def test_asking_for_cuda_on_amd_falls_back_to_rocm(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rocm(monkeypatch)
    with pytest.warns(HardwareFallbackWarning, match="use 'rocm'"):
        device = hardware.get_hardware_backend("cuda").initialize()
    assert device == torch.device("cuda", 0)
