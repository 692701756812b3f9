"""A fake Intel XPU platform: `torch.xpu` answers as if N Intel GPUs were here.

The fake keeps a caching allocator per device with torch's semantics (block rounding, segments
kept until `empty_cache`, peaks kept until `reset_peak_memory_stats` on that device) and raises
torch's errors for bad device indices, so code measured against it behaves as on real hardware.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pytest

__all__ = [
    "FakeXPU",
    "FakeXPUDeviceProperties",
    "FakeXPUuuid",
    "fake_xpu",
    "no_xpu",
]

from pytest_hwbench.testing._caching_allocator import (
    GIB,
    KIB,
    MIB,
    DeviceAllocator,
    DevicePool,
    check_device_index,
)


@dataclass(frozen=True)
class FakeXPUuuid:
    """Stands in for torch's `_XPUuuid`: 16 bytes as a list; str() gives the 8-4-4-4-12 form."""

    bytes: list[int]

    def __str__(self) -> str:
        h = "".join(f"{b:02x}" for b in self.bytes)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class FakeXPUDeviceProperties:
    """Stands in for torch's `_XpuDeviceProperties`, with the same attribute names and units.

    Defaults describe one tile of an Intel Data Center GPU Max 1550.
    """

    name: str = "Intel(R) Data Center GPU Max 1550"
    platform_name: str = "Intel(R) oneAPI Unified Runtime over Level-Zero"
    vendor: str = "Intel(R) Corporation"
    device_id: int = 0x0BD5
    driver_version: str = "1.6.31294+21"
    version: str = "12.60.7"
    max_compute_units: int = 448
    gpu_eu_count: int = 448
    max_work_group_size: int = 1024
    max_num_sub_groups: int = 64
    memory_clock_rate: int = 3200
    memory_bus_width: int = 64
    sub_group_sizes: list[int] = field(default_factory=lambda: [16, 32])
    local_mem_size: int = 128 * KIB
    last_level_cache_size: int = 204 * MIB
    has_fp16: bool = True
    has_fp64: bool = True
    has_atomic64: bool = True
    has_bfloat16_conversions: bool = True
    has_subgroup_matrix_multiply_accumulate: bool = True
    has_subgroup_matrix_multiply_accumulate_tensor_float32: bool = True
    has_subgroup_2d_block_io: bool = True
    is_integrated_gpu: bool = False
    total_memory: int = 64 * GIB
    gpu_subslice_count: int = 56
    architecture: int = 0x0000_0003_0F00_0700  # SYCL's intel_gpu_pvc
    type: str = "gpu"
    uuid: FakeXPUuuid = field(default_factory=lambda: FakeXPUuuid([0x86, 0x80] + [0] * 14))


