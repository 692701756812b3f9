"""Fake NVIDIA and AMD GPUs, and a fake NVML, for tests that run without a GPU.

`FakeCuda` makes torch look like a CUDA build (or a ROCm build, with ``hip=True``) with N devices:
properties, capabilities, synchronize, and a caching allocator whose counters follow torch's rules
(512-byte blocks, 2 MiB and 20 MiB segments, per-device peaks kept until reset, reserved memory
kept until ``empty_cache()``). `FakeNVML` stands in for nvidia-ml-py's `pynvml` module and reports
the same machine's memory as the driver would: other processes + CUDA contexts + reserved bytes.

>>> def test_peak(monkeypatch):
...     cuda = fake_cuda(monkeypatch, count=2)
...     block = cuda.allocate(1, 3 * MiB)
...     assert torch.cuda.max_memory_allocated(1) == 3 * MiB
"""

from __future__ import annotations

import collections
import itertools
import os
import string
import sys
import threading
import time
import types
import uuid as uuid_module
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

if TYPE_CHECKING:
    import pytest
    import torch

    Device = torch.device | str | int | None

__all__ = [
    "FakeAllocation",
    "FakeCuda",
    "FakeCudaDevice",
    "FakeCudaDeviceProperties",
    "FakeCudaUUID",
    "FakeNVML",
    "FakeNVMLHandle",
    "GiB",
    "MiB",
    "NVMLError",
    "fake_cuda",
    "fake_nvml",
    "fake_rocm",
    "no_nvml",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# The caching allocator's sizes (c10/cuda/CUDACachingAllocator.cpp).
_MIN_BLOCK_SIZE = 512  # every block is a multiple of this
_SMALL_SIZE = 1 * MiB  # requests up to this come from the small pool
_SMALL_BUFFER = 2 * MiB  # a small-pool segment
_MIN_LARGE_ALLOC = 10 * MiB  # large requests below this share a 20 MiB segment
_LARGE_BUFFER = 20 * MiB
_ROUND_LARGE = 2 * MiB  # larger requests get a segment of their own, rounded to this

_UUID_NAMESPACE = uuid_module.UUID("6f1c7d52-0c4e-4c1e-9a53-3d1f2b7f9e10")
_device_numbers = itertools.count()
#: PCI buses handed to fake GPUs in turn (a machine's GPUs sit on distinct buses).
_pci_buses = itertools.cycle(range(0x03, 0x100))

_NO_DRIVER_MESSAGE = (
    "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and "
    "installed a driver from http://www.nvidia.com/Download/index.aspx"
)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _format_size(nbytes: int) -> str:
    if nbytes >= GiB:
        return f"{nbytes / GiB:.2f} GiB"
    return f"{nbytes / MiB:.2f} MiB"


# -- device descriptions --------------------------------------------------------------------------

# Compute capability → (name, SMs, torch-visible memory, L2) of a representative NVIDIA part.
_NVIDIA_PARTS: dict[tuple[int, int], tuple[str, int, int, int]] = {
    (7, 0): ("Tesla V100-SXM2-32GB", 80, 32_494 * MiB, 6 * MiB),
    (7, 5): ("Tesla T4", 40, 14_930 * MiB, 4 * MiB),
    (8, 0): ("NVIDIA A100-SXM4-80GB", 108, 81_050 * MiB, 40 * MiB),
    (8, 6): ("NVIDIA RTX A6000", 84, 48_570 * MiB, 6 * MiB),
    (8, 9): ("NVIDIA L4", 58, 22_478 * MiB, 48 * MiB),
    (9, 0): ("NVIDIA H100 80GB HBM3", 132, 81_080 * MiB, 50 * MiB),
    (10, 0): ("NVIDIA B200", 148, 182_642 * MiB, 126 * MiB),
}

# gfx target → (name, compute units, memory, L2, HIP major.minor, full gcnArchName).
_AMD_PARTS: dict[str, tuple[str, int, int, int, tuple[int, int], str]] = {
    "gfx90a": (
        "AMD Instinct MI250X/MI250",
        110,
        64 * GiB,
        8 * MiB,
        (9, 0),
        "gfx90a:sramecc+:xnack-",
    ),
    "gfx942": ("AMD Instinct MI300X", 304, 192 * GiB, 4 * MiB, (9, 4), "gfx942:sramecc+:xnack-"),
    "gfx950": ("AMD Instinct MI355X", 256, 288 * GiB, 4 * MiB, (9, 5), "gfx950:sramecc+:xnack-"),
    "gfx1100": ("AMD Radeon RX 7900 XTX", 48, 24 * GiB, 6 * MiB, (11, 0), "gfx1100"),
}


@dataclass(eq=False)
class FakeCudaDevice:
    """One fake GPU or MIG instance: what torch and NVML say about it. Sizes are in bytes.

    `total_memory` is what torch reports (and `cudaMemGetInfo`'s total); NVML's total adds
    `driver_reserved_bytes`. `context_bytes` appear on the device once CUDA uses it, and
    `other_processes_bytes` are held by other processes: NVML counts both, torch's allocator not.
    """

    name: str = "NVIDIA H100 80GB HBM3"
    total_memory: int = 81_080 * MiB
    major: int = 9
    minor: int = 0
    multi_processor_count: int = 132
    #: The bare UUID torch reports ("" → a fresh one).
    uuid: str = ""
    #: ROCm only: e.g. "gfx90a:sramecc+:xnack-".
    gcn_arch_name: str | None = None
    l2_cache_size: int = 50 * MiB
    is_integrated: bool = False
    warp_size: int = 32
    driver_reserved_bytes: int = 479 * MiB
    context_bytes: int = 512 * MiB
    other_processes_bytes: int = 0
    #: What the board draws when the test starts, in mW (NVML's unit); change it with
    #: `FakeNVML.set_power_mw`, which keeps the energy counter's integral right.
    power_mw: int = 70_000
    #: How often NVML's total-energy counter advances (boards differ: ~20-100 ms).
    energy_update_period_s: float = 0.1
    #: The GPU's MIG instances (each a `FakeCudaDevice` with instance ids); empty: MIG off.
    mig_devices: list[FakeCudaDevice] = field(default_factory=list)
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    parent: FakeCudaDevice | None = field(default=None, repr=False)
    #: The PCI bus the board sits on (torch's ``pci_bus_id``; AMD SMI's address); 0: assigned.
    pci_bus_id: int = 0

    def __post_init__(self) -> None:
        if not self.pci_bus_id:
            self.pci_bus_id = next(_pci_buses)
        if not self.uuid:  # unique in the process, and the same in a rerun of the same tests
            self.uuid = str(uuid_module.uuid5(_UUID_NAMESPACE, f"device-{next(_device_numbers)}"))

    @classmethod
    def nvidia(cls, capability: tuple[int, int] = (9, 0), **overrides: Any) -> FakeCudaDevice:
        """A representative NVIDIA GPU of compute `capability` (e.g. (8, 0) is an A100)."""
        name, sms, memory, l2 = _NVIDIA_PARTS.get(
            capability,
            (f"Fake NVIDIA GPU sm_{capability[0]}{capability[1]}", 64, 16 * GiB, 4 * MiB),
        )
        spec: dict[str, Any] = {
            "name": name,
            "total_memory": memory,
            "major": capability[0],
            "minor": capability[1],
            "multi_processor_count": sms,
            "l2_cache_size": l2,
        }
        spec.update(overrides)
        return cls(**spec)

    @classmethod
    def amd(cls, arch: str = "gfx90a", **overrides: Any) -> FakeCudaDevice:
        """A representative AMD GPU for LLVM target `arch` (e.g. "gfx942" is an MI300X)."""
        name, cus, memory, l2, (major, minor), full_arch = _AMD_PARTS.get(
            arch, (f"Fake AMD GPU {arch}", 64, 16 * GiB, 4 * MiB, (9, 0), arch)
        )
        spec: dict[str, Any] = {
            "name": name,
            "total_memory": memory,
            "major": major,
            "minor": minor,
            "multi_processor_count": cus,
            "l2_cache_size": l2,
            "gcn_arch_name": full_arch,
            "warp_size": 32 if arch.startswith(("gfx10", "gfx11", "gfx12")) else 64,
            "driver_reserved_bytes": 0,
        }
        spec.update(overrides)
        return cls(**spec)

    def with_mig(self, *profiles: tuple[str, int, int]) -> FakeCudaDevice:
        """Enable MIG with instances (profile like "1g.10gb", memory bytes, SMs); returns self."""
        for slot, (profile, memory, sms) in enumerate(profiles):
            self.mig_devices.append(
                FakeCudaDevice(
                    name=f"{self.name} MIG {profile}",
                    total_memory=memory,
                    major=self.major,
                    minor=self.minor,
                    multi_processor_count=sms,
                    l2_cache_size=self.l2_cache_size,
                    driver_reserved_bytes=0,
                    context_bytes=self.context_bytes,
                    gpu_instance_id=slot + 1,
                    compute_instance_id=0,
                    parent=self,
                )
            )
        return self

    @property
    def is_mig(self) -> bool:
        """Whether this is a MIG instance rather than a whole GPU."""
        return self.parent is not None

    @property
    def nvml_uuid(self) -> str:
        """The UUID as NVML and CUDA_VISIBLE_DEVICES write it ("GPU-..." or "MIG-...")."""
        return f"{'MIG' if self.is_mig else 'GPU'}-{self.uuid}"


def _one_mig_instance(units: list[FakeCudaDevice]) -> list[FakeCudaDevice]:
    """`units` as CUDA enumerates them: whole GPUs, and only the first MIG instance.

    CUDA (11 and 12, R450 to R525+) lets one process enumerate a single MIG device, however
    many CUDA_VISIBLE_DEVICES names; using several takes a process each.
    """
    first_mig = next((unit for unit in units if unit.is_mig), None)
    return [unit for unit in units if not unit.is_mig or unit is first_mig]


class FakeCudaUUID:
    """What torch's device-properties `uuid` is: `str()` gives the bare UUID, `bytes` the raw 16."""

    __slots__ = ("_value",)

    def __init__(self, text: str) -> None:
        self._value = uuid_module.UUID(text)

    @property
    def bytes(self) -> bytes:
        """The 16 raw bytes."""
        return self._value.bytes

    def __str__(self) -> str:
        return str(self._value)

    def __repr__(self) -> str:
        return str(self._value)


class FakeCudaDeviceProperties:
    """The object `torch.cuda.get_device_properties` returns, with torch's attribute names."""

    def __init__(self, device: FakeCudaDevice, *, hip: bool, expose_uuid: bool) -> None:
        self.name = device.name
        self.major = device.major
        self.minor = device.minor
        self.total_memory = device.total_memory
        self.multi_processor_count = device.multi_processor_count
        self.is_integrated = int(device.is_integrated)
        self.is_multi_gpu_board = 0
        self.max_threads_per_multi_processor = 2048
        self.warp_size = device.warp_size
        self.L2_cache_size = device.l2_cache_size
        # The board's PCI address, as torch reports cudaDeviceProp's (a MIG instance: its GPU's).
        self.pci_domain_id = 0
        self.pci_bus_id = (device.parent or device).pci_bus_id
        self.pci_device_id = 0
        if expose_uuid:  # torch before 2.0 had no uuid
            self.uuid = FakeCudaUUID(device.uuid)
        if hip:  # only ROCm builds expose the LLVM target
            self.gcnArchName = device.gcn_arch_name or "gfx90a"

    def __repr__(self) -> str:
        return (
            f"_CudaDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
            f"total_memory={self.total_memory // MiB}MB, "
            f"multi_processor_count={self.multi_processor_count}, "
            f"L2_cache_size={self.L2_cache_size // MiB}MB)"
        )


# -- the caching allocator ------------------------------------------------------------------------

_STAT_NAMES = (
    "active",
    "active_bytes",
    "allocated_bytes",
    "allocation",
    "inactive_split",
    "inactive_split_bytes",
    "requested_bytes",
    "reserved_bytes",
    "segment",
)
_POOLS = ("all", "large_pool", "small_pool")


class _Stat:
    """One allocator statistic: current and peak values, and the totals added and removed."""

    __slots__ = ("allocated", "current", "freed", "peak")

    def __init__(self) -> None:
        self.current = self.peak = self.allocated = self.freed = 0

    def add(self, amount: int) -> None:
        self.current += amount
        self.allocated += amount
        self.peak = max(self.peak, self.current)

    def remove(self, amount: int) -> None:
        self.current -= amount
        self.freed += amount


@dataclass(eq=False)
class _Segment:
    """Memory the allocator got from the driver (cudaMalloc); blocks are carved out of it."""

    pool: str
    size: int
    used: int = 0


@dataclass(eq=False)
class FakeAllocation:
    """A live block from the fake caching allocator: what a tensor's storage would hold."""

    index: int
    requested_bytes: int
    #: Bytes `memory_allocated` counts: the request rounded up to 512.
    size: int
    pool: str
    segment: _Segment | None = field(repr=False)
    freed: bool = False


class _DeviceAllocator:
    """One device's caching allocator: segments, blocks and torch's statistics about them.

    Free space in a segment is treated as one piece (no fragmentation).
    """

    def __init__(self) -> None:
        self.stats = {(name, pool): _Stat() for name in _STAT_NAMES for pool in _POOLS}
        self.segments: list[_Segment] = []
        self.counters = dict.fromkeys(
            (
                "num_alloc_retries",
                "num_device_alloc",
                "num_device_free",
                "num_ooms",
                "num_sync_all_streams",
            ),
            0,
        )

    def _change(self, name: str, pool: str, amount: int) -> None:
        for key in ((name, "all"), (name, pool)):
            if amount >= 0:
                self.stats[key].add(amount)
            else:
                self.stats[key].remove(-amount)

    @property
    def allocated(self) -> int:
        return self.stats[("allocated_bytes", "all")].current

    @property
    def reserved(self) -> int:
        return self.stats[("reserved_bytes", "all")].current

    def find_segment(self, pool: str, size: int) -> _Segment | None:
        fitting = [s for s in self.segments if s.pool == pool and s.size - s.used >= size]
        return min(fitting, key=lambda s: s.size - s.used) if fitting else None

    def add_segment(self, pool: str, size: int) -> _Segment:
        segment = _Segment(pool, size)
        self.segments.append(segment)
        self.counters["num_device_alloc"] += 1
        self._change("segment", pool, 1)
        self._change("reserved_bytes", pool, size)
        return segment

    def take(self, segment: _Segment, size: int, requested: int) -> None:
        segment.used += size
        for name, amount in (
            ("allocated_bytes", size),
            ("active_bytes", size),
            ("requested_bytes", requested),
            ("allocation", 1),
            ("active", 1),
        ):
            self._change(name, segment.pool, amount)

    def give_back(self, segment: _Segment, size: int, requested: int) -> None:
        segment.used -= size
        for name, amount in (
            ("allocated_bytes", size),
            ("active_bytes", size),
            ("requested_bytes", requested),
            ("allocation", 1),
            ("active", 1),
        ):
            self._change(name, segment.pool, -amount)

    def release_cached(self) -> int:
        """Return wholly free segments to the driver (empty_cache); the bytes released."""
        released = 0
        for segment in [s for s in self.segments if s.used == 0]:
            self.segments.remove(segment)
            self.counters["num_device_free"] += 1
            self._change("segment", segment.pool, -1)
            self._change("reserved_bytes", segment.pool, -segment.size)
            released += segment.size
        return released

    def reset_peaks(self) -> None:
        for stat in self.stats.values():
            stat.peak = stat.current

    def reset_accumulated(self) -> None:
        for stat in self.stats.values():
            stat.allocated = stat.freed = 0
        self.counters["num_alloc_retries"] = self.counters["num_ooms"] = 0

    def as_stats(self) -> dict[str, int]:
        flat: dict[str, int] = dict(self.counters)
        for (name, pool), stat in self.stats.items():
            for kind in ("current", "peak", "allocated", "freed"):
                flat[f"{name}.{pool}.{kind}"] = getattr(stat, kind)
        for name in ("oversize_allocations", "oversize_segments"):
            for kind in ("current", "peak", "allocated", "freed"):
                flat[f"{name}.{kind}"] = 0
        flat["max_split_size"] = -1
        return flat


# -- FakeCuda -------------------------------------------------------------------------------------

# The functions FakeCuda puts in `torch.cuda`; those marked True also live in torch.cuda.memory.
_TORCH_CUDA_FUNCTIONS: dict[str, bool] = {
    "is_available": False,
    "device_count": False,
    "current_device": False,
    "set_device": False,
    "init": False,
    "is_initialized": False,
    "get_device_properties": False,
    "get_device_capability": False,
    "get_device_name": False,
    "is_bf16_supported": False,
    "synchronize": False,
    "mem_get_info": True,
    "memory_stats": True,
    "memory_allocated": True,
    "memory_reserved": True,
    "max_memory_allocated": True,
    "max_memory_reserved": True,
    "reset_accumulated_memory_stats": True,
    "empty_cache": True,
}
# Present only in some torch versions, or private: patched only where torch has them.
_OPTIONAL_FUNCTIONS = (
    "is_tf32_supported",
    "_lazy_init",
    "_exchange_device",
    "_maybe_exchange_device",
)


class FakeCuda:
    """Makes torch look like a CUDA build (or ROCm, with ``hip=True``) with `count` devices.

    Create it, then `install(monkeypatch)` (or use `fake_cuda`). Devices default to H100s (or
    MI250X GCDs on ROCm); pass `capability`, `arch`, `name`, `total_memory` for all devices, or
    `devices` for a mixed machine. CUDA_VISIBLE_DEVICES (HIP_VISIBLE_DEVICES on ROCm) is read
    when the fake is created, as the runtime reads it once per process; `visible` overrides it.
    Like torch, CUDA initializes lazily: allocator counters read as empty and peaks cannot be
    reset until something (properties, current_device, an allocation) initializes it.
    """

    def __init__(
        self,
        count: int = 1,
        *,
        hip: bool = False,
        devices: Sequence[FakeCudaDevice] | None = None,
        capability: tuple[int, int] | None = None,
        arch: str | None = None,
        name: str | None = None,
        total_memory: int | None = None,
        cuda_version: str = "12.4",
        hip_version: str = "6.2.41133-dd7f95766",
        available: bool = True,
        peak_reset: bool = True,
        expose_uuid: bool = True,
        initialized: bool = False,
        visible: Sequence[int | str] | None = None,
    ) -> None:
        self.hip = hip
        self.cuda_version = cuda_version
        self.hip_version = hip_version
        self.available = available
        self.peak_reset = peak_reset
        self.expose_uuid = expose_uuid
        if devices is None:
            overrides: dict[str, Any] = {}
            if name is not None:
                overrides["name"] = name
            if total_memory is not None:
                overrides["total_memory"] = total_memory
            if hip:
                devices = [FakeCudaDevice.amd(arch or "gfx90a", **overrides) for _ in range(count)]
            else:
                devices = [
                    FakeCudaDevice.nvidia(capability or (9, 0), **overrides) for _ in range(count)
                ]
        #: Every physical GPU of the fake machine, in NVML (PCI bus) order.
        self.gpus: list[FakeCudaDevice] = list(devices)
        for gpu in self.gpus:
            for mig in gpu.mig_devices:
                mig.parent = gpu
        #: The devices torch sees, in torch index order (after CUDA_VISIBLE_DEVICES).
        self.devices: list[FakeCudaDevice] = self._resolve_visible(visible)
        self._properties = [
            FakeCudaDeviceProperties(d, hip=hip, expose_uuid=expose_uuid) for d in self.devices
        ]
        self._allocators = [_DeviceAllocator() for _ in self.devices]
        self._contexts: set[int] = set()
        self._current = 0
        self._initialized = initialized and available and bool(self.devices)
        self._lock = threading.RLock()
        #: Every `torch.cuda.synchronize` argument, in order.
        self.synchronize_calls: list[Device] = []
        #: The `FakeNVML` installed with this machine, if any.
        self.nvml: FakeNVML | None = None
        #: The `FakeAmdSmi` a ROCm machine got from `fake_rocm(..., amdsmi=True)`, if any.
        self.amdsmi: Any = None

    # -- visibility -------------------------------------------------------------------------------

    def _resolve_visible(self, visible: Sequence[int | str] | None) -> list[FakeCudaDevice]:
        from pytest_hwbench.hardware._nvml import parse_cuda_visible_devices

        entries: Sequence[int | str] | None = visible
        if entries is None:
            names = (
                ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")
                if self.hip
                else ("CUDA_VISIBLE_DEVICES",)
            )
            value = next((os.environ[n] for n in names if n in os.environ), None)
            entries = parse_cuda_visible_devices(value)
        if entries is None:  # the runtime shows the first MIG instance of a MIG-enabled GPU
            return _one_mig_instance(
                [gpu.mig_devices[0] if gpu.mig_devices else gpu for gpu in self.gpus]
            )
        chosen: list[FakeCudaDevice] = []
        for entry in entries:
            unit = self._find_unit(entry)
            if unit is None:  # the first unknown entry ends the list, as in CUDA
                break
            if unit in chosen:
                return []
            chosen.append(unit)
        return _one_mig_instance(chosen)

    def _find_unit(self, entry: int | str) -> FakeCudaDevice | None:
        if isinstance(entry, int):
            if not 0 <= entry < len(self.gpus):
                return None
            gpu = self.gpus[entry]
            return gpu.mig_devices[0] if gpu.mig_devices else gpu
        if entry.startswith("MIG-GPU-"):  # CUDA 11.0 form: MIG-GPU-<uuid>/<gi>/<ci>
            parent, _, instance = entry.removeprefix("MIG-").partition("/")
            for gpu in self.gpus:
                for mig in gpu.mig_devices:
                    ids = f"{mig.gpu_instance_id}/{mig.compute_instance_id}"
                    if gpu.nvml_uuid.startswith(parent) and ids == instance:
                        return mig
            return None
        units = [u for g in self.gpus for u in (g, *g.mig_devices)]
        matches = [u for u in units if u.nvml_uuid.startswith(entry)]
        return matches[0] if len(matches) == 1 else None

    # -- installation -----------------------------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
        """Patch torch until `monkeypatch` undoes it; hwbench's cached detection restarts too."""
        import torch

        from pytest_hwbench.hardware import _nvml
        from pytest_hwbench.hardware import registry as registry_module

        monkeypatch.setattr(torch.version, "cuda", None if self.hip else self.cuda_version)
        monkeypatch.setattr(torch.version, "hip", self.hip_version if self.hip else None)
        for function, also_in_memory in _TORCH_CUDA_FUNCTIONS.items():
            monkeypatch.setattr(torch.cuda, function, getattr(self, function))
            if also_in_memory:
                monkeypatch.setattr(torch.cuda.memory, function, getattr(self, function))
        reset = self.reset_peak_memory_stats if self.peak_reset else self._reset_unsupported
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
        monkeypatch.setattr(torch.cuda.memory, "reset_peak_memory_stats", reset)
        for function in _OPTIONAL_FUNCTIONS:
            if hasattr(torch.cuda, function):
                monkeypatch.setattr(torch.cuda, function, getattr(self, function))
        # Detection is cached per process: start from scratch now, restore the old cache later.
        monkeypatch.setattr(registry_module.DEFAULT, "value", None)
        monkeypatch.setattr(_nvml, "_state", None)
        return self

    # -- index handling, as torch.cuda._utils._get_device_index ---------------------------------

    def _index(self, device: Device) -> int:
        import torch

        if isinstance(device, int):
            return device
        if isinstance(device, str):
            device = torch.device(device)
        if isinstance(device, torch.device):
            if device.type != "cuda":
                raise ValueError(f"Expected a cuda device, but got: {device}")
            return device.index if device.index is not None else self.current_device()
        if device is None:
            return self.current_device()
        raise ValueError(
            f"Expected a torch.device with a specified index or an integer, but got:{device}"
        )

    def _check_ordinal(self, index: int) -> None:
        if not 0 <= index < len(self.devices):
            runtime = "HIP" if self.hip else "CUDA"
            raise RuntimeError(f"{runtime} error: invalid device ordinal")

    def _check_allocator(self, index: int) -> None:
        # Before CUDA initializes, the allocator has no devices at all.
        if not self._initialized or not 0 <= index < len(self.devices):
            raise RuntimeError(f"Invalid device argument {index}: did you call init?")

    # -- torch.cuda: runtime --------------------------------------------------------------------

    def is_available(self) -> bool:
        """As `torch.cuda.is_available`."""
        return self.available and bool(self.devices)

    def device_count(self) -> int:
        """As `torch.cuda.device_count`."""
        return len(self.devices) if self.available else 0

    def _lazy_init(self) -> None:
        if self._initialized:
            return
        if not self.available:
            raise RuntimeError(_NO_DRIVER_MESSAGE)
        if not self.devices:
            raise RuntimeError("No CUDA GPUs are available")
        self._initialized = True

    def init(self) -> None:
        """As `torch.cuda.init`: initialize CUDA now."""
        self._lazy_init()

    def is_initialized(self) -> bool:
        """As `torch.cuda.is_initialized`."""
        return self._initialized

    def current_device(self) -> int:
        """As `torch.cuda.current_device` (initializes CUDA)."""
        self._lazy_init()
        return self._current

    def set_device(self, device: Device) -> None:
        """As `torch.cuda.set_device`; a negative index does nothing."""
        index = self._index(device)
        if index < 0:
            return
        self._lazy_init()
        self._check_ordinal(index)
        self._current = index
        self._contexts.add(index)

    def _exchange_device(self, device: int) -> int:
        if device < 0:
            return -1
        previous = self.current_device()
        self.set_device(device)
        return previous

    def _maybe_exchange_device(self, device: int) -> int:
        if device < 0:
            return -1
        return self._exchange_device(device)

    def get_device_properties(self, device: Device = None) -> FakeCudaDeviceProperties:
        """As `torch.cuda.get_device_properties` (initializes CUDA)."""
        self._lazy_init()
        index = self._index(device)
        if index < 0 or index >= self.device_count():
            raise AssertionError("Invalid device id")
        return self._properties[index]

    def get_device_capability(self, device: Device = None) -> tuple[int, int]:
        """As `torch.cuda.get_device_capability`."""
        props = self.get_device_properties(device)
        return props.major, props.minor

    def get_device_name(self, device: Device = None) -> str:
        """As `torch.cuda.get_device_name`."""
        return self.get_device_properties(device).name

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        """As `torch.cuda.is_bf16_supported`: about the current device only."""
        if self.hip:
            return True
        if not self.is_available():
            return False
        if self.get_device_properties(self.current_device()).major >= 8:
            return True
        # Older GPUs run bfloat16 by emulation, which torch counts unless told not to.
        return including_emulation

    def is_tf32_supported(self) -> bool:
        """As `torch.cuda.is_tf32_supported`: about the current device only."""
        if self.hip:
            arch = getattr(self.get_device_properties(), "gcnArchName", "")
            return any(prefix in arch for prefix in ("gfx94", "gfx95"))
        return self.is_bf16_supported(including_emulation=False)

    def synchronize(self, device: Device = None) -> None:
        """As `torch.cuda.synchronize`; records the argument in `synchronize_calls`."""
        self._lazy_init()
        index = self._index(device)
        if index >= 0:
            self._check_ordinal(index)
            self._contexts.add(index)
        self.synchronize_calls.append(device)

    def mem_get_info(self, device: Device = None) -> tuple[int, int]:
        """As `torch.cuda.mem_get_info`: (free, total) bytes of the whole device."""
        self._lazy_init()
        index = self._index(device)
        self._check_ordinal(index)
        with self._lock:
            self._contexts.add(index)
            unit = self.devices[index]
            return unit.total_memory - self.device_used_bytes(unit), unit.total_memory

    # -- torch.cuda: allocator counters ---------------------------------------------------------

    def memory_stats(self, device: Device = None) -> dict[str, int]:
        """As `torch.cuda.memory_stats`: empty until CUDA initializes, then torch's flat keys."""
        if not self._initialized:
            return collections.OrderedDict()
        index = self._index(device)
        self._check_allocator(index)
        with self._lock:
            return collections.OrderedDict(sorted(self._allocators[index].as_stats().items()))

    def memory_allocated(self, device: Device = None) -> int:
        """As `torch.cuda.memory_allocated`: bytes in live blocks."""
        return self.memory_stats(device).get("allocated_bytes.all.current", 0)

    def max_memory_allocated(self, device: Device = None) -> int:
        """As `torch.cuda.max_memory_allocated`: peak since start or the last reset."""
        return self.memory_stats(device).get("allocated_bytes.all.peak", 0)

    def memory_reserved(self, device: Device = None) -> int:
        """As `torch.cuda.memory_reserved`: bytes in segments the allocator holds."""
        return self.memory_stats(device).get("reserved_bytes.all.current", 0)

    def max_memory_reserved(self, device: Device = None) -> int:
        """As `torch.cuda.max_memory_reserved`."""
        return self.memory_stats(device).get("reserved_bytes.all.peak", 0)

    def reset_peak_memory_stats(self, device: Device = None) -> None:
        """As `torch.cuda.reset_peak_memory_stats`: peaks of that device only become current."""
        index = self._index(device)
        self._check_allocator(index)
        with self._lock:
            self._allocators[index].reset_peaks()

    def _reset_unsupported(self, device: Device = None) -> None:
        # What a torch build without the CUDA allocator bindings raises.
        raise AttributeError("module 'torch._C' has no attribute '_cuda_resetPeakMemoryStats'")

    def reset_accumulated_memory_stats(self, device: Device = None) -> None:
        """As `torch.cuda.reset_accumulated_memory_stats`."""
        index = self._index(device)
        self._check_allocator(index)
        with self._lock:
            self._allocators[index].reset_accumulated()

    def empty_cache(self) -> None:
        """As `torch.cuda.empty_cache`: return wholly free segments of every device."""
        if not self._initialized:
            return
        with self._lock:
            for allocator in self._allocators:
                allocator.release_cached()

    # -- moving the counters ----------------------------------------------------------------------

    def allocate(self, device: Device, nbytes: int) -> FakeAllocation:
        """Allocate `nbytes` on `device` as a tensor would; raises torch's OOM when it can't fit."""
        import torch

        if nbytes < 0:
            raise ValueError(f"cannot allocate a negative size: {nbytes}")
        index = self._index(device)
        self._lazy_init()
        self._check_ordinal(index)
        with self._lock:
            self._contexts.add(index)
            if nbytes == 0:  # torch allocates nothing for an empty tensor
                return FakeAllocation(index, 0, 0, "small_pool", None)
            allocator = self._allocators[index]
            size = _round_up(nbytes, _MIN_BLOCK_SIZE)
            pool = "small_pool" if size <= _SMALL_SIZE else "large_pool"
            segment = allocator.find_segment(pool, size)
            if segment is None:
                if pool == "small_pool":
                    segment_size = _SMALL_BUFFER
                elif size < _MIN_LARGE_ALLOC:
                    segment_size = _LARGE_BUFFER
                else:
                    segment_size = _round_up(size, _ROUND_LARGE)
                unit = self.devices[index]
                if segment_size > unit.total_memory - self.device_used_bytes(unit):
                    # torch frees its cache and retries before giving up
                    allocator.counters["num_alloc_retries"] += 1
                    allocator.release_cached()
                if segment_size > unit.total_memory - self.device_used_bytes(unit):
                    allocator.counters["num_ooms"] += 1
                    raise torch.cuda.OutOfMemoryError(self._oom_message(index, nbytes))
                segment = allocator.add_segment(pool, segment_size)
            allocator.take(segment, size, nbytes)
            return FakeAllocation(index, nbytes, size, pool, segment)

    def free(self, allocation: FakeAllocation) -> None:
        """Free a block: allocated bytes drop, reserved bytes stay until `empty_cache`."""
        with self._lock:
            if allocation.freed:
                raise ValueError(f"{allocation!r} was already freed")
            allocation.freed = True
            if allocation.segment is not None:
                self._allocators[allocation.index].give_back(
                    allocation.segment, allocation.size, allocation.requested_bytes
                )

    def _oom_message(self, index: int, nbytes: int) -> str:
        unit = self.devices[index]
        allocator = self._allocators[index]
        free = unit.total_memory - self.device_used_bytes(unit)
        runtime = "HIP" if self.hip else "CUDA"
        return (
            f"{runtime} out of memory. Tried to allocate {_format_size(nbytes)}. GPU {index} has a "
            f"total capacity of {_format_size(unit.total_memory)} of which {_format_size(free)} "
            f"is free. Of the allocated memory {_format_size(allocator.allocated)} is allocated "
            f"by PyTorch, and {_format_size(allocator.reserved - allocator.allocated)} is "
            "reserved by PyTorch but unallocated."
        )

    # -- what the driver sees ---------------------------------------------------------------------

    def device_used_bytes(self, unit: FakeCudaDevice) -> int:
        """Bytes in use on `unit` as the driver sees them: others, our context, our reserved."""
        with self._lock:
            used = unit.other_processes_bytes
            if unit in self.devices:
                index = self.devices.index(unit)
                if index in self._contexts:
                    used += unit.context_bytes
                used += self._allocators[index].reserved
            for mig in unit.mig_devices:
                used += self.device_used_bytes(mig)
            return used


# -- NVML -----------------------------------------------------------------------------------------

# nvidia-ml-py's error codes (pynvml.NVML_ERROR_*).
_NVML_ERROR_CODES: dict[str, int] = {
    "UNINITIALIZED": 1,
    "INVALID_ARGUMENT": 2,
    "NOT_SUPPORTED": 3,
    "NO_PERMISSION": 4,
    "ALREADY_INITIALIZED": 5,
    "NOT_FOUND": 6,
    "INSUFFICIENT_SIZE": 7,
    "INSUFFICIENT_POWER": 8,
    "DRIVER_NOT_LOADED": 9,
    "TIMEOUT": 10,
    "IRQ_ISSUE": 11,
    "LIBRARY_NOT_FOUND": 12,
    "FUNCTION_NOT_FOUND": 13,
    "CORRUPTED_INFOROM": 14,
    "GPU_IS_LOST": 15,
    "RESET_REQUIRED": 16,
    "OPERATING_SYSTEM": 17,
    "LIB_RM_VERSION_MISMATCH": 18,
    "IN_USE": 19,
    "MEMORY": 20,
    "NO_DATA": 21,
    "VGPU_ECC_NOT_SUPPORTED": 22,
    "INSUFFICIENT_RESOURCES": 23,
    "FREQ_NOT_SUPPORTED": 24,
    "ARGUMENT_VERSION_MISMATCH": 25,
    "DEPRECATED": 26,
    "NOT_READY": 27,
    "GPU_NOT_FOUND": 28,
    "INVALID_STATE": 29,
    "RESET_TYPE_NOT_SUPPORTED": 30,
    "UNKNOWN": 999,
}
_NVML_ERROR_STRINGS: dict[int, str] = {
    1: "Uninitialized",
    2: "Invalid Argument",
    3: "Not Supported",
    4: "Insufficient Permissions",
    5: "Already Initialized",
    6: "Not Found",
    7: "Insufficient Size",
    8: "Insufficient External Power",
    9: "Driver Not Loaded",
    10: "Timeout",
    11: "Interrupt Request Issue",
    12: "NVML Shared Library Not Found",
    13: "Function Not Found",
    14: "Corrupted infoROM",
    15: "GPU is lost",
    16: "GPU requires restart",
    17: "The operating system has blocked the request.",
    18: "RM has detected an NVML/RM version mismatch.",
    20: "Insufficient Memory",
    25: "Argument version mismatch",
    999: "Unknown Error",
}
_NVML_MEMORY_V2 = 0x02000028  # pynvml.nvmlMemory_v2


class NVMLError(Exception):
    """pynvml's error: ``NVMLError(code)`` builds that code's subclass; `value` is the code."""

    _by_code: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, NVMLError)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _NVML_ERROR_STRINGS.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


