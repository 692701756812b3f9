from __future__ import annotations

import inspect
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from pytest_hwbench.hardware import _nvml
from pytest_hwbench.testing._cuda import (
    FakeCudaDevice,
    FakeNVML,
    GiB,
    MiB,
    NVMLError,
    fake_cuda,
    fake_nvml,
    no_nvml,
)


@pytest.fixture(autouse=True)
def _fresh_nvml() -> Iterator[None]:
    _nvml.reset_for_tests()
    yield
    _nvml.reset_for_tests()


# -- the fake is the real API ------------------------------------------------------------------


def test_fake_nvml_has_the_real_constants_and_error_classes() -> None:
    real = pytest.importorskip("pynvml")
    fake = FakeNVML()
    codes = [name for name in dir(real) if name.startswith("NVML_ERROR_")]
    assert codes
    for name in codes:
        assert getattr(fake, name) == getattr(real, name), name
        class_name = real.nvmlExceptionClass(getattr(real, name)).__name__
        assert getattr(fake, class_name).__name__ == class_name
    assert fake.nvmlMemory_v2 == real.nvmlMemory_v2
    assert fake.NVML_SUCCESS == real.NVML_SUCCESS


def test_fake_nvml_functions_have_the_real_signatures() -> None:
    real = pytest.importorskip("pynvml")
    fake = FakeNVML()
    functions = [
        name
        for name in dir(FakeNVML)
        if name.startswith("nvml") and callable(getattr(FakeNVML, name))
    ]
    assert "nvmlDeviceGetMemoryInfo" in functions
    for name in functions:
        real_params = list(inspect.signature(getattr(real, name)).parameters)
        fake_params = list(inspect.signature(getattr(fake, name)).parameters)
        assert fake_params == real_params, name


def test_fake_errors_behave_like_pynvml_errors() -> None:
    fake = FakeNVML()
    error = NVMLError(fake.NVML_ERROR_NOT_FOUND)
    assert isinstance(error, fake.NVMLError_NotFound)
    assert isinstance(error, fake.NVMLError)
    assert error.value == 6
    assert str(error) == "Not Found"
    assert fake.NVMLError_LibraryNotFound().value == fake.NVML_ERROR_LIBRARY_NOT_FOUND
    assert error == fake.NVMLError_NotFound()


