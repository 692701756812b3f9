"""Intel GPUs through torch's native XPU backend (SYCL / Level Zero): N devices, own memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware._probe import works
from pytest_hwbench.hardware.base import (
    Capability,
    Detection,
    DeviceProperties,
    HardwareBackend,
)
from pytest_hwbench.hardware.peak_counters import before_peak_reset

if TYPE_CHECKING:
    import torch

__all__ = ["XPUBackend", "XPUStatus", "query_xpu"]


@dataclass(frozen=True)
class XPUStatus:
    """What torch says about XPU here: built with it or not, and how many devices it sees."""

    built: bool
    device_count: int
    torch_version: str = ""


def _xpu_built(torch: Any) -> bool:
    xpu = getattr(torch, "xpu", None)
    if xpu is None:
        return False
    is_compiled = getattr(xpu, "_is_compiled", None)
    if callable(is_compiled):
        return bool(is_compiled())
    return getattr(torch.version, "xpu", None) is not None


def query_xpu() -> XPUStatus:
    """Ask torch whether it has XPU support and how many Intel GPUs it sees (tests patch this)."""
    import torch

    if not _xpu_built(torch):
        return XPUStatus(built=False, device_count=0, torch_version=torch.__version__)
    # is_available() never raises, while device_count() may try to initialize a missing driver.
    count = int(torch.xpu.device_count()) if torch.xpu.is_available() else 0
    return XPUStatus(built=True, device_count=count, torch_version=torch.__version__)


def _uuid_text(uuid: Any) -> str | None:
    """The device UUID as text; torch wraps its 16 bytes in an object whose str() formats them."""
    if uuid is None:
        return None
    raw = getattr(uuid, "bytes", uuid)
    if isinstance(raw, (bytes, bytearray, list, tuple)) and not any(raw):
        return None  # drivers without the UUID extension report all zeros
    return str(uuid)


# Properties worth keeping in the inventory beyond the named DeviceProperties fields.
_EXTRA_FIELDS = (
    "platform_name",
    "type",
    "version",
    "gpu_eu_count",
    "gpu_subslice_count",
    "max_work_group_size",
    "max_num_sub_groups",
    "sub_group_sizes",
    "local_mem_size",
    "last_level_cache_size",
    "memory_clock_rate",
    "memory_bus_width",
    "architecture",
    "is_integrated_gpu",
    "has_fp64",
)


class XPUBackend(HardwareBackend):
    """Intel GPUs (Data Center Max, Arc, integrated Xe) as torch's "xpu" devices."""

    name = "xpu"
    torch_device_type = "xpu"
    communication_backend = "xccl"  # oneCCL, torch >= 2.8
    fallbacks = ("cpu",)
    description = "Intel GPU via torch.xpu (memory: XPU caching allocator; exact peaks)"
    # Level Zero's device mask: "0,1" or sub-devices "0.0,0.1".
    visibility_variables = ("ZE_AFFINITY_MASK",)
    torch_runtime_attribute = "xpu"

    def detect(self) -> Detection:
        """Present when torch was built with XPU and sees at least one Intel GPU."""
        status = query_xpu()
        if not status.built:
            version = f" (torch {status.torch_version})" if status.torch_version else ""
            return Detection.absent(f"torch was built without XPU support{version}")
        if status.device_count <= 0:
            return Detection.absent(
                "no Intel GPU / Level Zero driver found (torch.xpu.is_available() is False)"
            )
        return Detection(available=True, device_count=status.device_count)

    def synchronize(self, device: torch.device | int | None = None) -> None:
        """Wait for all queued work on `device` (default: the current XPU device)."""
        import torch

        torch.xpu.synchronize(device)

    def _query_properties(self, index: int) -> DeviceProperties:
        import torch

        props = torch.xpu.get_device_properties(index)
        extra: dict[str, str] = {}
        for field in _EXTRA_FIELDS:
            value = getattr(props, field, None)
            if value is not None:
                extra[field] = str(list(value)) if isinstance(value, (list, tuple)) else str(value)
        device_id = getattr(props, "device_id", None)
        if isinstance(device_id, int):
            extra["device_id"] = f"0x{device_id:04X}"
        compute_units = getattr(props, "max_compute_units", None) or getattr(
            props, "gpu_eu_count", None
        )
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=str(props.name),
            vendor=str(getattr(props, "vendor", "") or "Intel"),
            total_memory_bytes=int(props.total_memory),
            uuid=_uuid_text(getattr(props, "uuid", None)),
            multiprocessor_count=int(compute_units) if compute_units else None,
            driver_version=str(getattr(props, "driver_version", "") or "") or None,
            runtime_version=getattr(torch.version, "xpu", None),
            extra=extra,
        )

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        import torch

        xpu = torch.xpu
        # Also initializes XPU, which the allocator's reset below needs.
        props = xpu.get_device_properties(index)
        caps: set[Capability] = set()
        if getattr(props, "has_fp16", False):
            caps.add(Capability.FP16)
        if getattr(props, "has_fp64", False):  # Arc and other client GPUs lack it
            caps.add(Capability.FP64)
        native_bf16 = getattr(props, "has_bfloat16_conversions", None)
        if native_bf16 is None:  # older torch: only the device-wide answer exists
            native_bf16 = xpu.is_bf16_supported()
        if native_bf16:
            caps.add(Capability.BF16)
        # torch enables TF32 on XPU where the device has DPAS (see torch.xpu.is_tf32_supported);
        # ask this device, not the current one.
        if hasattr(xpu, "is_tf32_supported") and getattr(
            props, "has_subgroup_matrix_multiply_accumulate", False
        ):
            caps.add(Capability.TF32)
        # FP8: torch's _XpuDeviceProperties (2.13) has no field saying so, so it is never claimed.
        if getattr(props, "is_integrated_gpu", False):
            caps.add(Capability.UNIFIED_MEMORY)
        if hasattr(xpu, "memory_allocated") and hasattr(xpu, "memory_reserved"):
            caps.add(Capability.MEMORY_STATS)
        if hasattr(xpu, "max_memory_allocated") and _peak_reset_works(xpu, index):
            caps.add(Capability.PEAK_MEMORY_RESET)
        if works(xpu, "mem_get_info", index):
            caps.add(Capability.DEVICE_MEMORY_INFO)
        if hasattr(xpu, "synchronize"):
            caps.add(Capability.SYNCHRONIZE)
        return frozenset(caps)


def _peak_reset_works(xpu: Any, index: int) -> bool:
    """Whether device `index`'s peaks can be reset (running metrics keep theirs first)."""
    if not hasattr(xpu, "reset_peak_memory_stats"):
        return False
    before_peak_reset("xpu", index)
    return works(xpu, "reset_peak_memory_stats", index)
