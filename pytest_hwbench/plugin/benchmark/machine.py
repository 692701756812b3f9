"""The accelerators in pytest-benchmark's machine info, so `--benchmark-compare` flags a change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry

__all__ = ["accelerator_inventory", "update_machine_info"]


def update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any], registry: HardwareRegistry
) -> None:
    """Add the accelerators and torch build, so --benchmark-compare flags another GPU."""
    session = getattr(config, "_benchmarksession", None)
    if getattr(session, "disabled", False) or config.pluginmanager.has_plugin("dsession"):
        return  # nothing is timed here (an xdist controller must never import torch)
    machine_info["hwbench"] = accelerator_inventory(registry)


def accelerator_inventory(registry: HardwareRegistry) -> dict[str, Any]:
    """The torch build and every visible device's identity (what makes timings comparable)."""
    from pytest_hwbench.hardware import torch_build

    devices: list[dict[str, Any]] = []
    for backend in registry:
        if not backend.is_available():
            continue
        for index in range(backend.device_count()):
            try:
                props = backend.properties(index)
            except Exception as exc:
                devices.append({"platform": backend.name, "index": index, "error": str(exc)})
                continue
            devices.append(
                {
                    "platform": backend.name,
                    "index": index,
                    "name": props.name,
                    "vendor": props.vendor,
                    "total_memory_bytes": props.total_memory_bytes,
                    "compute_capability": props.compute_capability,
                    "multiprocessor_count": props.multiprocessor_count,
                    "driver_version": props.driver_version,
                    "runtime_version": props.runtime_version,
                }
            )
    return {"torch": torch_build(registry), "devices": devices}
