"""`EnergyMetricFactory`: an energy metric for a device, as `MemoryMetricFactory` makes memory's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_hwbench.hardware import HardwareBackend, parse_device_spec
from pytest_hwbench.hardware.registry import default_registry
from pytest_hwbench.metrics.energy.metric import EnergyMetric

if TYPE_CHECKING:
    import torch

__all__ = ["EnergyMetricFactory"]


class EnergyMetricFactory:
    """Creates the energy metric of a device ("cpu", "cuda:1", a torch.device or a backend)."""

    @staticmethod
    def create(device: torch.device | str | HardwareBackend = "cpu") -> EnergyMetric:
        """A not-yet-started metric over the device's energy counters, opened now.

        Raises `EnergyUnavailableError` (the reason, and what would help) where the device has
        none this process may read; an unknown or absent device raises as for memory metrics.
        """
        if isinstance(device, HardwareBackend):
            backend, index = device, 0
        else:
            name, parsed_index = parse_device_spec(device)
            backend, index = default_registry().get(name), parsed_index or 0
        backend.require_available(index)
        label = device if isinstance(device, str) else backend.device_label(index)
        return EnergyMetric(
            label, backend=backend, index=index, counters=backend.energy_counters(index)
        )
