"""The machine's hardware as JSON-able data: the host, the torch build, every backend's devices.

What ``hwbench info --json``, the ``hw_info`` fixture and a report's machine section say.
`host_inventory` touches neither torch nor a device; the others import torch and ask every
registered backend (initializing the platforms that are there).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry

__all__ = [
    "DMI_ROOT",
    "backend_inventory",
    "hardware_inventory",
    "host_inventory",
    "system_identity",
    "torch_build",
]


def backend_inventory(backend: HardwareBackend, *, capabilities: bool = True) -> dict[str, Any]:
    """One backend: availability, reason, and each device's properties and capabilities.

    ``capabilities=False`` leaves them ``null`` (probing them may import torch or run a kernel).
    """
    entry: dict[str, Any] = {
        "name": backend.name,
        "torch_device_type": backend.torch_device_type,
        "description": backend.description,
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
                    "capabilities": sorted(c.value for c in backend.capabilities(index))
                    if capabilities
                    else None,
                }
            )
        except Exception as exc:  # one broken device must not hide the others
            entry["devices"].append({"index": index, "error": f"{type(exc).__name__}: {exc}"})
    try:
        entry.update(backend.inventory_extra())
    except Exception as exc:  # a third party's extra must not hide the devices
        entry["extra_error"] = f"{type(exc).__name__}: {exc}"
    return entry


def host_inventory() -> dict[str, Any]:
    """The host's identity without touching torch or any device: name, OS, Python, our version."""
    import platform
    import sys

    from pytest_hwbench._version import __version__

    inventory: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "pytest_hwbench": __version__,
    }
    system = system_identity()
    if system:
        inventory["system"] = system
    return inventory


#: Where Linux shows the firmware's (DMI/SMBIOS) description of the machine, readable by all.
DMI_ROOT = Path("/sys/class/dmi/id")


def system_identity(root: Path | None = None) -> dict[str, str]:
    """The machine's maker and model as its firmware says (Linux DMI), or {} where unreadable.

    ``{"vendor": "Amazon EC2", "product": "p5.48xlarge"}`` on a cloud instance, the board's
    maker and model on a server: read from local files, never a metadata server.
    """
    base = DMI_ROOT if root is None else root
    found = {}
    for key, name in (("vendor", "sys_vendor"), ("product", "product_name")):
        try:
            value = (base / name).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        if value and value.lower() not in ("", "none", "to be filled by o.e.m.", "default string"):
            found[key] = value
    return found


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
    from pytest_hwbench.hardware.accelerator import accelerator_device_type

    build: dict[str, Any] = {"version": str(torch.__version__)}
    # The device type torch's accelerator API drives here ("cuda", "npu"), None on a CPU build.
    build["accelerator"] = accelerator_device_type()
    for backend in registry or default_registry():
        attribute = backend.torch_runtime_attribute
        if attribute is not None and attribute not in build:
            build[attribute] = getattr(torch.version, attribute, None)
    return build


#: Why an inventory that may not import torch left the rest unprobed.
NOT_PROBED = "torch was not imported by this run: only the host was described, from the OS"


def hardware_inventory(
    registry: HardwareRegistry | None = None, *, import_torch: bool = True
) -> dict[str, Any]:
    """The machine's hardware as JSON-able data: host, torch build and every registered backend.

    With ``import_torch=False`` and torch not imported yet (a run whose tests never used it),
    nothing imports it: the host is described from the OS (its model and memory, capabilities
    left unprobed), the torch build is unknown, and ``not_probed`` names the other backends.
    """
    from pytest_hwbench.hardware.accelerator import AcceleratorBackend
    from pytest_hwbench.hardware.registry import default_registry

    registry = registry or default_registry()
    if import_torch or "torch" in sys.modules:
        registry.discover_accelerator()
        build = torch_build(registry)
        # The generic backends of device types torch does not drive here are names to validate
        # markers against, not this machine's platforms: left out. Torch's own stays, even
        # absent, with the reason (its device may not answer).
        return {
            **host_inventory(),
            "torch": build,
            "backends": [
                backend_inventory(backend)
                for backend in registry
                if not isinstance(backend, AcceleratorBackend)
                or backend.torch_device_type == build.get("accelerator")
                or backend.is_available()
            ],
        }
    hosts = [backend for backend in registry if backend.is_host]
    return {
        **host_inventory(),
        "torch": {"version": None, "not_probed": NOT_PROBED},
        "backends": [backend_inventory(backend, capabilities=False) for backend in hosts],
        "not_probed": {
            "reason": NOT_PROBED,
            "backends": [
                backend.name
                for backend in registry
                if not backend.is_host and not isinstance(backend, AcceleratorBackend)
            ],
        },
    }