class FakeXPU:
    """`count` fake Intel GPUs; `install(monkeypatch)` makes `torch.xpu` answer from them.

    ``compiled=False`` fakes a torch built without XPU; ``count=0`` with ``compiled=True`` fakes
    an XPU build on a machine without an Intel GPU or Level Zero driver. `allocate` and `free`
    stand in for tensors being created and dropped; every figure is in bytes.
    """

    def __init__(
        self,
        count: int = 1,
        *,
        compiled: bool = True,
        properties: FakeXPUDeviceProperties | Sequence[FakeXPUDeviceProperties] | None = None,
        external_used_bytes: int = 0,
        xpu_version: str = "20250101",
        initialized: bool = False,
    ) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.compiled = compiled
        self.count = count if compiled else 0
        self.xpu_version = xpu_version if compiled else None
        if isinstance(properties, Sequence):
            if len(properties) != self.count:
                raise ValueError(
                    f"got {len(properties)} device properties for {self.count} devices"
                )
            self.properties = list(properties)
        else:
            template = properties or FakeXPUDeviceProperties()
            self.properties = [template] * self.count
            if self.count > 1:  # copies of one template still get distinct UUIDs, as real devices
                base = list(template.uuid.bytes)
                self.properties = [
                    replace(template, uuid=FakeXPUuuid([*base[:14], i, 1]))
                    for i in range(self.count)
                ]
        #: Bytes other processes (and the driver) hold on each device; lowers `mem_get_info` free.
        self.external_used_bytes = external_used_bytes
        self.initialized = initialized and compiled
        self.current = 0
        #: How many times `synchronize` ran, per device index.
        self.synchronize_calls: collections.Counter[int] = collections.Counter()
        self._pool = DevicePool("XPU", self.count)
        self._allocators = self._pool.allocators

    # -- driving the fake ------------------------------------------------------------------------

    def allocate(self, index: int, nbytes: int) -> int:
        """Allocate `nbytes` on device `index` as a tensor would; return a handle for `free`."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._lazy_init()
        self._check_device(index)
        usable = self.properties[index].total_memory - self.external_used_bytes
        return self._pool.allocate(index, nbytes, usable)

    def free(self, handle: int) -> None:
        """Drop the allocation `handle` (its memory stays reserved until `empty_cache`)."""
        self._pool.free(handle)

    # -- torch.xpu's API -------------------------------------------------------------------------

    def _is_compiled(self) -> bool:
        return self.compiled

    def is_available(self) -> bool:
        """Whether at least one device is visible (never raises, like torch)."""
        return self.device_count() > 0

    def device_count(self) -> int:
        """The number of fake devices (0 when not compiled)."""
        return self.count

    def is_initialized(self) -> bool:
        """Whether something has initialized XPU in this process yet."""
        return self.initialized

    def init(self) -> None:
        """Initialize XPU, as `torch.xpu.init` does."""
        self._lazy_init()

    def current_device(self) -> int:
        """The index of the currently selected device."""
        self._lazy_init()
        return self.current

    def set_device(self, device: Any) -> None:
        """Select a device; a negative index is a no-op, like torch."""
        self._lazy_init()
        index = self._index(device)
        if index >= 0:
            self._check_device(index)
            self.current = index

    def get_device_properties(self, device: Any = None) -> FakeXPUDeviceProperties:
        """The properties of `device` (default: current)."""
        self._lazy_init()
        index = self._index(device)
        self._check_device(index)
        return self.properties[index]

    def get_device_name(self, device: Any = None) -> str:
        """The name of `device` (default: current)."""
        return self.get_device_properties(device).name

    def get_device_capability(self, device: Any = None) -> dict[str, Any]:
        """The serializable properties of `device`, as torch builds its capability dict."""
        props = self.get_device_properties(device)
        return {
            key: value
            for key, value in vars(props).items()
            if isinstance(value, (int, float, bool, str, list, tuple, dict, type(None)))
        }

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        """Like torch: True on any device if emulation counts, else the current device's answer."""
        if not self.is_available():
            return False
        return including_emulation or self.get_device_properties().has_bfloat16_conversions

    def is_tf32_supported(self) -> bool:
        """Whether the current device has DPAS, which torch uses for TF32."""
        if not self.is_available():
            return False
        return self.get_device_properties().has_subgroup_matrix_multiply_accumulate

    def synchronize(self, device: Any = None) -> None:
        """Count a synchronize on `device` (default: current); the fake has no queued work."""
        self._lazy_init()
        index = self._index(device)
        self._check_device(index)
        self.synchronize_calls[index] += 1

    def memory_stats(self, device: Any = None) -> collections.OrderedDict[str, int]:
        """Flat allocator statistics of `device`; empty before XPU is initialized, like torch."""
        if not self.initialized:
            return collections.OrderedDict()
        return self._allocator(device).flat_stats()

    def memory_stats_as_nested_dict(self, device: Any = None) -> dict[str, Any]:
        """The same statistics, nested as torch's C++ binding returns them."""
        if not self.initialized:
            return {}
        stats = self._allocator(device).stats
        return {
            name: {pool: vars(stat).copy() for pool, stat in pools.items()}
            for name, pools in stats.items()
        }

    def memory_allocated(self, device: Any = None) -> int:
        """Bytes in live blocks on `device`."""
        return self.memory_stats(device).get("allocated_bytes.all.current", 0)

    def max_memory_allocated(self, device: Any = None) -> int:
        """Peak of `memory_allocated` since start or the last reset of `device`."""
        return self.memory_stats(device).get("allocated_bytes.all.peak", 0)

    def memory_reserved(self, device: Any = None) -> int:
        """Bytes of segments the allocator holds on `device` (live blocks plus cache)."""
        return self.memory_stats(device).get("reserved_bytes.all.current", 0)

    def max_memory_reserved(self, device: Any = None) -> int:
        """Peak of `memory_reserved` since start or the last reset of `device`."""
        return self.memory_stats(device).get("reserved_bytes.all.peak", 0)

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        """Set every peak of `device` (only) to its current value."""
        self._allocator_checked(device, "_xpu_resetPeakMemoryStats").reset_peaks()

    def reset_accumulated_memory_stats(self, device: Any = None) -> None:
        """Zero the allocated/freed totals of `device`."""
        self._allocator_checked(device, "_xpu_resetAccumulatedMemoryStats").reset_accumulated()

    def mem_get_info(self, device: Any = None) -> tuple[int, int]:
        """(free, total) bytes of `device` as the driver sees it: every process's use counts."""
        self._lazy_init()
        allocator = self._allocator_checked(device, "_xpu_getMemoryInfo")
        total = self.properties[self._index(device)].total_memory
        return max(total - self.external_used_bytes - allocator.reserved, 0), total

    def empty_cache(self) -> None:
        """Release every segment without live blocks, on every device."""
        if self.initialized:
            for allocator in self._allocators:
                allocator.release_free_segments()

    # -- installing ------------------------------------------------------------------------------

    def _api(self) -> dict[str, Callable[..., Any]]:
        return {
            "_is_compiled": self._is_compiled,
            "is_available": self.is_available,
            "device_count": self.device_count,
            "is_initialized": self.is_initialized,
            "init": self.init,
            "_lazy_init": self._lazy_init,
            "current_device": self.current_device,
            "set_device": self.set_device,
            "get_device_properties": self.get_device_properties,
            "get_device_name": self.get_device_name,
            "get_device_capability": self.get_device_capability,
            "is_bf16_supported": self.is_bf16_supported,
            "is_tf32_supported": self.is_tf32_supported,
            "synchronize": self.synchronize,
            "memory_stats": self.memory_stats,
            "memory_stats_as_nested_dict": self.memory_stats_as_nested_dict,
            "memory_allocated": self.memory_allocated,
            "max_memory_allocated": self.max_memory_allocated,
            "memory_reserved": self.memory_reserved,
            "max_memory_reserved": self.max_memory_reserved,
            "reset_peak_memory_stats": self.reset_peak_memory_stats,
            "reset_accumulated_memory_stats": self.reset_accumulated_memory_stats,
            "mem_get_info": self.mem_get_info,
            "empty_cache": self.empty_cache,
        }

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeXPU:
        """Patch `torch.xpu` (and `torch.xpu.memory`) to answer from this fake; returns self.

        Only functions the installed torch has are replaced, so the fake never invents API.
        """
        import torch

        from pytest_hwbench.hardware import registry as registry_module

        # Detection is cached per process: the next lookup must see this machine, not the last.
        monkeypatch.setattr(registry_module.DEFAULT, "value", None)
        modules = [torch.xpu, getattr(torch.xpu, "memory", None)]
        for name, function in self._api().items():
            for module in modules:
                if module is not None and hasattr(module, name):
                    monkeypatch.setattr(module, name, function)
        monkeypatch.setattr(torch.version, "xpu", self.xpu_version, raising=False)
        return self

    # -- torch's checks --------------------------------------------------------------------------

    def _lazy_init(self) -> None:
        if not self.compiled:
            raise AssertionError("Torch not compiled with XPU enabled")
        self.initialized = True

    def _index(self, device: Any) -> int:
        """Resolve a device argument the way torch.xpu's `_get_device_index` does."""
        if device is None:
            return self.current
        if isinstance(device, int) and not isinstance(device, bool):
            return device
        import torch

        if isinstance(device, str):
            device = torch.device(device)
        if isinstance(device, torch.device):
            if device.type != "xpu":
                raise ValueError(f"Expected a xpu device, but got: {device}")
            return self.current if device.index is None else device.index
        raise ValueError(
            f"Expected a torch.device with a specified index or an integer, but got:{device}"
        )

    def _check_device(self, index: int) -> None:
        check_device_index(index, self.count)

    def _allocator(self, device: Any) -> DeviceAllocator:
        index = self._index(device)
        if not 0 <= index < len(self._allocators):
            raise RuntimeError(f"Invalid device argument {index}: did you call init?")
        return self._allocators[index]

    def _allocator_checked(self, device: Any, binding: str) -> DeviceAllocator:
        if not self.compiled:
            raise AttributeError(f"module 'torch._C' has no attribute '{binding}'")
        if not self.initialized:
            # torch creates the per-device allocators when XPU initializes; before that
            # every index is invalid.
            raise RuntimeError(f"Invalid device argument {self._index(device)}: did you call init?")
        return self._allocator(device)


def fake_xpu(monkeypatch: pytest.MonkeyPatch, count: int = 1, **kwargs: Any) -> FakeXPU:
    """Make torch see `count` fake Intel GPUs until the test ends; returns the fake to drive."""
    return FakeXPU(count, **kwargs).install(monkeypatch)


def no_xpu(
    monkeypatch: pytest.MonkeyPatch, reason: Literal["not_built", "no_driver"] = "not_built"
) -> FakeXPU:
    """Make XPU absent: torch built without it, or built with it but no Intel GPU / driver."""
    if reason not in ("not_built", "no_driver"):
        raise ValueError(f"reason must be 'not_built' or 'no_driver', got {reason!r}")
    return FakeXPU(0, compiled=reason == "no_driver").install(monkeypatch)
