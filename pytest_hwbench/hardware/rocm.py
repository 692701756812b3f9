"""AMD GPUs through a ROCm (HIP) build of torch, which answers the same `torch.cuda` calls."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from pytest_hwbench.hardware.energy import EnergyCounter

__all__ = ["ROCmBackend", "query_rocm"]

REASON_NO_HIP_BUILD = "torch was built without ROCm (HIP)"
REASON_CUDA_BUILD = "torch is a CUDA build, not ROCm (HIP): use 'cuda'"
REASON_NO_DRIVER = "AMD GPU driver (ROCm) not found or no ROCm device visible"

# MI300 (gfx942) and MI350 (gfx950) families compute in fp8.
_FP8_ARCH_PREFIXES = ("gfx94", "gfx95")
_AMDGPU_VERSION_FILE = Path("/sys/module/amdgpu/version")


def query_rocm() -> TorchCudaQuery:
    """Ask torch about its HIP runtime and devices: the one hardware query tests patch."""
    return query_torch_cuda()


class ROCmBackend(TorchCudaBackend):
    """AMD GPUs: present when torch is a HIP build and sees at least one device."""

    name = "rocm"
    torch_device_type = "cuda"  # torch calls HIP devices "cuda"
    communication_backend = "nccl"  # RCCL, under NCCL's name
    fallbacks = ("cuda", "cpu")
    description = "AMD GPUs through a ROCm (HIP) build of torch.cuda"
    # HIP reads all three. ROCR_VISIBLE_DEVICES applies first, at the runtime's lowest layer, and
    # HIP_VISIBLE_DEVICES indexes into what it left: a plan splits the innermost one set.
    visibility_variables = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
    torch_runtime_attribute = "hip"

    def detect(self) -> Detection:
        """Probe torch's HIP build and devices; the reason says what is missing."""
        query = query_rocm()
        if query.import_error is not None:
            return Detection.absent(f"torch cannot be imported: {query.import_error}")
        if query.hip_version is None:
            if query.cuda_version is not None:
                return Detection.absent(REASON_CUDA_BUILD)
            return Detection.absent(REASON_NO_HIP_BUILD)
        if not query.available or query.device_count <= 0:
            hider = hiding_variable(self.visibility_variables)
            if hider is not None:
                return Detection.absent(f"{hider} hides every device")
            return Detection.absent(REASON_NO_DRIVER)
        return Detection(available=True, device_count=query.device_count)

    def _query_properties(self, index: int) -> DeviceProperties:
        import torch

        props = torch.cuda.get_device_properties(index)
        full_arch = str(getattr(props, "gcnArchName", "") or "")
        extra = device_extra(props)
        if full_arch:
            extra["gcnArchName"] = full_arch
        raw_uuid = getattr(props, "uuid", None)
        uuid = str(raw_uuid).strip() if raw_uuid is not None else ""
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=str(props.name),
            vendor="AMD",
            total_memory_bytes=int(props.total_memory),
            uuid=uuid or None,
            compute_capability=gfx_arch(props),
            multiprocessor_count=int(props.multi_processor_count),
            driver_version=amdgpu_driver_version(),
            runtime_version=torch.version.hip,
            extra=extra,
        )

    def energy_counters(self, index: int = 0) -> list[EnergyCounter]:
        """The GPU's energy accumulator (AMD SMI, the optional ``rocm`` extra), opened now.

        The whole board: every process on the GPU counts.
        """
        from pytest_hwbench.hardware import _amdsmi

        self.require_available(index)
        name = self.properties(index).name
        covers = f"{self.device_label(index)} ({name}): the whole board, every process on it"
        return [_amdsmi.open_energy_counter(index, "gpu", covers)]

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        import torch

        props = torch.cuda.get_device_properties(index)
        arch = gfx_arch(props) or ""
        # torch supports only GPUs (gfx9 on) that compute in fp16.
        caps = self._allocator_capabilities(index, props) | {Capability.FP16, Capability.FP64}
        if bool(torch.cuda.is_bf16_supported()):
            caps.add(Capability.BF16)
        if arch.startswith(_FP8_ARCH_PREFIXES) and hasattr(torch, "float8_e4m3fn"):
            caps.add(Capability.FP8)
        if _torch_says_tf32(index, arch):
            caps.add(Capability.TF32)
        if mem_get_info_works(index):
            caps.add(Capability.DEVICE_MEMORY_INFO)
        return frozenset(caps)


def gfx_arch(props: Any) -> str | None:
    """The bare LLVM target ("gfx90a") from torch's gcnArchName ("gfx90a:sramecc+:xnack-")."""
    full = str(getattr(props, "gcnArchName", "") or "")
    arch = full.split(":", 1)[0].strip()
    return arch or None


def amdgpu_driver_version() -> str | None:
    """The out-of-tree amdgpu kernel driver's version (None for the kernel's in-tree driver)."""
    try:
        return _AMDGPU_VERSION_FILE.read_text().strip() or None
    except OSError:
        return None


def _torch_says_tf32(index: int, arch: str) -> bool:
    """Whether torch reports TF32 for device `index` (never assumed on ROCm).

    `torch.cuda.is_tf32_supported()` answers for the current device only, so another device
    gets the same answer only when it has the current device's architecture.
    """
    import torch

    is_tf32_supported = getattr(torch.cuda, "is_tf32_supported", None)
    current = current_device_or_none()
    if is_tf32_supported is None or current is None:
        return False
    if current != index:
        current_arch = gfx_arch(torch.cuda.get_device_properties(current))
        if current_arch != arch:
            return False
    try:
        return bool(is_tf32_supported())
    except Exception:
        return False
