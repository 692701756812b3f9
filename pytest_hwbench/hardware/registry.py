"""The central list of hardware backends, and how third parties add theirs."""

from __future__ import annotations

import difflib
import importlib
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pytest_hwbench._lazy import ProcessDefault
from pytest_hwbench.hardware.base import (
    Detection,
    DeviceProperties,
    HardwareBackend,
    HardwareError,
    HardwareFallbackWarning,
    HardwareUnavailableError,
    UnknownHardwareError,
    warn_broken_backend,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENTRY_POINT_GROUP",
    "BrokenBackend",
    "HardwareRegistry",
    "default_registry",
    "reset_default_registry",
]

#: Entry-point group third-party packages use to ship a backend.
ENTRY_POINT_GROUP = "pytest_hwbench.backends"

BackendT = TypeVar("BackendT", bound="HardwareBackend | type[HardwareBackend]")

#: The built-in backends, by name, as "module:Class": each module is imported when its backend is
#: first looked up (or the registry walked), so a run on the host imports no device backend.
_BUILTINS: tuple[tuple[str, str], ...] = (
    ("cpu", "pytest_hwbench.hardware.cpu:CPUBackend"),
    ("cuda", "pytest_hwbench.hardware.cuda:CUDABackend"),
    ("rocm", "pytest_hwbench.hardware.rocm:ROCmBackend"),
    ("mps", "pytest_hwbench.hardware.mps:MPSBackend"),
    ("xpu", "pytest_hwbench.hardware.xpu:XPUBackend"),
    ("xla", "pytest_hwbench.hardware.xla:XLABackend"),
)


