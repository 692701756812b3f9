"""NVIDIA GPUs through a CUDA build of torch, with NVML for the driver's view when it is there."""

from __future__ import annotations

from typing import Any

from pytest_hwbench.hardware import _nvml
from pytest_hwbench.hardware._torch_cuda import (
    TorchCudaBackend,
    TorchCudaQuery,
    current_device_or_none,
    device_extra,
    hiding_variable,
    mem_get_info_works,
    query_torch_cuda,
)
from pytest_hwbench.hardware.base import Capability, Detection, DeviceProperties
from pytest_hwbench.hardware.energy import EnergyCounter

__all__ = ["CUDABackend", "query_cuda"]

REASON_NO_CUDA_BUILD = "torch was built without CUDA"
REASON_ROCM_BUILD = "torch is a ROCm (HIP) build: use 'rocm'"
REASON_NO_DRIVER = "NVIDIA driver not found or no CUDA device visible"
REASON_HIDDEN = "CUDA_VISIBLE_DEVICES hides every device"


def query_cuda() -> TorchCudaQuery:
    """Ask torch about its CUDA runtime and devices: the one hardware query tests patch."""
    return query_torch_cuda()


class CUDABackend(TorchCudaBackend):
    """NVIDIA GPUs: present when torch is a CUDA (not HIP) build and sees at least one device."""

    name = "cuda"
    torch_device_type = "cuda"
    communication_backend = "nccl"
    fallbacks = ("rocm", "cpu")
    description = "NVIDIA GPUs through torch.cuda; driver details from NVML when installed"
    visibility_variables = ("CUDA_VISIBLE_DEVICES",)
    torch_runtime_attribute = "cuda"

    def detect(self) -> Detection:
        """Probe torch's CUDA build and devices; the reason says what is missing."""
        query = query_cuda()
        if query.import_error is not None:
            return Detection.absent(f"torch cannot be imported: {query.import_error}")
        if query.hip_version is not None:
            return Detection.absent(REASON_ROCM_BUILD)
        if query.cuda_version is None:
            return Detection.absent(REASON_NO_CUDA_BUILD)
        if not query.available or query.device_count <= 0:
            if hiding_variable(self.visibility_variables) is not None:
                return Detection.absent(REASON_HIDDEN)
            return Detection.absent(REASON_NO_DRIVER)
        return Detection(available=True, device_count=query.device_count)

    def count_devices_unopened(self) -> int | None:
        """The GPUs NVML sees (it ignores CUDA_VISIBLE_DEVICES), without initializing CUDA."""
        return _nvml.device_count()

    def pinnable_devices(self) -> tuple[str, ...] | None:
        """The GPUs NVML sees by index; where one is in MIG mode, every unit by UUID.

        CUDA shows a process a single MIG instance, so each instance is a device of its own for
        pinning: ``-n 3 --hw-gpus-per-worker=1`` gives three workers an instance each
        ("MIG-<uuid>"), a GPU without MIG its "GPU-<uuid>" (the list must be all UUIDs).
        """
        units = _nvml.gpu_units()
        if not units:
            return None
        if not any(instances for _, instances in units):
            return tuple(str(i) for i in range(len(units)))
        return tuple(
            entry
            for gpu, instances in units
            for entry in ([instance.uuid for instance in instances] or [gpu])
        )

    def inventory_extra(self) -> dict[str, Any]:
        """``mig_instances``: every MIG instance NVML sees, where a GPU is in MIG mode."""
        instances = _nvml.mig_instances()
        return {"mig_instances": [i.to_dict() for i in instances]} if instances else {}

    def _query_properties(self, index: int) -> DeviceProperties:
        import torch

        props = torch.cuda.get_device_properties(index)
        handle = _nvml.handle_for_torch_device(index)
        uuid = _nvml.device_uuid(handle) if handle is not None else None
        if uuid is None:
            uuid = _uuid_from_torch(props)
        nvml_ok, nvml_reason = _nvml.nvml_status()
        extra = device_extra(props)
        extra["nvml"] = "ok" if nvml_ok else f"unavailable: {nvml_reason}"
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=str(props.name),
            vendor="NVIDIA",
            total_memory_bytes=int(props.total_memory),
            uuid=uuid,
            compute_capability=f"{props.major}.{props.minor}",
            multiprocessor_count=int(props.multi_processor_count),
            driver_version=_nvml.driver_version(),
            runtime_version=torch.version.cuda,
            extra=extra,
        )

    def energy_counters(self, index: int = 0) -> list[EnergyCounter]:
        """The GPU's total-energy counter (NVML, mJ; Volta and later), opened now.

        The whole board: every process on the GPU counts. A MIG instance has none.
        """
        self.require_available(index)
        handle = _nvml.handle_for_torch_device(index)
        name = self.properties(index).name
        covers = f"{self.device_label(index)} ({name}): the whole board, every process on it"
        return [_nvml.open_energy_counter(handle, "gpu", covers)]

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        import torch

        props = torch.cuda.get_device_properties(index)
        cc = (int(props.major), int(props.minor))
        caps = self._allocator_capabilities(index, props)
        caps.add(Capability.FP64)  # every CUDA GPU computes in float64 (slowly on most)
        if cc >= (5, 3):
            caps.add(Capability.FP16)
        if cc >= (8, 0):
            caps.add(Capability.TF32)
        if _native_bf16(index, cc):
            caps.add(Capability.BF16)
        if cc >= (8, 9) and hasattr(torch, "float8_e4m3fn"):
            caps.add(Capability.FP8)
        if _nvml.handle_for_torch_device(index) is not None or mem_get_info_works(index):
            caps.add(Capability.DEVICE_MEMORY_INFO)
        return frozenset(caps)


def _uuid_from_torch(props: Any) -> str | None:
    """NVML's "GPU-<uuid>" form built from torch's bare UUID (None when torch has none)."""
    raw = getattr(props, "uuid", None)
    text = str(raw).strip() if raw is not None else ""
    if not text:
        return None
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _native_bf16(index: int, cc: tuple[int, int]) -> bool:
    """Whether device `index` computes in bfloat16 natively (Ampere, compute capability 8.0, on).

    `torch.cuda.is_bf16_supported()` only answers for the current device, so it is asked (and
    must agree) only when `index` is that device; for the others the capability decides.
    """
    import torch

    if cc < (8, 0):
        return False
    if current_device_or_none() != index:
        return True
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no `including_emulation`
        return bool(torch.cuda.is_bf16_supported())