def _make_error_class(code_name: str, code: int) -> type[NVMLError]:
    # pynvml names them NVMLError_<CapWords of the code name>, e.g. NVMLError_LibraryNotFound.
    class_name = "NVMLError_" + string.capwords(code_name, "_").replace("_", "")

    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, code)

    error_class = cast(
        "type[NVMLError]", type(class_name, (NVMLError,), {"__new__": new, "__module__": "pynvml"})
    )
    NVMLError._by_code[code] = error_class
    return error_class


_NVML_ERROR_CLASSES = {
    name: _make_error_class(name, code) for name, code in _NVML_ERROR_CODES.items()
}


class FakeNVMLHandle:
    """An opaque NVML device handle (pynvml's `c_nvmlDevice_t`)."""

    __slots__ = ("device",)

    def __init__(self, device: FakeCudaDevice) -> None:
        self.device = device

    def __repr__(self) -> str:
        return f"<FakeNVMLHandle {self.device.nvml_uuid}>"


@dataclass
class _Memory:
    """pynvml's `c_nvmlMemory_t`: bytes."""

    total: int
    free: int
    used: int


@dataclass
class _MemoryV2:
    """pynvml's `c_nvmlMemory_v2_t`: bytes, with the driver's own reservation apart."""

    version: int
    total: int
    reserved: int
    free: int
    used: int


