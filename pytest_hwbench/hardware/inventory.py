"""The machine's hardware as JSON-able data: the host, the torch build, every backend's devices.

What ``hwbench info --json``, the ``hw_info`` fixture and a report's machine section say.
`host_inventory` touches neither torch nor a device; the others import torch and ask every
registered backend (initializing the platforms that are there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry

__all__ = ["backend_inventory", "hardware_inventory", "host_inventory", "torch_build"]


def backend_inventory(backend: HardwareBackend) -> dict[str, Any]:
    """One backend: availability, reason, and each device's properties and capabilities."""
    entry: dict[str, Any] = {
        "name": backend.name,
        "torch_device_type": backend.torch_device_type,
        "available": backend.is_available(),
        "reason": backend.unavailable_reason(),
        "device_count": backend.device_count(),
        "devices": [],
    }
    for index in range(backend.device_count()):
        try:
            entry["devices"].append(
                {
                    "properties": backend.properties(index).to_dict(),
                    "capabilities": sorted(c.value for c in backend.capabilities(index)),
                }
            )
        except Exception as exc:  # one broken device must not hide the others
            entry["devices"].append({"index": index, "error": f"{type(exc).__name__}: {exc}"})
    return entry


def host_inventory() -> dict[str, Any]:
    """The host's identity without touching torch or any device: name, OS, Python, our version."""
    import platform
    import sys

    from pytest_hwbench._version import __version__

    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "pytest_hwbench": __version__,
    }


def torch_build(registry: HardwareRegistry | None = None) -> dict[str, Any]:
    """Torch's version and, per platform, the runtime it was built with (imports torch).

    ``{"version": "2.5.1+cu124", "cuda": "12.4", "hip": None, "xpu": None}``: one key per
    backend's `torch_runtime_attribute`; ``{"version": None, "error": ...}`` without torch.
    """
    from pytest_hwbench.hardware.registry import default_registry

    try:
        import torch
    except ImportError as exc:
        return {"version": None, "error": str(exc)}
    build: dict[str, Any] = {"version": str(torch.__version__)}
    for backend in registry or default_registry():
        attribute = backend.torch_runtime_attribute
        if attribute is not None and attribute not in build:
            build[attribute] = getattr(torch.version, attribute, None)
    return build


def hardware_inventory(registry: HardwareRegistry | None = None) -> dict[str, Any]:
    """The machine's hardware as JSON-able data: host, torch build and every registered backend."""
    from pytest_hwbench.hardware.registry import default_registry

    registry = registry or default_registry()
    return {
        **host_inventory(),
        "torch": torch_build(registry),
        "backends": [backend_inventory(backend) for backend in registry],
    }
