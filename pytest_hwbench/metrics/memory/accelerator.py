"""Any `torch.accelerator` device (npu, hpu, a PrivateUse1 backend): its allocator, via one API."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware.base import Capability
from pytest_hwbench.hardware.peak_counters import peak_counter_key
from pytest_hwbench.metrics.memory._allocator import AllocatorMemoryMetric
from pytest_hwbench.metrics.memory._host import (
    read_rss_bytes,
    reset_rss_high_water,
    vmhwm_counter,
)
from pytest_hwbench.metrics.memory.reader import device_index

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = ["AcceleratorMemoryMetric"]


class AcceleratorMemoryMetric(AllocatorMemoryMetric):
    """Series ``allocated``, ``reserved``, ``device_used`` and ``rss`` of a generic accelerator.

    ``allocated`` and ``reserved`` come from ``torch.accelerator.memory_allocated`` /
    ``memory_reserved`` (the device's caching allocator); their peaks are the allocator's high-water
    marks where ``reset_peak_memory_stats`` works on this device, else the sampler's maximum,
    flagged ``exact_peak: false``. ``device_used`` is total minus free of ``get_memory_info``
    (every process counts). Where the allocator gives torch no statistics, only what the device
    reports (or the host) is measured, with a warning saying so.
    """

    torch_module = "accelerator"

    def __init__(
        self,
        device: torch.device | str | None = None,
        *,
        backend: HardwareBackend | None = None,
        index: int | None = None,
        **options: Any,
    ) -> None:
        device_type = backend.torch_device_type if backend is not None else str(device)
        self.device_type = device_type.split(":")[0]
        # Per instance: one metric class measures every device type torch.accelerator drives.
        self.platform = backend.name if backend is not None else self.device_type  # type: ignore[misc]
        # Known before the base class asks for the series. Without a backend to ask, the
        # allocator is assumed to have what torch's API names.
        everything = frozenset(Capability)
        index = device_index(device) if index is None else index
        capabilities = everything if backend is None else backend.capabilities(index)
        self._has_stats = Capability.MEMORY_STATS in capabilities
        self._has_info = Capability.DEVICE_MEMORY_INFO in capabilities
        self._peak_resets = Capability.PEAK_MEMORY_RESET in capabilities
        primary = "allocated" if self._has_stats else "device_used" if self._has_info else "rss"
        self.primary_series = primary  # type: ignore[misc]
        super().__init__(device, backend=backend, index=index, **options)

    def _module(self) -> Any:
        import torch

        return torch.accelerator

    def series(self) -> tuple[str, ...]:
        """The allocator's series where it keeps statistics, ``device_used``, then ``rss``."""
        allocator = ("allocated", "reserved") if self._has_stats else ()
        return (*allocator, *(("device_used",) if self._has_info else ()), "rss")

    def _read(self) -> dict[str, int]:
        api, index = self._module(), self.device_index
        values: dict[str, int] = {}
        if self._has_stats:
            values["allocated"] = int(api.memory_allocated(index))
            values["reserved"] = int(api.memory_reserved(index))
        if self._has_info:
            free, total = api.get_memory_info(index)
            values["device_used"] = int(total) - int(free)
        values["rss"] = read_rss_bytes()
        return values

    def _high_water_counters(self) -> tuple[Hashable, ...]:
        # The allocator behind torch.accelerator is the device module's: one counter for both.
        return (peak_counter_key(self.device_type, self.device_index), vmhwm_counter())

    def _on_start(self) -> None:
        if not self._has_stats:
            self.warnings.append(
                f"the {self.device_type} allocator gives torch.accelerator no statistics: "
                "no allocated/reserved series"
            )

    def _reset_high_water(self) -> frozenset[str]:
        if self._has_stats and self._peak_resets:
            return super()._reset_high_water()
        if self._has_stats:
            warning = (
                f"torch.accelerator.reset_peak_memory_stats does not work on {self.device_type}: "
                f"allocated/reserved peaks are sampled every {self.interval_s * 1e3:g} ms and "
                "can miss shorter spikes"
            )
            if warning not in self.warnings:  # once, not once per measure() block
                self.warnings.append(warning)
        return reset_rss_high_water(self.warnings)