@dataclass
class _ProcessInfo:
    """pynvml's `c_nvmlProcessInfo_t`."""

    pid: int
    usedGpuMemory: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


class _EnergyMeter:
    """A board's energy as NVML counts it: the integral of its power, seen in update steps.

    The counter (mJ since the driver loaded) shows the integral as of its last update, which
    comes every `period_s`: a window shorter than that reads 0 or a whole step, as on a GPU.
    """

    def __init__(self, power_mw: int, period_s: float, now: float, base_mj: int) -> None:
        self.period_s = period_s
        self.start = now
        self.base_mj = base_mj
        #: (since when, mW): the power the board drew from each time on.
        self.steps: list[tuple[float, int]] = [(now, power_mw)]

    def set_power(self, now: float, power_mw: int) -> None:
        self.steps.append((now, power_mw))

    def power_mw(self) -> int:
        return self.steps[-1][1]

    def _integral_mj(self, until: float) -> float:
        total = 0.0
        for (since, power), (next_since, _) in zip(
            self.steps, [*self.steps[1:], (until, 0)], strict=True
        ):
            end = min(next_since, until)
            if end > since:
                total += power * (end - since)  # mW x s = mJ
        return total

    def counter_mj(self, now: float) -> int:
        # The epsilon: a clock exactly on an update's time sees it despite float rounding.
        updates = int((now - self.start) / self.period_s + 1e-9)
        return self.base_mj + int(self._integral_mj(self.start + updates * self.period_s))


