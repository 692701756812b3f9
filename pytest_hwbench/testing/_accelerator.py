"""A fake out-of-tree accelerator: torch answers as if torch_npu (a PrivateUse1 package) were here.

An out-of-tree package renames torch's PrivateUse1 device type ("npu"), registers its device
module as ``torch.<type>`` and plugs its caching allocator into `torch.accelerator`. The fake does
the same: a real rename where torch does not know the type yet, a device module, and
`torch.accelerator` functions answering from a caching allocator per device with torch's
semantics (statistics empty and peak resets a no-op until the allocator is initialized, peaks kept
until reset, device indices checked), and the errors of an allocator that cannot do something.

The rename is torch's own and cannot be undone in a process: fake such a type in a subprocess
(``pytester.runpytest_subprocess``) or use a type torch already knows ("hpu", "mtia", "maia").
"""

from __future__ import annotations

import collections
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pytest_hwbench.testing._caching_allocator import (
    GIB,
    DeviceAllocator,
    DevicePool,
    check_device_index,
)

if TYPE_CHECKING:
    import pytest

__all__ = ["FakeAccelerator", "FakeAcceleratorDeviceProperties", "fake_accelerator"]

_DEFAULT_DTYPES = ("float32", "float16", "bfloat16", "int8", "int32", "int64", "bool")


@dataclass(frozen=True)
class FakeAcceleratorDeviceProperties:
    """What ``torch.<type>.get_device_properties`` returns; defaults describe an Ascend 910B3."""

    name: str = "Ascend910B3"
    total_memory: int = 64 * GIB
    cube_core_num: int = 20
    vector_core_num: int = 40
    L2_cache_size: int = 192 * 2**20


