"""The contract every hardware platform implements, and the data a platform reports about itself."""

from __future__ import annotations

import contextlib
import enum
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from pytest_hwbench.hardware.dtypes import canonical_dtype, dtype_capability
from pytest_hwbench.hardware.energy import EnergyUnavailableError

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.energy import EnergyCounter

__all__ = [
    "Capability",
    "Detection",
    "DeviceProperties",
    "HardwareBackend",
    "HardwareDetectionWarning",
    "HardwareError",
    "HardwareFallbackWarning",
    "HardwareUnavailableError",
    "UnknownCapabilityError",
    "UnknownHardwareError",
]


def warn_broken_backend(message: str, stacklevel: int = 2) -> None:
    """Emit a `HardwareDetectionWarning`, even where warnings are errors.

    A broken backend must end up unavailable, never crash the run: under ``-W error`` the
    warning would otherwise escape as an exception from wherever hardware was looked up.
    """
    # Raised by an "error" filter: the backend is already marked unavailable, which is enough.
    with contextlib.suppress(HardwareDetectionWarning):
        warnings.warn(message, HardwareDetectionWarning, stacklevel=stacklevel + 1)


class HardwareError(Exception):
    """Base class of every error the hardware layer raises."""


class HardwareUnavailableError(HardwareError):
    """A platform (or one of its devices) was required but is not usable here."""


class UnknownHardwareError(HardwareError, LookupError):
    """A platform name that no registered backend answers to."""


class UnknownCapabilityError(HardwareError, ValueError):
    """A capability name that is not one of `Capability`'s values."""


class HardwareFallbackWarning(UserWarning):
    """Emitted when `initialize_hardware` had to use another platform than the one asked for."""


class HardwareDetectionWarning(UserWarning):
    """Emitted when a backend broke while loading or detecting; it is then marked unavailable."""


class Capability(str, enum.Enum):
    """A feature a device may have; tests require one by its lower-case string value."""

    FP16 = "fp16"
    BF16 = "bf16"
    FP64 = "fp64"
    FP8 = "fp8"
    TF32 = "tf32"
    MEMORY_STATS = "memory_stats"
    PEAK_MEMORY_RESET = "peak_memory_reset"
    DEVICE_MEMORY_INFO = "device_memory_info"
    MULTI_DEVICE = "multi_device"
    UNIFIED_MEMORY = "unified_memory"
    SYNCHRONIZE = "synchronize"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | Capability) -> Capability:
        """Turn a user's capability name into a `Capability`, or raise listing the valid names."""
        if isinstance(value, Capability):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            valid = ", ".join(c.value for c in cls)
            raise UnknownCapabilityError(
                f"unknown capability {value!r}; valid capabilities: {valid}"
            ) from None

    @classmethod
    def parse_all(cls, values: Iterable[str | Capability]) -> frozenset[Capability]:
        """Parse several capability names at once (see `parse`)."""
        return frozenset(cls.parse(v) for v in values)