class FakeNVML(types.ModuleType):
    """Stands in for nvidia-ml-py's `pynvml` module; install it in ``sys.modules["pynvml"]``.

    Its GPUs are `cuda`'s physical GPUs (memory follows that fake's allocator) or `devices`.
    `init_error` (an NVML_ERROR_* code) makes `nvmlInit` fail as on a machine without the library
    (12) or driver (9). `memory_v2=False` mimics a driver older than the v2 memory call;
    `processes_visible=False` (the default) mimics a container, where NVML lists no processes.
    """

    nvmlMemory_v2 = _NVML_MEMORY_V2
    NVML_SUCCESS = 0

    def __init__(
        self,
        cuda: FakeCuda | None = None,
        *,
        devices: Iterable[FakeCudaDevice] | None = None,
        driver_version: str = "550.54.15",
        cuda_driver_version: int = 12040,
        init_error: int | None = None,
        memory_v2: bool = True,
        processes_visible: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("pynvml", "Fake nvidia-ml-py for tests (pytest_hwbench.testing).")
        self.NVMLError = NVMLError
        for code_name, code in _NVML_ERROR_CODES.items():
            setattr(self, f"NVML_ERROR_{code_name}", code)
            setattr(self, _NVML_ERROR_CLASSES[code_name].__name__, _NVML_ERROR_CLASSES[code_name])
        self.cuda = cuda
        if cuda is not None:
            self.gpus = list(cuda.gpus)
        else:
            self.gpus = list(devices) if devices is not None else [FakeCudaDevice()]
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.memory_v2 = memory_v2
        self.processes_visible = processes_visible
        #: How many times `nvmlInit` / `nvmlInitWithFlags` / `nvmlShutdown` were called.
        self.init_calls = 0
        self.shutdown_calls = 0
        self._refcount = 0
        self._handles: dict[int, FakeNVMLHandle] = {}
        #: Seconds, for the energy counters (a test may pass a clock it advances by hand).
        self.clock = clock
        self._meters: dict[int, _EnergyMeter] = {}

    # -- library lifetime -------------------------------------------------------------------------

    def nvmlInitWithFlags(self, flags: int) -> None:
        """Initialize NVML, or raise `init_error`."""
        self.init_calls += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self._refcount += 1

    def nvmlInit(self) -> None:
        """Initialize NVML, or raise `init_error`."""
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self) -> None:
        """Release one initialization."""
        self._require_init()
        self.shutdown_calls += 1
        self._refcount -= 1

    def nvmlErrorString(self, result: int) -> str:
        """The text of an error code."""
        return _NVML_ERROR_STRINGS.get(result, "Unknown Error")

    def nvmlExceptionClass(self, nvmlErrorCode: int) -> type[NVMLError]:
        """The NVMLError subclass for `nvmlErrorCode`."""
        if nvmlErrorCode not in NVMLError._by_code:
            raise ValueError(f"nvmlErrorCode {nvmlErrorCode} is not valid")
        return NVMLError._by_code[nvmlErrorCode]

    def _require_init(self) -> None:
        if self._refcount <= 0:
            raise NVMLError(_NVML_ERROR_CODES["UNINITIALIZED"])

    def _handle(self, device: FakeCudaDevice) -> FakeNVMLHandle:
        return self._handles.setdefault(id(device), FakeNVMLHandle(device))

    def _device(self, handle: Any) -> FakeCudaDevice:
        self._require_init()
        if not isinstance(handle, FakeNVMLHandle):
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        return handle.device

    # -- system -----------------------------------------------------------------------------------

    def nvmlSystemGetDriverVersion(self) -> str:
        """The driver version, as str (nvidia-ml-py >= 11.515 decodes it)."""
        self._require_init()
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """The CUDA version the driver supports, e.g. 12040."""
        self._require_init()
        return self.cuda_driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        """As `nvmlSystemGetCudaDriverVersion`."""
        return self.nvmlSystemGetCudaDriverVersion()

    def nvmlSystemGetNVMLVersion(self) -> str:
        """NVML's version, e.g. "12.550.54.15"."""
        self._require_init()
        return f"{self.cuda_driver_version // 1000}.{self.driver_version}"

    # -- devices ----------------------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        """Every GPU on the machine: NVML ignores CUDA_VISIBLE_DEVICES."""
        self._require_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeNVMLHandle:
        """The handle of GPU `index` in PCI bus order."""
        self._require_init()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        return self._handle(self.gpus[index])

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeNVMLHandle:
        """The handle of the GPU or MIG device with that full UUID ("GPU-..."/"MIG-...")."""
        self._require_init()
        text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        for gpu in self.gpus:
            for unit in (gpu, *gpu.mig_devices):
                if unit.nvml_uuid == text:
                    return self._handle(unit)
        raise NVMLError(_NVML_ERROR_CODES["NOT_FOUND"])

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        """The device's UUID, "GPU-..." or "MIG-..."."""
        return self._device(handle).nvml_uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        """The device's name."""
        return self._device(handle).name

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        """The GPU's index in NVML's order (MIG handles have none)."""
        device = self._device(handle)
        if device.is_mig:
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        return self.gpus.index(device)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        """Device memory in bytes; ``version=nvmlMemory_v2`` reports the driver's share apart."""
        device = self._device(handle)
        used = self.cuda.device_used_bytes(device) if self.cuda else device.other_processes_bytes
        total = device.total_memory + device.driver_reserved_bytes
        free = max(0, total - device.driver_reserved_bytes - used)
        if not version:
            # v1 counts the driver's reservation as used.
            return _Memory(total=total, free=free, used=total - free)
        if not self.memory_v2:
            raise NVMLError(_NVML_ERROR_CODES["FUNCTION_NOT_FOUND"])
        if version != _NVML_MEMORY_V2:
            raise NVMLError(_NVML_ERROR_CODES["ARGUMENT_VERSION_MISMATCH"])
        return _MemoryV2(
            version=version,
            total=total,
            reserved=device.driver_reserved_bytes,
            free=free,
            used=used,
        )

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[_ProcessInfo]:
        """Processes using the device; empty unless `processes_visible` (containers see none)."""
        device = self._device(handle)
        if not self.processes_visible or self.cuda is None:
            return []
        used = self.cuda.device_used_bytes(device) - device.other_processes_bytes
        return [_ProcessInfo(pid=os.getpid(), usedGpuMemory=used)] if used > 0 else []

    # -- power and energy -------------------------------------------------------------------------

    def _meter(self, device: FakeCudaDevice) -> _EnergyMeter:
        meter = self._meters.get(id(device))
        if meter is None:
            # The counter counts from the driver's load, long before this process: not from 0.
            base_mj = 86_400_000 + 1_000 * self.gpus.index(device)
            meter = self._meters[id(device)] = _EnergyMeter(
                device.power_mw, device.energy_update_period_s, self.clock(), base_mj
            )
        return meter

    def set_power_mw(self, device: FakeCudaDevice, power_mw: int) -> None:
        """Make `device` draw `power_mw` from now on (a load starting or ending)."""
        self._meter(device).set_power(self.clock(), power_mw)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        """Millijoules the board used since the driver loaded, as of the counter's last update.

        Volta (compute 7.0) and later; a MIG instance has none (the GPU's counts them all).
        """
        device = self._device(handle)
        if device.is_mig or device.major < 7:
            raise NVMLError(_NVML_ERROR_CODES["NOT_SUPPORTED"])
        return self._meter(device).counter_mj(self.clock())

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        """The board's power draw in mW (a MIG instance has none)."""
        device = self._device(handle)
        if device.is_mig:
            raise NVMLError(_NVML_ERROR_CODES["NOT_SUPPORTED"])
        return self._meter(device).power_mw()

    # -- MIG --------------------------------------------------------------------------------------

    def nvmlDeviceIsMigDeviceHandle(self, device: Any) -> int:
        """1 for a MIG device device, 0 for a GPU."""
        return int(self._device(device).is_mig)

    def nvmlDeviceGetMaxMigDeviceCount(self, device: Any) -> int:
        """MIG slots on a GPU (7 with MIG on, 0 off)."""
        unit = self._device(device)
        if unit.is_mig:
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        return 7 if unit.mig_devices else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: Any, index: int) -> FakeNVMLHandle:
        """The MIG device in slot `index` of a GPU; an empty slot raises NOT_FOUND."""
        unit = self._device(device)
        if unit.is_mig or not unit.mig_devices:
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        if not 0 <= index < len(unit.mig_devices):
            raise NVMLError(_NVML_ERROR_CODES["NOT_FOUND"])
        return self._handle(unit.mig_devices[index])

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: Any) -> FakeNVMLHandle:
        """The GPU a MIG device belongs to."""
        unit = self._device(migDevice)
        if unit.parent is None:
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        return self._handle(unit.parent)

    def nvmlDeviceGetGpuInstanceId(self, device: Any) -> int:
        """A MIG device's GPU instance id."""
        unit = self._device(device)
        if unit.gpu_instance_id is None:
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        return unit.gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, device: Any) -> int:
        """A MIG device's compute instance id."""
        unit = self._device(device)
        if unit.compute_instance_id is None:
            raise NVMLError(_NVML_ERROR_CODES["INVALID_ARGUMENT"])
        return unit.compute_instance_id