class _Deferred:
    """A built-in backend registered by name, its module not yet imported."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target

    def load(self, name: str) -> HardwareBackend:
        module_name, _, class_name = self.target.partition(":")
        backend = getattr(importlib.import_module(module_name), class_name)()
        if backend.name != name:  # _BUILTINS out of step with a class: a bug here, not a user's
            raise RuntimeError(f"{self.target} is named {backend.name!r}, registered as {name!r}")
        return backend  # type: ignore[no-any-return]


class BrokenBackend(HardwareBackend):
    """Stands in for a third-party backend that failed to load: always unavailable, says why."""

    fallbacks = ("cpu",)

    def __init__(self, name: str, reason: str) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]  # per-instance name: one stand-in per broken backend
        self.torch_device_type = name  # type: ignore[misc]
        self._reason = reason

    def detect(self) -> Detection:
        """Always absent, with the load failure as the reason."""
        return Detection.absent(self._reason)

    def _query_properties(self, index: int) -> DeviceProperties:
        raise HardwareError(self._reason)

    def _query_capabilities(self, index: int) -> frozenset[Any]:
        raise HardwareError(self._reason)


class HardwareRegistry:
    """Backends by name. Wraps a dict; registering a taken name needs ``override=True``."""

    def __init__(self) -> None:
        # Registration order is the dict's; a built-in stays `_Deferred` until first needed.
        self._backends: dict[str, HardwareBackend | _Deferred] = {}
        self._lock = threading.RLock()
        #: Whether torch's own accelerator has been looked for (`discover_accelerator`).
        self._accelerator_sought = False

    @overload
    def register(self, backend: BackendT, *, override: bool = False) -> BackendT: ...

    @overload
    def register(
        self, backend: None = None, *, override: bool = False
    ) -> Callable[[BackendT], BackendT]: ...

    def register(
        self, backend: BackendT | None = None, *, override: bool = False
    ) -> BackendT | Callable[[BackendT], BackendT]:
        """Add a backend instance or class (a class is instantiated); usable as a decorator."""
        if backend is None:

            def decorator(obj: BackendT) -> BackendT:
                return self.register(obj, override=override)

            return decorator

        instance = backend() if isinstance(backend, type) else backend
        if not isinstance(instance, HardwareBackend):
            raise TypeError(
                f"can only register HardwareBackend subclasses or instances, got {backend!r}"
            )
        name = getattr(instance, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{type(instance).__name__} has no `name`; set the class attribute")
        with self._lock:
            if name in self._backends and not override:
                held = self._backends[name]
                existing = (
                    held.target.partition(":")[2]
                    if isinstance(held, _Deferred)
                    else type(held).__qualname__
                )
                raise ValueError(
                    f"a hardware backend named {name!r} is already registered ({existing}); "
                    "pass override=True to replace it"
                )
            self._backends[name] = instance
        return backend

    def unregister(self, name: str) -> HardwareBackend:
        """Remove and return the backend called `name`."""
        with self._lock:
            backend = self.get(name)
            del self._backends[name]
            return backend

    def get(self, name: str) -> HardwareBackend:
        """The backend called `name`; an unknown name raises, listing the registered ones."""
        key = name.strip().lower() if isinstance(name, str) else name
        with self._lock:
            backend = self._backends.get(key)
            if backend is None and not self._accelerator_sought:
                # A name nothing registered may be torch's own out-of-tree accelerator here.
                self.discover_accelerator()
                backend = self._backends.get(key)
            if backend is None:
                raise UnknownHardwareError(self._unknown_message(name))
            if isinstance(backend, _Deferred):
                backend = self._backends[key] = backend.load(key)
            return backend

    def _loaded(self) -> list[HardwareBackend]:
        """Every backend, in registration order, deferred built-ins imported now."""
        with self._lock:
            for name, backend in list(self._backends.items()):
                if isinstance(backend, _Deferred):
                    self._backends[name] = backend.load(name)
            return list(self._backends.values())  # type: ignore[arg-type]  # none deferred now

    def _unknown_message(self, name: object) -> str:
        names = self.names()
        return f"unknown hardware {name!r}; registered backends: {', '.join(names)}" + (
            self.close_match_hint(name)
        )

    def close_match_hint(self, name: object) -> str:
        """`` (did you mean 'npu'?)`` for a name close to a registered one, else ""."""
        close = difflib.get_close_matches(str(name).lower(), self.names(), n=1, cutoff=0.5)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def knows(self, name: str) -> bool:
        """Whether `name` is a registered platform, torch's own accelerator here included.

        Unlike ``name in registry``, a name nothing registered is looked for as torch's
        out-of-tree accelerator (`discover_accelerator`, which imports torch) before the answer.
        """
        try:
            self.get(name)
        except UnknownHardwareError:
            return False
        return True

    def names(self) -> list[str]:
        """Every registered backend name, in registration order."""
        with self._lock:
            return list(self._backends)

    def available(self) -> list[str]:
        """Names of the backends that are usable here; a backend that crashes counts as absent.

        torch's own accelerator counts too: a device type no backend names gets the generic
        `torch.accelerator` backend first (`discover_accelerator`).
        """
        self.discover_accelerator()
        return [b.name for b in self if _safely_available(b)]

    def discover_accelerator(self) -> HardwareBackend | None:
        """The backend of torch's accelerator in this process, registering a generic one if need be.

        Imports torch (whose autoload loads installed out-of-tree device packages), asks
        `torch.accelerator` for its device type and returns the backend that handles it: a
        dedicated one where registered, else a generic `AcceleratorBackend` named by the device
        type, registered now. None where torch has no accelerator. Asked once per registry.
        """
        from pytest_hwbench.hardware.accelerator import AcceleratorBackend, accelerator_device_type

        with self._lock:
            self._accelerator_sought = True
            device_type = accelerator_device_type()
            if device_type is None:
                return None
            handlers = [b for b in self._loaded() if b.torch_device_type == device_type]
            dedicated = [b for b in handlers if not isinstance(b, AcceleratorBackend)]
            if dedicated:
                return next((b for b in dedicated if _safely_available(b)), dedicated[0])
            if handlers:
                return handlers[0]
            if device_type in self._backends:  # the name is taken by a backend of another type
                return None
            backend = AcceleratorBackend(device_type)
            self._backends[device_type] = backend
            return backend

    def refresh(self) -> None:
        """Forget every backend's cached detection."""
        for backend in self:
            backend.refresh()

    def backend_for_device(self, device: torch.device | str) -> HardwareBackend:
        """The available backend whose devices have `device`'s torch type (cuda → cuda or rocm).

        Raises `UnknownHardwareError` when no backend handles that device type.
        """
        device_type = device.split(":")[0] if isinstance(device, str) else device.type
        candidates = [b for b in self if b.torch_device_type == device_type]
        if not candidates:
            raise UnknownHardwareError(self._unknown_message(device_type))
        for backend in candidates:
            if _safely_available(backend):
                return backend
        return candidates[0]

    def fallback_device(self, backend: HardwareBackend, index: int = 0) -> torch.device:
        """Walk `backend.fallbacks` and initialize the first available one, with a warning.

        The `HardwareFallbackWarning` names what was asked, what is used and why; when nothing in
        the chain is available, `HardwareUnavailableError` lists each step and its reason.
        A device fallback keeps the requested `index` (and raises if it has too few devices);
        the CPU has one device whatever was asked.
        """
        reason = backend.unavailable_reason()
        skipped: list[str] = []
        seen = {backend.name}
        for name in backend.fallbacks:
            if name in seen or name not in self:
                continue
            seen.add(name)
            fallback = self.get(name)
            if not _safely_available(fallback):
                skipped.append(f"{name} ({fallback.unavailable_reason()})")
                continue
            device = fallback.initialize(0 if fallback.is_host else index)
            also = f" (also unavailable: {'; '.join(skipped)})" if skipped else ""
            warnings.warn(
                f"{backend.name} was requested but is not available: {reason}; "
                f"using {device} instead{also}",
                HardwareFallbackWarning,
                stacklevel=_caller_stacklevel(),
            )
            return device
        steps = "; ".join([f"{backend.name} ({reason})", *skipped])
        raise HardwareUnavailableError(
            f"{backend.name} is not available and no fallback is either: {steps}"
        )

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._backends

    def __iter__(self) -> Iterator[HardwareBackend]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._backends)

    def __repr__(self) -> str:
        return f"HardwareRegistry({self.names()!r})"

    # -- discovery -------------------------------------------------------------------------------

    def register_builtins(self) -> None:
        """Register cpu, cuda, rocm, mps, xpu, xla, and npu, hpu... as generic accelerators.

        The known out-of-tree device types (`accelerator.KNOWN_ACCELERATORS`) get the generic
        `torch.accelerator` backend. None of them imports torch to register, and a built-in's
        module is imported only when its backend is first looked up or the registry walked.
        """
        from pytest_hwbench.hardware.accelerator import KNOWN_ACCELERATORS, AcceleratorBackend

        with self._lock:
            for name, target in _BUILTINS:
                self._backends[name] = _Deferred(target)
        for device_type in KNOWN_ACCELERATORS:
            self.register(AcceleratorBackend(device_type), override=True)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register the backends that installed distributions advertise in `group`.

        Each entry point names a `HardwareBackend` subclass or instance. One that fails to load
        becomes a `BrokenBackend` under the entry point's name, with a warning, never a crash.
        """
        for entry_point in metadata.entry_points(group=group):
            try:
                loaded = entry_point.load()
                if isinstance(loaded, type) and issubclass(loaded, HardwareBackend):
                    loaded = loaded()
                if not isinstance(loaded, HardwareBackend):
                    raise TypeError(f"{entry_point.value} is not a HardwareBackend")
                self.register(loaded, override=True)
            except Exception as exc:
                reason = f"failed to load from entry point {entry_point.value!r}: {exc}"
                self.register(BrokenBackend(entry_point.name, reason), override=True)
                warn_broken_backend(f"hardware backend {entry_point.name!r} {reason}")


def _caller_stacklevel() -> int:
    """The `warnings.warn` stacklevel of the first frame outside the hardware package."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(__package__ or ""):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _safely_available(backend: HardwareBackend) -> bool:
    try:
        return backend.is_available()
    except Exception as exc:  # a third-party override of is_available may raise
        warn_broken_backend(
            f"hardware backend {backend.name!r} raised in is_available(): {exc!r}; "
            "treating it as unavailable",
            stacklevel=3,
        )
        return False


def _build_default() -> HardwareRegistry:
    registry = HardwareRegistry()
    registry.register_builtins()
    registry.load_entry_points()
    return registry


#: The process-wide registry (`fake_registry` in tests stands another in for it).
DEFAULT = ProcessDefault(_build_default)


def default_registry() -> HardwareRegistry:
    """The process-wide registry: built-ins, then entry points (the pytest hook adds the rest)."""
    return DEFAULT.get()


def reset_default_registry() -> None:
    """Drop the process-wide registry, so the next use rebuilds it (for tests)."""
    DEFAULT.reset()
