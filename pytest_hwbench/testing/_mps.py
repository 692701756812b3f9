"""A fake Apple MPS platform: torch and our MPS backend answer as if this were a Mac with a GPU.

The fake keeps an allocator shaped like torch's MPS heap allocator: live buffers count towards
`current_allocated_memory`, the heaps holding them towards `driver_allocated_memory`, and heaps
stay with the driver until `empty_cache`. Every figure is in bytes, as in torch.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pytest_hwbench.hardware import mps as mps_module
from pytest_hwbench.hardware.mps import MacHost, _version_tuple

if TYPE_CHECKING:
    import pytest
    import torch

__all__ = ["FakeMPS", "fake_mps", "no_mps"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Heap tiers of torch's MPS allocator (aten/src/ATen/mps/MPSAllocator.h).
_MAX_SMALL_ALLOC = 1 * MIB  # buffers up to this share small heaps...
_SMALL_HEAP = 8 * MIB  # ...of this size
_MIN_LARGE_ALLOC = 10 * MIB  # buffers below this share large heaps...
_LARGE_HEAP = 32 * MIB  # ...of this size
_XLARGE_HEAP = 1 * GIB  # on unified memory, buffers below half this share 1 GiB heaps
_ROUND_LARGE = 2 * MIB  # anything bigger gets a heap of its own, rounded up to this
# torch refuses allocations past this multiple of the recommended working set.
_HIGH_WATERMARK_RATIO = 1.7

# The C++ calls torch names when MPS is missing, per public function.
_MISSING = {
    "current_allocated_memory": "getCurrentAllocatedMemory",
    "driver_allocated_memory": "getDriverAllocatedMemory",
    "recommended_max_memory": "getRecommendedMaxMemory",
    "synchronize": "deviceSynchronize",
    "empty_cache": "emptyCache",
}


@dataclass
class _Heap:
    size: int
    tier: str
    used: int = 0
    buffers: int = 0


@dataclass(frozen=True)
class _Buffer:
    heap: _Heap
    size: int


def _fmt(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.2f} MiB"


class FakeMPS:
    """A Mac with (or without) a usable MPS GPU; `install(monkeypatch)` makes torch agree.

    Defaults describe an Apple M2 Pro on macOS 14. ``platform="linux"``, ``built=False`` or
    ``available=False`` fake each way MPS can be absent. `allocate` and `free` stand in for
    tensors being created and dropped.
    """

    def __init__(
        self,
        *,
        available: bool = True,
        built: bool = True,
        platform: str = "darwin",
        macos_version: str | None = "14.5",
        machine: str = "arm64",
        chip: str | None = "Apple M2 Pro",
        device_name: str | None = None,
        gpu_core_count: int = 19,
        recommended_max_memory: int = 24 * GIB,
        supported_dtypes: Iterable[str] = ("float32", "float16", "bfloat16"),
        framework_bytes: int = 0,
        buffer_alignment: int = 16 * KIB,
        peak_stats: bool = False,
    ) -> None:
        self.platform = platform
        self.built = built and platform == "darwin"
        self.available = available and self.built
        self.macos_version = macos_version if platform == "darwin" else None
        self.machine = machine
        self.chip = chip if platform == "darwin" else None
        #: What Metal calls the GPU (torch.backends.mps.get_name); the chip name by default.
        self.device_name = device_name or chip or "Apple GPU"
        self.gpu_core_count = gpu_core_count
        self.recommended_max = recommended_max_memory
        self.supported_dtypes = frozenset(supported_dtypes)
        #: Bytes the Metal frameworks hold outside torch's heaps (counted by the driver only).
        self.framework_bytes = framework_bytes
        #: Buffer sizes are rounded up to this (Metal's heap alignment depends on the device).
        self.buffer_alignment = buffer_alignment
        #: Whether `torch.accelerator` keeps resettable peak statistics for this MPS device.
        self.peak_stats = peak_stats
        self.synchronize_calls = 0
        self.heaps: list[_Heap] = []
        self._buffers: dict[int, _Buffer | None] = {}
        self._handles = itertools.count(1)
        self._peak_allocated = 0
        self._peak_driver = 0

    # -- driving the fake ------------------------------------------------------------------------

    def allocate(self, nbytes: int) -> int:
        """Allocate `nbytes` on the GPU as a tensor would; return a handle for `free`."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        if not self.built:
            raise NotImplementedError(
                "Could not run 'aten::empty.memory_format' with arguments from the 'MPS' backend."
            )
        self._require_device("_mps_currentAllocatedMemory")
        handle = next(self._handles)
        if nbytes == 0:
            self._buffers[handle] = None
            return handle
        size = -(-nbytes // self.buffer_alignment) * self.buffer_alignment
        tier, heap_size = self._tier(size)
        heap = next((h for h in self.heaps if h.tier == tier and h.size - h.used >= size), None)
        if heap is None:
            limit = int(self.recommended_max * _HIGH_WATERMARK_RATIO)
            if self.current_allocated_memory() + size > limit:
                import torch

                raise torch.OutOfMemoryError(
                    f"MPS backend out of memory (MPS allocated: "
                    f"{_fmt(self.current_allocated_memory())}, max allowed: {_fmt(limit)}). "
                    f"Tried to allocate {_fmt(size)}."
                )
            heap = _Heap(size=heap_size, tier=tier)
            self.heaps.append(heap)
        heap.used += size
        heap.buffers += 1
        self._buffers[handle] = _Buffer(heap=heap, size=size)
        self._track_peaks()
        return handle

    def free(self, handle: int) -> None:
        """Drop the allocation `handle`; its heap stays with the driver until `empty_cache`."""
        try:
            buffer = self._buffers.pop(handle)
        except KeyError:
            raise ValueError(f"invalid allocation handle {handle} (already freed?)") from None
        if buffer is not None:
            buffer.heap.used -= buffer.size
            buffer.heap.buffers -= 1

    def _tier(self, size: int) -> tuple[str, int]:
        if size <= _MAX_SMALL_ALLOC:
            return "small", _SMALL_HEAP
        if size < _MIN_LARGE_ALLOC:
            return "large", _LARGE_HEAP
        if size < _XLARGE_HEAP // 2 and self.machine == "arm64":
            return "xlarge", _XLARGE_HEAP
        return "own", -(-size // _ROUND_LARGE) * _ROUND_LARGE

    def _track_peaks(self) -> None:
        self._peak_allocated = max(self._peak_allocated, self.current_allocated_memory())
        self._peak_driver = max(self._peak_driver, self.driver_allocated_memory())

    def _require(self, function: str) -> None:
        if not self.available:
            raise RuntimeError(f"Cannot execute {_MISSING[function]}() without MPS backend.")

    # -- torch.backends.mps ----------------------------------------------------------------------

    def is_built(self) -> bool:
        """Whether this torch was built with MPS."""
        return self.built

    def is_available(self) -> bool:
        """Whether MPS can run here."""
        return self.available

    def get_name(self) -> str:
        """The Metal device's name."""
        self._require_device("_mps_get_name")
        return self.device_name

    def get_core_count(self) -> int:
        """The GPU's core count."""
        self._require_device("_mps_get_core_count")
        return self.gpu_core_count

    def _require_device(self, binding: str) -> None:
        if not self.built:
            raise AttributeError(f"module 'torch._C' has no attribute '{binding}'")
        if not self.available:
            raise RuntimeError("the MPS backend is not available on this (fake) machine")

    def is_macos_or_newer(self, major: int, minor: int) -> bool:
        """Whether the fake macOS is at least `major.minor`."""
        return _version_tuple(self.macos_version) >= (major, minor)

    def is_macos13_or_newer(self, minor: int = 0) -> bool:
        """Whether the fake macOS is at least 13.`minor`."""
        return self.is_macos_or_newer(13, minor)

    # -- torch.mps -------------------------------------------------------------------------------

    def device_count(self) -> int:
        """1 when MPS is available, else 0."""
        return int(self.available)

    def current_allocated_memory(self) -> int:
        """Bytes in live buffers (rounded to the buffer alignment), as the allocator counts them."""
        self._require("current_allocated_memory")
        return sum(b.size for b in self._buffers.values() if b is not None)

    def driver_allocated_memory(self) -> int:
        """Bytes Metal holds for the process: every heap, live or cached, plus the frameworks."""
        self._require("driver_allocated_memory")
        return self.framework_bytes + sum(h.size for h in self.heaps)

    def recommended_max_memory(self) -> int:
        """Metal's recommended working-set size for this GPU."""
        self._require("recommended_max_memory")
        return self.recommended_max

    def synchronize(self) -> None:
        """Count a synchronize; the fake has no queued work."""
        self._require("synchronize")
        self.synchronize_calls += 1

    def empty_cache(self) -> None:
        """Give every heap without live buffers back to the driver."""
        self._require("empty_cache")
        self.heaps = [h for h in self.heaps if h.buffers > 0]

    # -- torch.accelerator (only where peak_stats=True) ------------------------------------------

    def _accelerator_index(self, device: Any) -> int:
        if device is None:
            return 0
        if isinstance(device, int) and not isinstance(device, bool):
            index = device
        else:
            import torch

            parsed = torch.device(device) if isinstance(device, str) else device
            if not isinstance(parsed, torch.device):
                raise TypeError(f"expected a device, got {device!r}")
            if parsed.type != "mps":
                raise ValueError(f"{parsed.type} doesn't match the current accelerator mps.")
            index = 0 if parsed.index is None else parsed.index
        if index != 0:
            raise RuntimeError(f"invalid MPS device index {index}: MPS has one device (0)")
        return index

    def accelerator_memory_stats(self, device_index: Any = None, /) -> OrderedDict[str, int]:
        """Allocator statistics through `torch.accelerator`, as a device-stats allocator has."""
        self._accelerator_index(device_index)
        if not self.peak_stats:
            raise RuntimeError("MPS does not support getDeviceStats (FakeMPS(peak_stats=False))")
        return OrderedDict(
            sorted(
                {
                    "allocated_bytes.all.current": self.current_allocated_memory(),
                    "allocated_bytes.all.peak": self._peak_allocated,
                    "reserved_bytes.all.current": self.driver_allocated_memory(),
                    "reserved_bytes.all.peak": self._peak_driver,
                }.items()
            )
        )

    def accelerator_reset_peak_memory_stats(self, device_index: Any = None, /) -> None:
        """Set both peaks to their current values."""
        self._accelerator_index(device_index)
        if not self.peak_stats:
            raise RuntimeError("MPS does not support resetPeakStats (FakeMPS(peak_stats=False))")
        self._peak_allocated = self.current_allocated_memory()
        self._peak_driver = self.driver_allocated_memory()

    def _accelerator_stat(self, key: str) -> Callable[..., int]:
        def read(device_index: Any = None, /) -> int:
            return self.accelerator_memory_stats(device_index)[key]

        read.__doc__ = f"`{key}` of the fake MPS allocator, in bytes."
        return read

    # -- installing ------------------------------------------------------------------------------

    def _host(self) -> MacHost:
        return MacHost(
            platform=self.platform,
            macos_version=self.macos_version,
            machine=self.machine,
            chip=self.chip,
        )

    def _probe(self, dtype_name: str) -> bool:
        if not self.available:
            return False
        if dtype_name == "bfloat16" and not self.is_macos_or_newer(14, 0):
            return False  # Metal has no bf16 kernels before macOS 14
        return dtype_name in self.supported_dtypes

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeMPS:
        """Patch torch's MPS API and our backend's host and op probes; returns self.

        Only functions the installed torch has are replaced, so the fake never invents API.
        """
        import torch

        from pytest_hwbench.hardware import registry as registry_module

        # Detection is cached per process: the next lookup must see this machine, not the last.
        monkeypatch.setattr(registry_module.DEFAULT, "value", None)
        monkeypatch.setattr(mps_module, "query_mac_host", self._host)
        monkeypatch.setattr(mps_module, "probe_mps_dtype", self._probe)
        backends_api: dict[str, Callable[..., Any]] = {
            "is_built": self.is_built,
            "is_available": self.is_available,
            "get_name": self.get_name,
            "get_core_count": self.get_core_count,
            "is_macos_or_newer": self.is_macos_or_newer,
            "is_macos13_or_newer": self.is_macos13_or_newer,
        }
        mps_api: dict[str, Callable[..., Any]] = {
            "is_available": self.is_available,
            "device_count": self.device_count,
            "current_allocated_memory": self.current_allocated_memory,
            "driver_allocated_memory": self.driver_allocated_memory,
            "recommended_max_memory": self.recommended_max_memory,
            "synchronize": self.synchronize,
            "empty_cache": self.empty_cache,
        }
        for module, api in ((torch.backends.mps, backends_api), (torch.mps, mps_api)):
            for name, function in api.items():
                if hasattr(module, name):
                    monkeypatch.setattr(module, name, function)
        self._install_accelerator(monkeypatch)
        return self

    def _install_accelerator(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import torch

        accelerator = getattr(torch, "accelerator", None)
        if accelerator is None or not self.built:
            return  # without MPS, torch.accelerator shows whatever this machine really has
        mps_device = torch.device("mps")

        def current_accelerator(check_available: bool = False) -> torch.device | None:
            return None if check_available and not self.available else mps_device

        api: dict[str, Callable[..., Any]] = {
            "current_accelerator": current_accelerator,
            "memory_stats": self.accelerator_memory_stats,
            "reset_peak_memory_stats": self.accelerator_reset_peak_memory_stats,
            "memory_allocated": self._accelerator_stat("allocated_bytes.all.current"),
            "max_memory_allocated": self._accelerator_stat("allocated_bytes.all.peak"),
            "memory_reserved": self._accelerator_stat("reserved_bytes.all.current"),
            "max_memory_reserved": self._accelerator_stat("reserved_bytes.all.peak"),
        }
        for name, function in api.items():
            if hasattr(accelerator, name):
                monkeypatch.setattr(accelerator, name, function)


def fake_mps(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> FakeMPS:
    """Make this look like a Mac with a usable MPS GPU until the test ends; returns the fake."""
    return FakeMPS(**kwargs).install(monkeypatch)


def no_mps(
    monkeypatch: pytest.MonkeyPatch,
    reason: Literal["not_macos", "not_built", "unavailable"] = "not_macos",
) -> FakeMPS:
    """Make MPS absent: not macOS, torch built without MPS, or macOS / GPU too old."""
    variants: dict[str, dict[str, Any]] = {
        "not_macos": {"platform": "linux", "built": False, "available": False},
        "not_built": {"built": False, "available": False},
        "unavailable": {
            "available": False,
            "macos_version": "12.1",
            "machine": "x86_64",
            "chip": "Intel(R) Core(TM) i7-8850H CPU @ 2.60GHz",
        },
    }
    if reason not in variants:
        raise ValueError(f"reason must be one of {', '.join(variants)}; got {reason!r}")
    return FakeMPS(**variants[reason]).install(monkeypatch)