class FakeAccelerator:
    """`count` fake devices of `device_type`; `install(monkeypatch)` makes torch drive them.

    ``peak_reset=False`` fakes an allocator whose ``reset_peak_memory_stats`` raises;
    ``allocator_stats=False`` one that is not a ``DeviceAllocator`` (every memory query raises,
    as torch's does); ``memory_info=False`` a runtime without free/total; ``available=False`` a
    package installed on a machine without a device or driver; ``initialized=True`` a process
    that has used the device already. `allocate` and `free` stand in for tensors being created
    and dropped; every figure is in bytes.
    """

    #: The fake installed for each device type, for suites that allocate on it (`installed`).
    _installed: ClassVar[dict[str, FakeAccelerator]] = {}

    def __init__(
        self,
        device_type: str = "npu",
        count: int = 1,
        *,
        properties: FakeAcceleratorDeviceProperties | None = None,
        supported_dtypes: Iterable[str] | None = _DEFAULT_DTYPES,
        peak_reset: bool = True,
        allocator_stats: bool = True,
        memory_info: bool = True,
        available: bool = True,
        external_used_bytes: int = 0,
        initialized: bool = False,
    ) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.device_type = device_type
        self.count = count if available else 0
        self.properties = properties or FakeAcceleratorDeviceProperties()
        self.supported_dtypes = None if supported_dtypes is None else tuple(supported_dtypes)
        self.peak_reset = peak_reset
        self.allocator_stats = allocator_stats
        self.memory_info = memory_info
        #: Bytes other processes hold on each device; lowers `get_memory_info`'s free.
        self.external_used_bytes = external_used_bytes
        self.current = 0
        #: Whether the allocator has been initialized (the first allocation or device use).
        self.initialized = initialized and self.count > 0
        #: How many times `synchronize` ran, per device index.
        self.synchronize_calls: collections.Counter[int] = collections.Counter()
        self._pool = DevicePool(device_type.upper(), self.count)
        self._allocators = self._pool.allocators

    @classmethod
    def installed(cls, device_type: str = "npu") -> FakeAccelerator:
        """The fake installed for `device_type`, e.g. for a test suite to allocate on it."""
        try:
            return cls._installed[device_type]
        except KeyError:
            raise LookupError(f"no FakeAccelerator is installed for {device_type!r}") from None

    # -- driving the fake ------------------------------------------------------------------------

    def allocate(self, index: int, nbytes: int) -> int:
        """Allocate `nbytes` on device `index` as a tensor would; return a handle for `free`."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._check_device(index)
        self.initialized = True
        usable = self.properties.total_memory - self.external_used_bytes
        return self._pool.allocate(index, nbytes, usable)

    def free(self, handle: int) -> None:
        """Drop the allocation `handle` (its memory stays reserved until `empty_cache`)."""
        self._pool.free(handle)

    # -- torch.accelerator's API -----------------------------------------------------------------

    def current_accelerator(self, check_available: bool = False) -> Any:
        """The device type as a `torch.device` without index (None if checked and absent)."""
        import torch

        if check_available and not self.is_available():
            return None
        return torch.device(self.device_type)

    def device_count(self) -> int:
        """How many devices the runtime sees."""
        return self.count

    def is_available(self) -> bool:
        """Whether at least one device is visible (never raises)."""
        return self.count > 0

    def current_device_index(self) -> int:
        """The index of the currently selected device."""
        return self.current

    def set_device_index(self, device: Any, /) -> None:
        """Select a device; a negative index is a no-op, like torch."""
        index = self._index(device)
        if index >= 0:
            self._check_device(index)
            self.current = index
            self.initialized = True

    def synchronize(self, device: Any = None, /) -> None:
        """Count a synchronize on `device` (default: current); the fake has no queued work."""
        index = self._index(device)
        self._check_device(index)
        self.synchronize_calls[index] += 1

    def memory_stats(self, device_index: Any = None, /) -> collections.OrderedDict[str, int]:
        """Flat allocator statistics; empty before the allocator is initialized, like torch."""
        if not self.initialized:
            return collections.OrderedDict()
        return self._allocator(device_index).flat_stats()

    def memory_allocated(self, device_index: Any = None, /) -> int:
        """Bytes in live blocks on the device."""
        return self.memory_stats(device_index).get("allocated_bytes.all.current", 0)

    def max_memory_allocated(self, device_index: Any = None, /) -> int:
        """Peak of `memory_allocated` since start or the last reset."""
        return self.memory_stats(device_index).get("allocated_bytes.all.peak", 0)

    def memory_reserved(self, device_index: Any = None, /) -> int:
        """Bytes of segments the allocator holds (live blocks plus cache)."""
        return self.memory_stats(device_index).get("reserved_bytes.all.current", 0)

    def max_memory_reserved(self, device_index: Any = None, /) -> int:
        """Peak of `memory_reserved` since start or the last reset."""
        return self.memory_stats(device_index).get("reserved_bytes.all.peak", 0)

    def reset_peak_memory_stats(self, device_index: Any = None, /) -> None:
        """Set the device's peaks to their current values; a no-op before initialization."""
        if not self.initialized:
            return
        allocator = self._allocator(device_index)
        if not self.peak_reset:
            raise RuntimeError(
                f"{self.device_type} caching allocator does not support resetPeakStats"
            )
        allocator.reset_peaks()

    def reset_accumulated_memory_stats(self, device_index: Any = None, /) -> None:
        """Zero the allocated/freed totals; a no-op before initialization."""
        if self.initialized:
            self._allocator(device_index).reset_accumulated()

    def get_memory_info(self, device_index: Any = None, /) -> tuple[int, int]:
        """(free, total) bytes of the device: every process's use counts."""
        if not self.memory_info:
            raise RuntimeError(f"{self.device_type} runtime does not report device memory info")
        allocator = self._allocator(device_index)
        total = self.properties.total_memory
        return max(total - self.external_used_bytes - allocator.reserved, 0), total

    def empty_cache(self) -> None:
        """Release every segment without live blocks, on every device."""
        if self.initialized and self.allocator_stats:
            for allocator in self._allocators:
                allocator.release_free_segments()

    def get_device_capability(self, device: Any = None, /) -> dict[str, Any]:
        """``{"supported_dtypes": {...}}`` as torch >= 2.8 answers; raises where not offered."""
        import torch

        self._check_device(self._index(device))
        if self.supported_dtypes is None:
            raise RuntimeError(f"{self.device_type} does not report its device capability")
        return {"supported_dtypes": {getattr(torch, name) for name in self.supported_dtypes}}

    # -- the device module (torch.<type>) --------------------------------------------------------

    def get_device_properties(self, device: Any = None) -> FakeAcceleratorDeviceProperties:
        """The properties of `device` (default: current)."""
        self._check_device(self._index(device))
        self.initialized = True
        return self.properties

    def get_device_name(self, device: Any = None) -> str:
        """The name of `device` (default: current)."""
        return self.get_device_properties(device).name

    def device_module(self) -> types.ModuleType:
        """A ``torch.<type>`` module as the out-of-tree package registers it."""
        module = types.ModuleType(f"fake_{self.device_type}")
        module.__dict__.update(
            device_count=self.device_count,
            is_available=self.is_available,
            current_device=self.current_device_index,
            set_device=self.set_device_index,
            synchronize=self.synchronize,
            get_device_properties=self.get_device_properties,
            get_device_name=self.get_device_name,
            memory_allocated=self.memory_allocated,
            max_memory_allocated=self.max_memory_allocated,
            memory_reserved=self.memory_reserved,
            max_memory_reserved=self.max_memory_reserved,
            reset_peak_memory_stats=self.reset_peak_memory_stats,
            memory_stats=self.memory_stats,
            mem_get_info=self.get_memory_info,
            empty_cache=self.empty_cache,
        )
        return module

    # -- installing ------------------------------------------------------------------------------

    def _api(self) -> dict[str, Callable[..., Any]]:
        return {
            "current_accelerator": self.current_accelerator,
            "device_count": self.device_count,
            "is_available": self.is_available,
            "current_device_index": self.current_device_index,
            "current_device_idx": self.current_device_index,
            "set_device_index": self.set_device_index,
            "set_device_idx": self.set_device_index,
            "synchronize": self.synchronize,
            "memory_stats": self.memory_stats,
            "memory_allocated": self.memory_allocated,
            "max_memory_allocated": self.max_memory_allocated,
            "memory_reserved": self.memory_reserved,
            "max_memory_reserved": self.max_memory_reserved,
            "reset_peak_memory_stats": self.reset_peak_memory_stats,
            "reset_accumulated_memory_stats": self.reset_accumulated_memory_stats,
            "get_memory_info": self.get_memory_info,
            "empty_cache": self.empty_cache,
            "get_device_capability": self.get_device_capability,
        }

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeAccelerator:
        """Make torch drive this fake until `monkeypatch` undoes it; returns self.

        Renames torch's PrivateUse1 type to `device_type` where torch does not know it (for
        good: see the module's note). Only `torch.accelerator` functions the installed torch
        has are replaced, so the fake never invents API.
        """
        import torch

        from pytest_hwbench.hardware import registry as registry_module

        try:
            torch.device(self.device_type)
        except RuntimeError:
            from torch.utils.backend_registration import rename_privateuse1_backend

            rename_privateuse1_backend(self.device_type)
        monkeypatch.setattr(registry_module.DEFAULT, "value", None)
        modules = [torch.accelerator, getattr(torch.accelerator, "memory", None)]
        for name, function in self._api().items():
            for module in modules:
                if module is not None and hasattr(module, name):
                    monkeypatch.setattr(module, name, self._guarded(name, function))
        monkeypatch.setattr(torch, self.device_type, self.device_module(), raising=False)
        monkeypatch.setitem(FakeAccelerator._installed, self.device_type, self)
        return self

    def _guarded(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, raising as torch does where this allocator cannot answer `name`."""
        if self.allocator_stats or name not in _ALLOCATOR_CALLS:
            return function

        def refuse(*args: Any, **kwargs: Any) -> Any:
            if not self.initialized:  # torch asks no allocator before it is initialized
                return function(*args, **kwargs)
            raise RuntimeError(
                "INTERNAL ASSERT FAILED at c10/core/CachingDeviceAllocator.cpp: "
                f"Allocator for {self.device_type} is not a DeviceAllocator."
            )

        return refuse

    # -- torch's checks --------------------------------------------------------------------------

    def _index(self, device: Any) -> int:
        """Resolve a device argument as `torch.accelerator._get_device_index` does."""
        if isinstance(device, int) and not isinstance(device, bool):
            return device
        import torch

        if isinstance(device, str):
            device = torch.device(device)
        if isinstance(device, torch.device):
            if device.type != self.device_type:
                raise ValueError(
                    f"{device.type} doesn't match the current accelerator "
                    f"{torch.device(self.device_type)}."
                )
            return self.current if device.index is None else device.index
        if device is None:
            return self.current
        raise ValueError(
            f"Expected a torch.device with a specified index or an integer, but got:{device}"
        )

    def _check_device(self, index: int) -> None:
        check_device_index(index, self.count)

    def _allocator(self, device: Any) -> DeviceAllocator:
        index = self._index(device)
        self._check_device(index)
        return self._allocators[index]


# The calls that reach the device allocator once it is initialized (before, torch answers
# them itself: empty statistics, zeros, no-op resets); the rest ask the device or the runtime.
_ALLOCATOR_CALLS = frozenset(
    {
        "memory_stats",
        "memory_allocated",
        "max_memory_allocated",
        "memory_reserved",
        "max_memory_reserved",
        "reset_peak_memory_stats",
        "reset_accumulated_memory_stats",
        "empty_cache",
    }
)


def fake_accelerator(
    monkeypatch: pytest.MonkeyPatch, device_type: str = "npu", count: int = 1, **options: Any
) -> FakeAccelerator:
    """Make torch drive `count` fake `device_type` devices until undone; returns the fake."""
    return FakeAccelerator(device_type, count, **options).install(monkeypatch)