def test_fake_nvml_requires_init_like_the_real_one() -> None:
    fake = FakeNVML()
    with pytest.raises(NVMLError) as info:
        fake.nvmlDeviceGetCount()
    assert info.value.value == fake.NVML_ERROR_UNINITIALIZED
    fake.nvmlInit()
    assert fake.nvmlDeviceGetCount() == 1
    with pytest.raises(fake.NVMLError_NotFound):
        fake.nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000")
    with pytest.raises(fake.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(1)


# -- init: once, failures remembered with a reason ----------------------------------------------


def test_missing_pynvml_degrades_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    no_nvml(monkeypatch)
    ok, reason = _nvml.nvml_status()
    assert not ok
    assert reason is not None
    assert "nvidia-ml-py is not installed" in reason
    assert _nvml.driver_version() is None
    assert _nvml.handle_for_torch_device(0) is None
    assert _nvml.device_memory_used(object()) is None
    assert _nvml.device_uuid(object()) is None


def test_real_pynvml_without_a_driver_says_the_library_is_missing() -> None:
    pytest.importorskip("pynvml")
    ok, reason = _nvml.nvml_status()
    if ok:
        pytest.skip("NVML works on this machine")
    assert reason is not None
    assert reason.startswith(("NVML library not found", "NVIDIA driver not found"))


@pytest.mark.parametrize(
    ("code_name", "expected"),
    [
        ("LIBRARY_NOT_FOUND", "NVML library not found"),
        ("DRIVER_NOT_LOADED", "NVIDIA driver not found"),
        ("NO_PERMISSION", "no permission to use NVML"),
        ("LIB_RM_VERSION_MISMATCH", "NVML and the NVIDIA kernel driver have different versions"),
        ("UNKNOWN", "NVML failed to initialize: NVMLError_Unknown: Unknown Error"),
    ],
)
def test_init_failure_gives_a_reason_and_is_remembered(
    monkeypatch: pytest.MonkeyPatch, code_name: str, expected: str
) -> None:
    fake = fake_nvml(monkeypatch, init_error=getattr(FakeNVML(), f"NVML_ERROR_{code_name}"))
    for _ in range(3):
        ok, reason = _nvml.nvml_status()
        assert not ok
        assert reason is not None
        assert reason.startswith(expected)
    assert _nvml.driver_version() is None
    assert _nvml.handle_for_torch_device(0) is None
    assert fake.init_calls == 1


def test_init_runs_once_across_calls_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_nvml(monkeypatch)
    real_init = fake.nvmlInitWithFlags

    def slow_init(flags: int) -> None:
        time.sleep(0.05)  # widen the window in which a second thread could also init
        real_init(flags)

    monkeypatch.setattr(fake, "nvmlInitWithFlags", slow_init)
    threads = [threading.Thread(target=_nvml.nvml_status) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _nvml.driver_version() == "550.54.15"
    assert _nvml.nvml_status() == (True, None)
    assert fake.init_calls == 1


def test_reset_for_tests_forgets_the_init(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_nvml(monkeypatch)
    _nvml.nvml_status()
    _nvml.reset_for_tests()
    _nvml.nvml_status()
    assert fake.init_calls == 2


def test_a_new_pynvml_module_is_initialized_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    first = fake_nvml(monkeypatch, init_error=FakeNVML().NVML_ERROR_DRIVER_NOT_LOADED)
    assert not _nvml.nvml_status()[0]
    second = FakeNVML()
    monkeypatch.setitem(sys.modules, "pynvml", second)
    assert _nvml.nvml_status() == (True, None)
    assert (first.init_calls, second.init_calls) == (1, 1)


def test_driver_version_from_old_bindings_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_nvml(monkeypatch)
    monkeypatch.setattr(fake, "nvmlSystemGetDriverVersion", lambda: b"470.82.01")
    assert _nvml.driver_version() == "470.82.01"


# -- memory -------------------------------------------------------------------------------------


def test_v2_memory_separates_the_driver_reservation(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch)
    gpu = cuda.devices[0]
    handle = _nvml.handle_for_torch_device(0)
    assert handle is not None
    before = _nvml.device_memory_info(handle)
    assert before is not None
    assert before.version == 2
    assert before.total_bytes == gpu.total_memory + gpu.driver_reserved_bytes
    assert before.reserved_bytes == gpu.driver_reserved_bytes
    assert before.total_bytes == before.free_bytes + before.used_bytes + before.reserved_bytes

    cuda.allocate(0, 100 * MiB)
    after = _nvml.device_memory_info(handle)
    assert after is not None
    # The first use creates the CUDA context; the allocation reserves a 100 MiB segment.
    assert after.used_bytes - before.used_bytes == gpu.context_bytes + 100 * MiB
    assert after.used_bytes == gpu.context_bytes + torch.cuda.memory_reserved(0)
    assert _nvml.device_memory_used(handle) == after.used_bytes
    free, total = torch.cuda.mem_get_info(0)
    assert (free, total) == (after.free_bytes, gpu.total_memory)


def test_v1_memory_counts_the_driver_reservation_as_used(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, nvml={"memory_v2": False})
    assert cuda.nvml is not None
    calls: list[Any] = []
    original = cuda.nvml.nvmlDeviceGetMemoryInfo

    def counting(handle: Any, version: int | None = None) -> Any:
        calls.append(version)
        return original(handle, version)

    monkeypatch.setattr(cuda.nvml, "nvmlDeviceGetMemoryInfo", counting)
    handle = _nvml.handle_for_torch_device(0)
    first = _nvml.device_memory_info(handle)
    second = _nvml.device_memory_info(handle)
    assert first is not None
    assert second is not None
    assert first.version == 1
    assert first.reserved_bytes is None
    assert first.used_bytes == cuda.devices[0].driver_reserved_bytes  # nothing else in use yet
    # v2 was refused once (old driver) and not asked again.
    assert calls == [FakeNVML.nvmlMemory_v2, None, None]


# -- torch index → NVML handle ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", []),
        ("-1", []),
        ("0,1", [0, 1]),
        (" 2 , 3", [2, 3]),
        ("1,-1,2", [1]),
        ("0,0", []),
        ("1gpu,2", [1, 2]),
        ("GPU-ab12,GPU-cd34", ["GPU-ab12", "GPU-cd34"]),
        ("GPU-ab12,1", ["GPU-ab12"]),
        ("MIG-ef56", ["MIG-ef56"]),
        ("MIG-GPU-ab12/1/0", ["MIG-GPU-ab12/1/0"]),
    ],
)
def test_cuda_visible_devices_is_parsed_like_cuda(
    value: str | None, expected: list[int] | list[str] | None
) -> None:
    assert _nvml.parse_cuda_visible_devices(value) == expected


def _uuid_of(handle: Any) -> str | None:
    return _nvml.device_uuid(handle)


@pytest.mark.parametrize("expose_uuid", [True, False], ids=["by-torch-uuid", "by-environment"])
def test_every_device_maps_to_its_own_gpu(
    monkeypatch: pytest.MonkeyPatch, expose_uuid: bool
) -> None:
    cuda = fake_cuda(monkeypatch, count=4, expose_uuid=expose_uuid)
    for index in range(4):
        assert _uuid_of(_nvml.handle_for_torch_device(index)) == cuda.gpus[index].nvml_uuid
    assert _nvml.handle_for_torch_device(4) is None


@pytest.mark.parametrize("expose_uuid", [True, False], ids=["by-torch-uuid", "by-environment"])
def test_integer_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch, expose_uuid: bool) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    cuda = fake_cuda(monkeypatch, count=4, expose_uuid=expose_uuid)
    assert torch.cuda.device_count() == 2
    assert _uuid_of(_nvml.handle_for_torch_device(0)) == cuda.gpus[3].nvml_uuid
    assert _uuid_of(_nvml.handle_for_torch_device(1)) == cuda.gpus[1].nvml_uuid
    assert _nvml.handle_for_torch_device(2) is None


