"""Apple GPUs (MPS): allocator and driver memory; peaks sampled unless torch offers a peak API."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pytest_hwbench.hardware.base import Capability
from pytest_hwbench.hardware.peak_counters import peak_counter_key
from pytest_hwbench.metrics.memory._host import (
    read_rss_bytes,
    reset_rss_high_water,
    rss_high_water,
    vmhwm_counter,
)
from pytest_hwbench.metrics.memory.base import MemoryMetric

__all__ = ["MPSMemoryMetric"]


class MPSMemoryMetric(MemoryMetric):
    """Series ``allocated``, ``driver`` and ``rss`` of an Apple GPU.

    ``allocated`` is ``torch.mps.current_allocated_memory`` (live tensors); ``driver`` is
    ``driver_allocated_memory`` (what Metal holds for this process, cache included). torch has
    no MPS high-water mark up to 2.9: the ``allocated`` peak is the sampler's maximum, flagged
    ``exact_peak: false``, unless `torch.accelerator` offers peak stats for MPS.
    """

    platform = "mps"
    primary_series = "allocated"

    def _mps(self) -> Any:
        import torch

        return torch.mps

    def _accelerator_peaks(self) -> bool:
        backend = self.backend
        return backend is not None and backend.has_capability(Capability.PEAK_MEMORY_RESET)

    def series(self) -> tuple[str, ...]:
        """``allocated``, ``driver`` and ``rss``."""
        return ("allocated", "driver", "rss")

    def _read(self) -> dict[str, int]:
        mps = self._mps()
        return {
            "allocated": int(mps.current_allocated_memory()),
            "driver": int(mps.driver_allocated_memory()),
            "rss": read_rss_bytes(),
        }

    def _synchronize(self) -> None:
        self._mps().synchronize()

    def _high_water_counters(self) -> tuple[Hashable, ...]:
        return (peak_counter_key("mps", self.device_index), vmhwm_counter())

    def _reset_high_water(self) -> frozenset[str]:
        exact: set[str] = set()
        if self._accelerator_peaks():
            import torch

            torch.accelerator.reset_peak_memory_stats(self.device_index)
            exact.add("allocated")
        else:
            self.warnings.append(
                "this torch offers no MPS peak-memory API: allocated/driver peaks are sampled "
                f"every {self.interval_s * 1e3:g} ms and can miss shorter spikes"
            )
        return frozenset(exact) | reset_rss_high_water(self.warnings)

    def _read_high_water(self) -> dict[str, int]:
        peaks: dict[str, int] = {}
        if "allocated" in self._exact_series:
            import torch

            peaks["allocated"] = int(torch.accelerator.max_memory_allocated(self.device_index))
        peaks.update(rss_high_water(self._exact_series))
        return peaks
