"""Hardware abstraction layer: find, describe and initialize the devices a test can run on.

>>> from pytest_hwbench import hardware
>>> "cpu" in hardware.get_available_hardware()
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_hwbench._lazy import lazy_exports

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import (
        Capability,
        Detection,
        DeviceProperties,
        HardwareBackend,
        HardwareDetectionWarning,
        HardwareError,
        HardwareFallbackWarning,
        HardwareUnavailableError,
        UnknownCapabilityError,
        UnknownHardwareError,
    )
    from pytest_hwbench.hardware.dtypes import DTYPE_NAMES, UnknownDtypeError, canonical_dtype
    from pytest_hwbench.hardware.energy import EnergyCounter, EnergyUnavailableError
    from pytest_hwbench.hardware.inventory import (
        backend_inventory,
        hardware_inventory,
        host_inventory,
        torch_build,
    )
    from pytest_hwbench.hardware.registry import (
        ENTRY_POINT_GROUP,
        BrokenBackend,
        HardwareRegistry,
        default_registry,
        reset_default_registry,
    )

# Loaded on first use: the plugin's cheapest path (profiling every test on the host) imports the
# peak counters of this package and nothing else of it.
_EXPORTS = {
    "Capability": "base",
    "Detection": "base",
    "DeviceProperties": "base",
    "HardwareBackend": "base",
    "HardwareDetectionWarning": "base",
    "HardwareError": "base",
    "HardwareFallbackWarning": "base",
    "HardwareUnavailableError": "base",
    "UnknownCapabilityError": "base",
    "UnknownHardwareError": "base",
    "DTYPE_NAMES": "dtypes",
    "UnknownDtypeError": "dtypes",
    "canonical_dtype": "dtypes",
    "EnergyCounter": "energy",
    "EnergyUnavailableError": "energy",
    "ENTRY_POINT_GROUP": "registry",
    "BrokenBackend": "registry",
    "HardwareRegistry": "registry",
    "default_registry": "registry",
    "reset_default_registry": "registry",
    "backend_inventory": "inventory",
    "hardware_inventory": "inventory",
    "host_inventory": "inventory",
    "torch_build": "inventory",
}

__all__ = [
    "DTYPE_NAMES",
    "ENTRY_POINT_GROUP",
    "BrokenBackend",
    "Capability",
    "Detection",
    "DeviceProperties",
    "EnergyCounter",
    "EnergyUnavailableError",
    "HardwareBackend",
    "HardwareDetectionWarning",
    "HardwareError",
    "HardwareFallbackWarning",
    "HardwareRegistry",
    "HardwareUnavailableError",
    "UnknownCapabilityError",
    "UnknownDtypeError",
    "UnknownHardwareError",
    "backend_inventory",
    "canonical_dtype",
    "default_registry",
    "get_available_hardware",
    "get_hardware_backend",
    "hardware_inventory",
    "host_inventory",
    "initialize_hardware",
    "parse_device_spec",
    "reset_default_registry",
    "torch_build",
]


def get_available_hardware() -> list[str]:
    """Names of the platforms usable in this process, in registry order; always contains "cpu"."""
    from pytest_hwbench.hardware.registry import default_registry

    return default_registry().available()


def get_hardware_backend(name: str) -> HardwareBackend:
    """The backend registered as `name` (unknown names raise, listing the registered ones)."""
    from pytest_hwbench.hardware.registry import default_registry

    return default_registry().get(name)


def parse_device_spec(spec: str | torch.device | HardwareBackend) -> tuple[str, int | None]:
    """Split "cuda", "cuda:1", a `torch.device` or a backend into (platform name, index or None).

    A torch device type that several backends share ("cuda" for both NVIDIA and ROCm) resolves
    to the one available here.
    """
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import default_registry

    if isinstance(spec, HardwareBackend):
        return spec.name, None
    registry = default_registry()
    if isinstance(spec, str):
        text = spec.strip().lower()
        name, sep, index_text = text.partition(":")
        index: int | None = None
        if sep:
            if not index_text.isdigit():
                raise ValueError(
                    f"bad device {spec!r}: the index after ':' must be a non-negative integer "
                    "(e.g. 'cuda:1')"
                )
            index = int(index_text)
        if name not in registry and any(b.torch_device_type == name for b in registry):
            name = registry.backend_for_device(name).name
        registry.get(name)  # unknown names fail here, listing the valid ones
        return name, index
    device_type = getattr(spec, "type", None)
    if isinstance(device_type, str):
        backend = registry.backend_for_device(device_type)
        raw_index = getattr(spec, "index", None)
        return backend.name, raw_index if isinstance(raw_index, int) else None
    raise TypeError(
        f"expected a device name, a torch.device or a HardwareBackend, got {type(spec).__name__}"
    )


def initialize_hardware(
    name: str | torch.device | HardwareBackend, *, strict: bool = False
) -> torch.device:
    """Return a `torch.device` for `name`, falling back along the backend's chain when absent.

    Accepts "cuda", "cuda:1", a `torch.device` or a backend. When the platform is absent, each of
    its `fallbacks` is tried in order and a `HardwareFallbackWarning` names what was asked, what
    was used and why. With ``strict=True`` an absent platform raises `HardwareUnavailableError`.
    An index past the device count always raises, naming the count.
    """
    from pytest_hwbench.hardware.registry import default_registry

    requested, index = parse_device_spec(name)
    backend = default_registry().get(requested)
    return backend.initialize(index or 0, strict=strict)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
