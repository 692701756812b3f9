"""A fake torch_xla: its modules answer as if N TPU chips (or other PJRT devices) were here.

The fake is a set of modules put into `sys.modules` (torch_xla, torch_xla.core,
torch_xla.core.xla_model, torch_xla.runtime), with the signatures, dict keys, units and errors
of the real ones in three generations: ``api="new"`` (torch_xla 2.7+: ``torch_xla.device``,
``torch_xla.sync``, ``xm.xla_device_kind``, memory info with ``peak_bytes_used``), ``"no_peak"``
(2.4/2.5: bytes without a peak) and ``"old"`` (2.0: no ``torch_xla.runtime``, ``xm.mark_step``,
memory info in KiB as ``kb_free`` / ``kb_total``). Each device keeps the bytes its buffers hold
and its lifetime peak, which nothing resets (as in PJRT). It records whether something opened
the runtime, since on a TPU that locks the chips for the process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import itertools
import re
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pytest_hwbench.hardware import xla as xla_module

if TYPE_CHECKING:
    import pytest
    import torch

__all__ = ["FakeXLA", "fake_xla", "no_xla"]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

API = Literal["new", "no_peak", "old"]
_VERSIONS = {"new": "2.7.0", "no_peak": "2.5.0", "old": "2.0.0"}
#: The import failure of a torch_xla built for another torch, as users meet it.
BROKEN_IMPORT = (
    "/usr/lib/python3/site-packages/_XLAC.cpython-310-x86_64-linux-gnu.so: undefined symbol: "
    "_ZN5torch4lazy13MetricFnValueB5cxx11Ed"
)
#: What libtpu says when another process holds the TPU.
TPU_BUSY = (
    "TPU initialization failed: open(/dev/vfio/0): Device or resource busy: Device or resource "
    "busy; Couldn't open iommu group /dev/vfio/0"
)


class FakeXLA:
    """`count` fake XLA devices of PJRT type `device_type`; `install` puts torch_xla in place.

    `allocate` and `free` stand in for device buffers being created and dropped (bytes).
    ``pci_visible=False`` hides the chips from the PCI bus (a container without sysfs), so
    counting them needs the runtime; `runtime_error` is what opening the runtime raises.
    """

    def __init__(
        self,
        count: int = 4,
        *,
        device_type: str | None = "TPU",
        hw: str = "TPU v5 lite",
        bytes_limit: int = 16 * GIB,
        api: API = "new",
        version: str | None = None,
        baseline_bytes: int = 0,
        supported_dtypes: Iterable[str] = ("float32", "bfloat16", "float16", "int32"),
        chip_id: str = "0x0063",
        pci_visible: bool = True,
        runtime_initialized: bool = False,
        runtime_error: str | None = None,
    ) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if api not in _VERSIONS:
            raise ValueError(f"api must be one of {', '.join(_VERSIONS)}; got {api!r}")
        self.count = count
        self.device_type = device_type
        self.hw = hw
        self.bytes_limit = bytes_limit
        self.api = api
        self.version = version or _VERSIONS[api]
        self.supported_dtypes = frozenset(supported_dtypes)
        self.chip_id = chip_id
        self.pci_visible = pci_visible
        self.runtime_initialized = runtime_initialized
        self.runtime_error = runtime_error
        self.default_device = 0
        #: Per device: bytes held by live buffers, and the lifetime peak (never reset).
        self.used = [baseline_bytes] * count
        self.peak = [baseline_bytes] * count
        #: Every barrier call in order: "sync", "mark_step", "wait_device_ops".
        self.calls: list[str] = []
        self._buffers: dict[int, tuple[int, int]] = {}
        self._handles = itertools.count(1)

    # -- driving the fake ------------------------------------------------------------------------

    @property
    def sync_calls(self) -> int:
        """How many step barriers ran (``torch_xla.sync`` or ``xm.mark_step``)."""
        return sum(1 for call in self.calls if call in ("sync", "mark_step"))

    @property
    def wait_calls(self) -> int:
        """How many times ``xm.wait_device_ops`` ran."""
        return self.calls.count("wait_device_ops")

    def allocate(self, index: int, nbytes: int) -> int:
        """Place an `nbytes` buffer on device `index`; return a handle for `free`."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        self._open_runtime()
        self._check_ordinal(index)
        free = self.bytes_limit - self.used[index]
        if nbytes > free:
            raise RuntimeError(
                f"RESOURCE_EXHAUSTED: Error allocating device buffer: Attempting to allocate "
                f"{nbytes / MIB:.2f}M. That was not possible. There are {free / MIB:.2f}M free."
            )
        handle = next(self._handles)
        self._buffers[handle] = (index, nbytes)
        self.used[index] += nbytes
        self.peak[index] = max(self.peak[index], self.used[index])
        return handle

    def free(self, handle: int) -> None:
        """Drop the buffer `handle` (PJRT frees device memory at once: there is no cache)."""
        try:
            index, nbytes = self._buffers.pop(handle)
        except KeyError:
            raise ValueError(f"invalid buffer handle {handle} (already freed?)") from None
        self.used[index] -= nbytes

    def pci_chips(self) -> list[str]:
        """The PCI device ids `query_tpu_chips` finds: a chip per device on a TPU host."""
        if self.device_type != "TPU" or not self.pci_visible:
            return []
        per_chip = 2 if self.chip_id == "0x0027" else 1  # v2/v3 chips hold two TensorCores
        return [self.chip_id] * (self.count // per_chip)

    # -- the runtime -----------------------------------------------------------------------------

    def _open_runtime(self) -> None:
        if self.runtime_error is not None:
            raise RuntimeError(self.runtime_error)
        self.runtime_initialized = True

    def _real(self, ordinal: int) -> str:
        return f"{self.device_type or 'CPU'}:{ordinal}"

    def _xla_devices(self) -> list[str]:
        self._open_runtime()
        return [f"xla:{i}" for i in range(self.count)]

    def _check_ordinal(self, ordinal: int) -> None:
        if not 0 <= ordinal < self.count:
            # The device mapper's std::vector::at, which pybind11 turns into an IndexError.
            raise IndexError(
                f"vector::_M_range_check: __n (which is {ordinal}) >= this->size() "
                f"(which is {self.count})"
            )

    def _ordinal(self, device: Any) -> int:
        """The ordinal of a torch.device or "xla:N" string; the default device for None."""
        if device is None:
            return self.default_device
        text = str(device)
        if text == "xla":
            return self.default_device
        match = re.fullmatch(r"xla:(\d+)", text)
        if match is None:
            raise RuntimeError(f"Expected XLA device, got {text}")
        return int(match.group(1))

    def _real_device(self, device: Any) -> str:
        match = re.fullmatch(r"xla:(\d+)", str(device))
        if match is None:
            raise RuntimeError(f"Invalid device format: {device}")
        real = [self._real(i) for i in range(len(self._xla_devices()))]
        return real[int(match.group(1))]  # IndexError: list index out of range, as torch_xla

    # -- torch_xla -------------------------------------------------------------------------------

    def device(self, index: int | None = None) -> torch.device:
        """``torch_xla.device``: device `index` (default: the default device), made the default."""
        import torch

        devices = self._xla_devices()
        if index is None:
            return torch.device(f"xla:{self.default_device}")
        if index > len(devices):
            raise IndexError(f"Device index {index} out of range in {devices}")
        chosen = devices[index]  # index == len: "list index out of range", as torch_xla
        self.default_device = index
        return torch.device(chosen)

    def devices(self) -> list[torch.device]:
        """``torch_xla.devices``."""
        import torch

        return [torch.device(d) for d in self._xla_devices()]

    def real_devices(self) -> list[str]:
        """``torch_xla.real_devices``: ["TPU:0", ...]."""
        return [self._real(i) for i in range(len(self._xla_devices()))]

    def device_count(self) -> int:
        """``torch_xla.device_count``."""
        return len(self.real_devices())

    def sync(self, wait: bool = False, reset_scope: bool = True) -> None:
        """``torch_xla.sync``: launch the pending graph (the fake has none; it counts)."""
        self._open_runtime()
        self.calls.append("sync")

    # -- torch_xla.core.xla_model ----------------------------------------------------------------

    def xla_device(self, n: int | None = None, devkind: str | None = None) -> torch.device:
        """``xm.xla_device``: deprecated for `torch_xla.device` from 2.7, the way before it."""
        import torch

        if self.api != "old":
            return self.device(n)
        devices = self._xla_devices()
        chosen = devices[0] if n is None else f"xla:{n}"
        self.default_device = int(chosen.split(":")[1])
        return torch.device(chosen)

    def get_xla_supported_devices(self, max_devices: int | None = None) -> list[str]:
        """``xm.get_xla_supported_devices``: ["xla:0", ...]."""
        devices = self._xla_devices()
        return devices[:max_devices] if max_devices else devices

    def get_xla_supported_devices_2_0(
        self, devkind: str | None = None, max_devices: int | None = None
    ) -> list[str]:
        """torch_xla 2.0's form, which took a device kind first."""
        if devkind is not None and devkind != self.device_type:
            return []  # 2.0 returned None here; an empty list reads the same to callers
        return self.get_xla_supported_devices(max_devices)

    def xla_real_devices(self, devices: Sequence[Any] | None = None) -> list[str]:
        """``xm.xla_real_devices``: the real names of XLA devices ("xla:1" -> "TPU:1")."""
        if not devices:
            devices = self._xla_devices()
        return [self._real_device(d) for d in devices]

    def xla_device_hw(self, device: Any) -> str:
        """``xm.xla_device_hw``: "TPU", "CPU", "CUDA", ..."""
        return self._real_device(device).split(":")[0]

    def xla_device_kind(self, device: Any = None) -> str:
        """``xm.xla_device_kind`` (2.7+): the PJRT device kind, e.g. "TPU v5 lite"."""
        self._open_runtime()
        ordinal = self._ordinal(device)
        self._check_ordinal(ordinal)
        return self.hw

    def mark_step(self, wait: bool = False, reset_scope: bool = True) -> None:
        """``xm.mark_step``: `torch_xla.sync` under its old name."""
        self._open_runtime()
        self.calls.append("mark_step")

    def wait_device_ops(self, devices: Sequence[str] = ()) -> None:
        """``xm.wait_device_ops``: wait for launched executions (none pending in the fake)."""
        self._open_runtime()
        self.calls.append("wait_device_ops")

    def get_memory_info(self, device: Any = None) -> dict[str, int]:
        """``xm.get_memory_info``: the dict of this fake's `api` generation, in its units."""
        self._open_runtime()
        ordinal = self._ordinal(device)
        self._check_ordinal(ordinal)
        if self.device_type == "CPU" and self.api != "old":
            # PJRT's CPU client has no allocator statistics.
            raise RuntimeError("UNIMPLEMENTED: GetAllocatorStats is not supported")
        used, limit = self.used[ordinal], self.bytes_limit
        if self.api == "old":
            return {"kb_free": (limit - used) // KIB, "kb_total": limit // KIB}
        info = {"bytes_used": used, "bytes_limit": limit}
        if self.api == "new":
            info["peak_bytes_used"] = self.peak[ordinal]
        return info

    # -- torch_xla.runtime -----------------------------------------------------------------------

    def runtime_device_type(self) -> str | None:
        """``xr.device_type``: PJRT_DEVICE's type (reads the variable, opens nothing)."""
        return self.device_type

    def addressable_device_count(self) -> int:
        """``xr.addressable_device_count`` (opens the runtime)."""
        return len(self._xla_devices())

    def global_runtime_device_count(self) -> int:
        """``xr.global_runtime_device_count``: one host here, so the addressable count."""
        return self.addressable_device_count()

    def runtime_device_attributes(self, device: str) -> dict[str, object]:
        """``xr.runtime_device_attributes`` of a real device ("TPU:0"); illustrative values."""
        self._open_runtime()
        match = re.fullmatch(r"[A-Z]+:(\d+)", device)
        if match is None or int(match.group(1)) >= self.count:
            raise RuntimeError(f"Unknown device {device}")
        ordinal = int(match.group(1))
        if self.device_type != "TPU":
            return {}
        return {"coords": [ordinal % 2, ordinal // 2, 0], "core_on_chip": 0}

    def is_bf16_supported(self) -> bool:
        """``xr.is_bf16_supported``."""
        return "bfloat16" in self.supported_dtypes

    def runtime_is_initialized(self) -> bool:
        """``torch_xla._XLAC._xla_runtime_is_initialized`` (2.2+)."""
        return self.runtime_initialized

    def probe_dtype(self, index: int, dtype_name: str) -> bool:
        """What `probe_xla_dtype` answers on this fake: whether the device computes the dtype."""
        self._open_runtime()
        return 0 <= index < self.count and dtype_name in self.supported_dtypes

    # -- installing ------------------------------------------------------------------------------

    def modules(self) -> dict[str, types.ModuleType | None]:
        """The `sys.modules` entries this fake installs (None hides a module it lacks)."""
        package = _module("torch_xla", package=True)
        xlac = types.SimpleNamespace()
        if self.api != "old":
            xlac._xla_runtime_is_initialized = self.runtime_is_initialized
        top: dict[str, Any] = {"__version__": self.version, "_XLAC": xlac}
        if self.api != "old":
            top.update(
                device=self.device,
                devices=self.devices,
                real_devices=self.real_devices,
                device_count=self.device_count,
                sync=self.sync,
            )
        _fill(package, top)
        core = _module("torch_xla.core", package=True)
        xm = _module("torch_xla.core.xla_model")
        xm_api: dict[str, Callable[..., Any]] = {
            "xla_device": self.xla_device,
            "get_xla_supported_devices": (
                self.get_xla_supported_devices_2_0
                if self.api == "old"
                else self.get_xla_supported_devices
            ),
            "xla_real_devices": self.xla_real_devices,
            "xla_device_hw": self.xla_device_hw,
            "mark_step": self.mark_step,
            "wait_device_ops": self.wait_device_ops,
            "get_memory_info": self.get_memory_info,
        }
        if self.api == "new":
            xm_api["xla_device_kind"] = self.xla_device_kind
        _fill(xm, xm_api)
        core.xla_model = xm  # type: ignore[attr-defined]
        package.core = core  # type: ignore[attr-defined]
        modules: dict[str, types.ModuleType | None] = {
            "torch_xla": package,
            "torch_xla.core": core,
            "torch_xla.core.xla_model": xm,
            "torch_xla.runtime": None,  # torch_xla 2.0 had none
        }
        if self.api != "old":
            runtime = _module("torch_xla.runtime")
            _fill(
                runtime,
                {
                    "device_type": self.runtime_device_type,
                    "addressable_device_count": self.addressable_device_count,
                    "global_runtime_device_count": self.global_runtime_device_count,
                    "runtime_device_attributes": self.runtime_device_attributes,
                    "is_bf16_supported": self.is_bf16_supported,
                },
            )
            package.runtime = runtime  # type: ignore[attr-defined]
            modules["torch_xla.runtime"] = runtime
        return modules

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeXLA:
        """Put the fake torch_xla into `sys.modules` and patch our backend's probes; returns self.

        ``PJRT_DEVICE`` is set as ``import torch_xla`` selects it (unset for ``device_type=None``).
        """
        from pytest_hwbench.hardware import registry as registry_module

        # Detection is cached per process: the next lookup must see this machine, not the last.
        monkeypatch.setattr(registry_module.DEFAULT, "value", None)
        for name, module in self.modules().items():
            monkeypatch.setitem(sys.modules, name, module)
        if self.device_type is None:
            monkeypatch.delenv("PJRT_DEVICE", raising=False)
        else:
            monkeypatch.setenv("PJRT_DEVICE", self.device_type)
        monkeypatch.delenv("TPU_VISIBLE_CHIPS", raising=False)
        monkeypatch.setattr(xla_module, "query_tpu_chips", self.pci_chips)
        monkeypatch.setattr(xla_module, "probe_xla_dtype", self.probe_dtype)
        return self


def _module(name: str, *, package: bool = False) -> types.ModuleType:
    module = types.ModuleType(name, f"Fake {name} (pytest_hwbench.testing.FakeXLA).")
    if package:
        module.__path__ = []  # a package: submodules it lacks fail to import
    return module


def _fill(module: types.ModuleType, api: dict[str, Any]) -> None:
    for name, value in api.items():
        setattr(module, name, value)


class _BrokenFinder(importlib.abc.MetaPathFinder):
    """Finds torch_xla, whose loading then fails as a build for another torch does."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torch_xla":
            return None
        return importlib.machinery.ModuleSpec(fullname, _BrokenLoader())


class _BrokenLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        raise ImportError(BROKEN_IMPORT)

    def exec_module(self, module: types.ModuleType) -> None:  # pragma: no cover - never reached
        raise ImportError(BROKEN_IMPORT)


def fake_xla(monkeypatch: pytest.MonkeyPatch, count: int = 4, **kwargs: Any) -> FakeXLA:
    """Make torch_xla importable with `count` fake devices until the test ends; returns the fake."""
    return FakeXLA(count, **kwargs).install(monkeypatch)


def no_xla(
    monkeypatch: pytest.MonkeyPatch,
    reason: Literal["not_installed", "broken"] = "not_installed",
) -> None:
    """Make torch_xla absent: not installed, or installed but failing to import."""
    from pytest_hwbench.hardware import registry as registry_module

    if reason not in ("not_installed", "broken"):
        raise ValueError(f"reason must be 'not_installed' or 'broken', got {reason!r}")
    monkeypatch.setattr(registry_module.DEFAULT, "value", None)
    for name in [n for n in sys.modules if n == "torch_xla" or n.startswith("torch_xla.")]:
        monkeypatch.delitem(sys.modules, name)
    if reason == "not_installed":
        monkeypatch.setitem(sys.modules, "torch_xla", None)  # import then fails, as if absent
    else:
        monkeypatch.setattr(sys, "meta_path", [_BrokenFinder(), *sys.meta_path])