# -- installing -----------------------------------------------------------------------------------


def _forget_nvml_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hwbench.hardware import _nvml

    monkeypatch.setattr(_nvml, "_state", None)


def fake_nvml(
    monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda | None = None, **options: Any
) -> FakeNVML:
    """Install a `FakeNVML` as `pynvml` (for `cuda`'s machine, if given) until undone."""
    nvml = FakeNVML(cuda, **options)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    _forget_nvml_state(monkeypatch)
    if cuda is not None:
        cuda.nvml = nvml
    return nvml


def no_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import pynvml` fail, as where nvidia-ml-py is not installed, until undone."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    _forget_nvml_state(monkeypatch)


def fake_cuda(
    monkeypatch: pytest.MonkeyPatch,
    count: int = 1,
    *,
    nvml: bool | dict[str, Any] = True,
    **options: Any,
) -> FakeCuda:
    """Install a `FakeCuda` with `count` devices (`options` go to it) until undone.

    With `nvml` true (the default) a matching `FakeNVML` is installed too (a dict gives its
    options); false makes NVML missing. Either way the real NVML never answers for fake GPUs.
    """
    cuda = FakeCuda(count, **options).install(monkeypatch)
    if nvml is False or cuda.hip:
        no_nvml(monkeypatch)
    else:
        fake_nvml(monkeypatch, cuda, **(nvml if isinstance(nvml, dict) else {}))
    return cuda


def cpu_only_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch look like a CPU-only build (neither CUDA nor ROCm) until undone.

    For tests of what a machine without GPUs sees, so they hold on a CUDA machine too. Each
    function answers as in a CPU-only build: counters read 0 before (never) initializing, calls
    that initialize raise "Torch not compiled with CUDA enabled", resets lack their C function.
    """
    import torch

    from pytest_hwbench.hardware import registry as registry_module

    def not_compiled(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Torch not compiled with CUDA enabled")

    def missing(c_function: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise AttributeError(f"module 'torch._C' has no attribute '{c_function}'")

        return call

    def no_exchange(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("PyTorch was compiled without CUDA support")

    class Event:  # a CPU-only build exports a placeholder class that refuses to be created
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("Tried to instantiate dummy base class Event")

    answers: dict[str, Callable[..., Any]] = {
        "is_available": lambda: False,
        "device_count": lambda: 0,
        "is_initialized": lambda: False,
        "is_bf16_supported": lambda including_emulation=True: False,
        "set_device": missing("_cuda_setDevice"),
        "memory_stats": lambda device=None: collections.OrderedDict(),
        "memory_allocated": lambda device=None: 0,
        "memory_reserved": lambda device=None: 0,
        "max_memory_allocated": lambda device=None: 0,
        "max_memory_reserved": lambda device=None: 0,
        "reset_accumulated_memory_stats": missing("_cuda_resetAccumulatedMemoryStats"),
        "empty_cache": lambda: None,
    }
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    for function, also_in_memory in _TORCH_CUDA_FUNCTIONS.items():
        replacement = answers.get(function, not_compiled)
        monkeypatch.setattr(torch.cuda, function, replacement)
        if also_in_memory:
            monkeypatch.setattr(torch.cuda.memory, function, replacement)
    reset = missing("_cuda_resetPeakMemoryStats")
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda.memory, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    optional = {
        "is_tf32_supported": lambda: False,
        "_lazy_init": not_compiled,
        "_exchange_device": no_exchange,
        "_maybe_exchange_device": no_exchange,
    }
    for function in _OPTIONAL_FUNCTIONS:
        if hasattr(torch.cuda, function):
            monkeypatch.setattr(torch.cuda, function, optional[function])
    monkeypatch.setattr(registry_module.DEFAULT, "value", None)
    _forget_nvml_state(monkeypatch)


def fake_rocm(
    monkeypatch: pytest.MonkeyPatch,
    count: int = 1,
    *,
    amdsmi: bool | dict[str, Any] = False,
    **options: Any,
) -> FakeCuda:
    """Install a `FakeCuda` that looks like a ROCm build with `count` AMD GPUs; no NVML.

    With `amdsmi` a matching `FakeAmdSmi` is installed too (a dict gives its options, and
    `cuda.amdsmi` holds it); without, ``import amdsmi`` fails, as without the rocm extra.
    """
    from pytest_hwbench.testing._amdsmi import fake_amdsmi, no_amdsmi

    options.setdefault("hip", True)
    cuda = fake_cuda(monkeypatch, count, nvml=False, **options)
    if amdsmi is False:
        no_amdsmi(monkeypatch)
    else:
        cuda.amdsmi = fake_amdsmi(monkeypatch, cuda, **(amdsmi if isinstance(amdsmi, dict) else {}))
    return cuda
