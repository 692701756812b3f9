"""What the CUDA and ROCm backends share: both drive torch's `torch.cuda` module.

A ROCm build of torch answers the same `torch.cuda.*` calls through HIP, so detection, the memory
probes and synchronization live here; each platform module adds what differs (reasons, vendor,
properties, precision capabilities).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware._nvml import parse_cuda_visible_devices
from pytest_hwbench.hardware.base import Capability, HardwareBackend
from pytest_hwbench.hardware.peak_counters import before_peak_reset

if TYPE_CHECKING:
    import torch

__all__ = [
    "CudaEventClock",
    "TorchCudaBackend",
    "TorchCudaQuery",
    "hiding_variable",
    "query_torch_cuda",
]


@dataclass(frozen=True)
class TorchCudaQuery:
    """What torch says about its GPU runtime: build versions, whether usable, how many devices."""

    cuda_version: str | None
    hip_version: str | None
    available: bool
    device_count: int
    #: Why torch could not be imported, or None.
    import_error: str | None = None


def query_torch_cuda() -> TorchCudaQuery:
    """Ask torch which GPU runtime it was built for and how many devices it can use."""
    try:
        import torch
    except ImportError as exc:
        return TorchCudaQuery(None, None, available=False, device_count=0, import_error=str(exc))
    cuda_version = getattr(torch.version, "cuda", None)
    hip_version = getattr(torch.version, "hip", None)
    if cuda_version is None and hip_version is None:
        return TorchCudaQuery(None, None, available=False, device_count=0)
    available = bool(torch.cuda.is_available())
    count = int(torch.cuda.device_count()) if available else 0
    return TorchCudaQuery(cuda_version, hip_version, available=available, device_count=count)


def hiding_variable(names: tuple[str, ...]) -> str | None:
    """The first environment variable of `names` that is set and hides every device ("", "-1")."""
    for name in names:
        value = os.environ.get(name)
        if value is not None and parse_cuda_visible_devices(value) == []:
            return name
    return None


def memory_stats_work(index: int) -> bool:
    """Whether torch's caching-allocator counters can be read for device `index`."""
    import torch

    try:
        stats = torch.cuda.memory_stats(index)
    except Exception:
        return False
    return isinstance(stats, Mapping)


def peak_reset_works(index: int) -> bool:
    """Whether torch can reset device `index`'s allocator peaks.

    The probe really resets them: running metrics on the device keep their peaks first.
    """
    import torch

    reset = getattr(torch.cuda, "reset_peak_memory_stats", None)
    if reset is None:
        return False
    try:
        before_peak_reset("cuda", index)
        reset(index)
    except Exception:  # a CPU-only build lacks torch._C._cuda_resetPeakMemoryStats
        return False
    return True


def mem_get_info_works(index: int) -> bool:
    """Whether the runtime reports device `index`'s free and total memory."""
    import torch

    try:
        _free, total = torch.cuda.mem_get_info(index)
    except Exception:
        return False
    return int(total) > 0


def _flag(value: Any) -> str:
    return "true" if bool(value) else "false"


def device_extra(props: Any) -> dict[str, str]:
    """The secondary device properties torch exposes (L2 size in bytes, integrated, warp size)."""
    extra: dict[str, str] = {}
    l2 = getattr(props, "L2_cache_size", None)
    if l2 is not None:
        extra["l2_cache_bytes"] = str(int(l2))
    warp = getattr(props, "warp_size", None)
    if warp is not None:
        extra["warp_size"] = str(int(warp))
    for attr in ("is_integrated", "is_multi_gpu_board"):
        value = getattr(props, attr, None)
        if value is not None:
            extra[attr] = _flag(value)
    return extra


def current_device_or_none() -> int | None:
    """The current CUDA device as torch sees it, or None when torch can't say."""
    import torch

    try:
        return int(torch.cuda.current_device())
    except Exception:
        return None


class CudaEventClock:
    """Seconds of device time, summed from CUDA/HIP events recorded on the current stream."""

    def __init__(self, device: torch.device) -> None:
        import torch

        self._cuda: Any = torch.cuda  # Event is untyped
        self._device = device
        self._seconds = 0.0
        # A first pair proves events work here before any timing trusts them.
        self._last = self._record()
        probe = self._record()
        self._synchronize()
        float(self._last.elapsed_time(probe))
        self._last = probe

    def _synchronize(self) -> None:
        self._cuda.synchronize(self._device)  # every stream of the device, not only the event's

    def _record(self) -> Any:
        event = self._cuda.Event(enable_timing=True)
        event.record(self._cuda.current_stream(self._device))
        return event

    def __call__(self) -> float:
        """The device time since the clock was made, once the work queued so far has run."""
        event = self._record()
        self._synchronize()
        # Summing short intervals keeps float32 milliseconds precise over a long session.
        self._seconds += float(self._last.elapsed_time(event)) / 1e3
        self._last = event
        return self._seconds


class TorchCudaBackend(HardwareBackend):
    """The part of a `torch.cuda`-driven platform (CUDA or ROCm) that does not depend on vendor."""

    def synchronize(self, device: torch.device | int | None = None) -> None:
        """Wait for every stream on `device` (default: the current one) to finish its work."""
        import torch

        torch.cuda.synchronize(device)

    def event_clock(self, device: torch.device) -> CudaEventClock:
        """Device time from CUDA (or HIP) events; raises where events do not work."""
        return CudaEventClock(device)

    def _allocator_capabilities(self, index: int, props: Any) -> set[Capability]:
        """Capabilities both vendors detect the same way; `props` must come first (lazy init)."""
        caps = {Capability.SYNCHRONIZE}
        if memory_stats_work(index):
            caps.add(Capability.MEMORY_STATS)
        # Peaks can only be reset once torch has initialized CUDA, which reading `props` did.
        if peak_reset_works(index):
            caps.add(Capability.PEAK_MEMORY_RESET)
        if bool(getattr(props, "is_integrated", False)):
            caps.add(Capability.UNIFIED_MEMORY)
        return caps