@pytest.mark.parametrize("expose_uuid", [True, False], ids=["by-torch-uuid", "by-environment"])
@pytest.mark.parametrize("shorten", [False, True], ids=["full", "shortened"])
def test_uuid_cuda_visible_devices(
    monkeypatch: pytest.MonkeyPatch, expose_uuid: bool, shorten: bool
) -> None:
    gpus = [
        FakeCudaDevice(uuid=f"{n}{n}{n}{n}0000-0000-4000-8000-00000000000{n}") for n in range(4)
    ]
    chosen = [gpus[2].nvml_uuid, gpus[0].nvml_uuid]
    if shorten:  # CUDA accepts any unique leading part
        chosen = [uuid[:8] for uuid in chosen]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(chosen))
    fake_cuda(monkeypatch, devices=gpus, expose_uuid=expose_uuid)
    assert torch.cuda.device_count() == 2
    assert _uuid_of(_nvml.handle_for_torch_device(0)) == gpus[2].nvml_uuid
    assert _uuid_of(_nvml.handle_for_torch_device(1)) == gpus[0].nvml_uuid


def _a100_with_mig() -> FakeCudaDevice:
    return FakeCudaDevice.nvidia((8, 0)).with_mig(
        ("3g.40gb", 40 * GiB, 42), ("2g.20gb", 20 * GiB, 28), ("1g.10gb", 10 * GiB, 14)
    )


@pytest.mark.parametrize("expose_uuid", [True, False], ids=["by-torch-uuid", "by-environment"])
def test_mig_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch, expose_uuid: bool) -> None:
    gpu = _a100_with_mig()
    mig = gpu.mig_devices[1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mig.nvml_uuid)
    cuda = fake_cuda(monkeypatch, devices=[gpu], expose_uuid=expose_uuid)
    assert torch.cuda.get_device_properties(0).total_memory == 20 * GiB
    handle = _nvml.handle_for_torch_device(0)
    assert _uuid_of(handle) == mig.nvml_uuid
    cuda.allocate(0, 64 * MiB)
    info = _nvml.device_memory_info(handle)
    assert info is not None
    assert info.total_bytes == 20 * GiB
    assert info.used_bytes == mig.context_bytes + 64 * MiB


def test_legacy_mig_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = _a100_with_mig()
    mig = gpu.mig_devices[2]
    monkeypatch.setenv(
        "CUDA_VISIBLE_DEVICES",
        f"MIG-{gpu.nvml_uuid}/{mig.gpu_instance_id}/{mig.compute_instance_id}",
    )
    fake_cuda(monkeypatch, devices=[gpu], expose_uuid=False)
    assert torch.cuda.get_device_properties(0).name.endswith("MIG 1g.10gb")
    assert _uuid_of(_nvml.handle_for_torch_device(0)) == mig.nvml_uuid


def test_integer_mapping_refuses_to_guess_on_mixed_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA numbers the fastest GPU first, NVML by PCI bus: with different GPUs they can disagree.
    gpus = [FakeCudaDevice.nvidia((7, 0)), FakeCudaDevice.nvidia((9, 0))]
    fake_cuda(monkeypatch, devices=gpus, expose_uuid=False)
    assert _nvml.handle_for_torch_device(0) is None
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert _uuid_of(_nvml.handle_for_torch_device(1)) == gpus[1].nvml_uuid


def test_mapping_prefers_torch_uuid_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2)
    # Set after the runtime read it: only the UUID can still tell which GPU torch uses.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert _uuid_of(_nvml.handle_for_torch_device(0)) == cuda.gpus[0].nvml_uuid
