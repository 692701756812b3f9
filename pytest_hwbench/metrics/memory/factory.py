"""`MemoryMetricFactory`: the right memory metric for a device, chosen by its backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware import default_registry, parse_device_spec
from pytest_hwbench.hardware.base import HardwareBackend, HardwareUnavailableError
from pytest_hwbench.metrics.memory.registry import default_memory_metric_registry

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.metrics.memory.base import MemoryMetric

__all__ = ["MemoryMetricFactory"]


class MemoryMetricFactory:
    """Creates the memory metric for a device: the only way a metric is built, the plugin's too.

    The metric class is the one registered for the device's backend (`MemoryMetricRegistry`).
    """

    @staticmethod
    def create(
        device: torch.device | str | HardwareBackend = "cpu",
        *,
        interval: float | str | None = None,
        sampler: str = "thread",
        **options: Any,
    ) -> MemoryMetric:
        """A not-yet-started metric for `device` ("cpu", "cuda:1", a torch.device or a backend).

        `interval` is the sampling period ("10ms" or seconds); `sampler` is "thread" or
        "process"; other `options` go to the metric class (e.g. ``include_children=True``).
        An unknown device raises listing the registered names; an absent one says why.
        """
        registry = default_registry()
        if isinstance(device, HardwareBackend):
            backend, index = device, 0
        else:
            name, parsed_index = parse_device_spec(device)
            backend, index = registry.get(name), parsed_index or 0
            if not backend.is_available():
                # "cuda" names a torch device type too: on a ROCm build it is the AMD GPU.
                shared = registry.backend_for_device(backend.torch_device_type)
                backend = shared if shared.is_available() else backend
        if not backend.is_available():
            raise HardwareUnavailableError(
                f"cannot measure memory on {device}: {backend.name} is not available "
                f"({backend.unavailable_reason()}); available here: "
                f"{', '.join(registry.available())}; registered: {', '.join(registry.names())}"
            )
        backend.require_available(index)
        metric_class = default_memory_metric_registry().metric_class_for(backend)
        label = device if not isinstance(device, HardwareBackend) else backend.name
        return metric_class(
            label, backend=backend, index=index, interval=interval, sampler=sampler, **options
        )