@dataclass(frozen=True)
class DeviceProperties:
    """What one device is: identity, memory size and, where the platform has them, versions."""

    backend: str
    index: int
    name: str
    vendor: str
    total_memory_bytes: int
    uuid: str | None = None
    compute_capability: str | None = None
    multiprocessor_count: int | None = None
    driver_version: str | None = None
    runtime_version: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        # Not dataclasses.asdict, whose recursive deep copy is ~20x slower: the fields are plain
        # values but `extra`.
        data = {name: getattr(self, name) for name in _PROPERTY_FIELDS}
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceProperties:
        """Rebuild properties written by `to_dict` (unknown keys are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["extra"] = dict(kwargs.get("extra") or {})
        return cls(**kwargs)


_PROPERTY_FIELDS = tuple(f.name for f in fields(DeviceProperties))


@dataclass(frozen=True)
class Detection:
    """The outcome of probing a platform once: usable or not, why not, and how many devices."""

    available: bool
    reason: str | None = None
    device_count: int = 0

    @classmethod
    def absent(cls, reason: str) -> Detection:
        """A platform that is not usable, with a human sentence saying why."""
        return cls(available=False, reason=reason, device_count=0)


class HardwareBackend(ABC):
    """One platform (cpu, cuda, ...): detection, devices, properties, capabilities, sync.

    Subclasses implement `detect`, `_query_properties` and `_query_capabilities`; the base class
    caches their answers per process (until `refresh`) and turns a crash in detection into an
    unavailable backend with the crash as its reason.
    """

    #: The registry name, also what users write in markers and options.
    name: ClassVar[str]
    #: The `torch.device` type this platform's devices have (ROCm devices are "cuda" in torch).
    torch_device_type: ClassVar[str]
    #: Names to try, in order, when this platform is absent.
    fallbacks: ClassVar[tuple[str, ...]] = ("cpu",)
    #: A short human description shown by `hwbench info`.
    description: ClassVar[str] = ""
    #: Whether this is the host itself: its one device stands for any index asked of it.
    is_host: ClassVar[bool] = False
    #: The ``torch.distributed`` backend for this platform's devices ("gloo", "nccl"), or None
    #: where torch has none: distributed tests run a rank per device of the platform.
    communication_backend: ClassVar[str | None] = None
    #: Environment variables that restrict which devices the runtime shows this process, in the
    #: order a pinning plan looks for one the user set (the first set one is split among workers).
    visibility_variables: ClassVar[tuple[str, ...]] = ()
    #: The attribute of `torch.version` that names the runtime torch was built with for this
    #: platform ("cuda", "hip", "xpu"), or None.
    torch_runtime_attribute: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._detection: Detection | None = None
        self._properties: dict[int, DeviceProperties] = {}
        self._property_dicts: dict[int, dict[str, Any]] = {}
        self._capabilities: dict[int, frozenset[Capability]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "torch_device_type" not in cls.__dict__ and "name" in cls.__dict__:
            cls.torch_device_type = cls.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- detection -------------------------------------------------------------------------------

    @abstractmethod
    def detect(self) -> Detection:
        """Probe the platform now, uncached. Must not raise for a merely absent platform."""

    def detection(self) -> Detection:
        """The cached outcome of `detect`; a crash becomes an unavailable backend and a warning."""
        with self._lock:
            if self._detection is None:
                try:
                    self._detection = self.detect()
                except Exception as exc:  # a broken backend must never crash the caller
                    reason = f"detection failed: {type(exc).__name__}: {exc}"
                    self._detection = Detection.absent(reason)
                    warn_broken_backend(
                        f"hardware backend {self.name!r} is unavailable: {reason}", stacklevel=3
                    )
            return self._detection

    def is_available(self) -> bool:
        """Whether this platform has at least one usable device in this process."""
        detection = self.detection()
        return detection.available and detection.device_count > 0

    def unavailable_reason(self) -> str | None:
        """A human sentence saying why the platform is unusable, or None when it is available."""
        detection = self.detection()
        if detection.available and detection.device_count > 0:
            return None
        if detection.available:
            return f"{self.name}: no devices visible"
        return detection.reason or f"{self.name} is not available"

    def device_count(self) -> int:
        """How many devices of this platform this process can use (0 when unavailable)."""
        detection = self.detection()
        return detection.device_count if detection.available else 0

    def refresh(self) -> None:
        """Forget cached detection, properties and capabilities (e.g. after changing env vars)."""
        with self._lock:
            self._detection = None
            self._properties.clear()
            self._property_dicts.clear()
            self._capabilities.clear()

    def require_available(self, index: int = 0) -> None:
        """Raise `HardwareUnavailableError` unless device `index` of this platform is usable."""
        if not self.is_available():
            raise HardwareUnavailableError(
                f"{self.name} is not available: {self.unavailable_reason()}"
            )
        count = self.device_count()
        if not 0 <= index < count:
            raise HardwareUnavailableError(
                f"{self.name} device index {index} is out of range: "
                f"{count} {self.name} device{'s' if count != 1 else ''} visible "
                f"(valid indices 0..{count - 1})"
            )

    # -- devices ---------------------------------------------------------------------------------

    def initialize(self, index: int = 0, *, strict: bool = False) -> torch.device:
        """Return device `index`'s `torch.device`; an absent platform falls back along `fallbacks`.

        Falling back emits a `HardwareFallbackWarning`; ``strict=True`` raises
        `HardwareUnavailableError` instead. An index past the device count always raises.
        """
        if self.is_available():
            self.require_available(index)
            return self._make_device(index)
        if strict:
            raise HardwareUnavailableError(
                f"{self.name} was requested with strict=True but is not available: "
                f"{self.unavailable_reason()}"
            )
        from pytest_hwbench.hardware.registry import default_registry

        return default_registry().fallback_device(self, index)

    def _make_device(self, index: int) -> torch.device:
        import torch

        return torch.device(self.torch_device_type, index)

    def energy_counters(self, index: int = 0) -> list[EnergyCounter]:
        """Device `index`'s cumulative energy counters, opened now (`hardware.energy`).

        Device-wide: every process on the device counts. Raises `EnergyUnavailableError` with
        the reason where the platform has none, or none this process may read. A platform
        with a counter overrides this.
        """
        raise EnergyUnavailableError(f"{self.name}: no energy counter is known for this platform")

    def synchronize(self, device: torch.device | int | None = None) -> None:
        """Wait for all queued work on `device` (default: the current one) to finish."""
        return None

    def warm_up(self, index: int = 0, *, optimizer_step: bool = True) -> None:
        """Pay device `index`'s one-time costs now: kernels, library handles, workspaces.

        Runs tiny training steps there (`warmup.training_step`: matmul, conv, backward, an
        optimizer step unless ``optimizer_step=False``, a matmul in each half type the device
        has) and waits for them. The plugin calls it once per platform before its first
        measured test (``--hw-warmup``), so that those costs land on no test. A platform with
        more to prepare overrides this.
        """
        import torch

        from pytest_hwbench.hardware.warmup import training_step

        device = self._make_device(index)
        capabilities = self.capabilities(index)
        dtypes = [torch.float32]
        if Capability.BF16 in capabilities:
            dtypes.append(torch.bfloat16)
        if Capability.FP16 in capabilities:
            dtypes.append(torch.float16)
        training_step(device, dtypes, optimizer_step=optimizer_step)
        self.synchronize(device)

    def queues_work(self) -> bool:
        """Whether work can be queued on this platform's devices (the host runs it at once).

        Timers wait for queued work before each reading; where nothing is ever queued they read
        the bare clock, without a call per reading.
        """
        return type(self).synchronize is not HardwareBackend.synchronize

    def event_clock(self, device: torch.device) -> Callable[[], float] | None:
        """A clock of `device`'s own time (seconds), read from events queued on it, or None.

        Where the platform has timing events, a benchmark's rounds are timed on the device;
        elsewhere timers synchronize and read the host's clock. May raise where the events do
        not work (a driver without them): callers fall back and say why.
        """
        return None

    def device_label(self, index: int) -> str:
        """How reports name device `index`: "cuda:0" (the host's one device is its type)."""
        if self.is_host:
            return self.torch_device_type
        return f"{self.torch_device_type}:{index}"

    def count_devices_unopened(self) -> int | None:
        """How many devices there are, asked without initializing the runtime, or None.

        For planning in a process that must not initialize a device (an xdist controller, before
        its workers fork); None where the platform cannot tell without opening it.
        """
        return None

    def pinnable_devices(self) -> tuple[str, ...] | None:
        """The devices a pinning plan splits among workers, found without opening the runtime.

        Each as the platform's first visibility variable names it ("0", or a UUID); None where
        the platform cannot tell unopened. By default the indices of `count_devices_unopened`.
        """
        count = self.count_devices_unopened()
        return tuple(str(i) for i in range(count)) if count else None

    def inventory_extra(self) -> dict[str, Any]:
        """Facts about the platform beyond its devices for the inventory (e.g. MIG instances)."""
        return {}

    def properties(self, index: int = 0) -> DeviceProperties:
        """What device `index` is (cached)."""
        self.require_available(index)
        with self._lock:
            if index not in self._properties:
                self._properties[index] = self._query_properties(index)
            return self._properties[index]

    def properties_dict(self, index: int = 0) -> dict[str, Any]:
        """`properties(index).to_dict()`, built once and shared: treat it as read-only.

        Every measured test's report entry describes its device; one shared dict per device
        keeps thousands of identical dicts out of the process (and out of the GC's walks).
        """
        shared = self._property_dicts.get(index)
        if shared is None:
            shared = self._property_dicts[index] = self.properties(index).to_dict()
        return shared

    def capabilities(self, index: int = 0) -> frozenset[Capability]:
        """What device `index` can do, detected from the real device and torch build (cached)."""
        self.require_available(index)
        with self._lock:
            if index not in self._capabilities:
                caps = set(self._query_capabilities(index))
                if self.device_count() > 1:
                    caps.add(Capability.MULTI_DEVICE)
                self._capabilities[index] = frozenset(caps)
            return self._capabilities[index]

    def dtype_unmet_reason(self, dtype: str, index: int = 0) -> str | None:
        """Why device `index` cannot compute in `dtype` (a torch dtype's name), or None.

        A dtype is as good as the capability it needs (`dtypes.dtype_capability`): bfloat16
        needs ``bf16``, float64 ``fp64``; dtypes every device computes in need none. A platform
        that knows better (a probe of the dtype itself) overrides this.
        """
        name = canonical_dtype(dtype)
        needed = dtype_capability(name)
        if needed is None or Capability(needed) in self.capabilities(index):
            return None
        return f"{self.name}: {name} needs {needed}, which {self.device_label(index)} lacks"

    def has_capability(self, capability: str | Capability, index: int = 0) -> bool:
        """Whether device `index` has `capability` (False when the platform is unavailable)."""
        if not self.is_available() or index >= self.device_count():
            return False
        return Capability.parse(capability) in self.capabilities(index)

    @abstractmethod
    def _query_properties(self, index: int) -> DeviceProperties:
        """Read device `index`'s properties from the platform."""

    @abstractmethod
    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        """Detect device `index`'s capabilities (the base class adds MULTI_DEVICE)."""
