"""Shared measuring of torch caching allocators (torch.cuda on NVIDIA and ROCm, torch.xpu)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar

from pytest_hwbench.hardware.peak_counters import peak_counter_key
from pytest_hwbench.metrics.memory._host import (
    read_rss_bytes,
    reset_rss_high_water,
    rss_high_water,
    vmhwm_counter,
)
from pytest_hwbench.metrics.memory.base import MemoryMetric

__all__ = ["AllocatorMemoryMetric"]


class AllocatorMemoryMetric(MemoryMetric):
    """A torch caching allocator's ``allocated`` and ``reserved`` series, plus the host ``rss``.

    ``allocated`` is live tensors; ``reserved`` adds the allocator's cache; platforms may add
    device-level series. Exact peaks: the allocator's ``max_memory_allocated/reserved`` after
    ``reset_peak_memory_stats`` at start, read after a synchronize; ``rss`` from VmHWM.
    """

    primary_series = "allocated"
    #: The torch submodule whose allocator functions this metric calls ("cuda", "xpu").
    torch_module: ClassVar[str]

    def _module(self) -> Any:
        import torch

        return getattr(torch, self.torch_module)

    def _device_series(self) -> tuple[str, ...]:
        """Device-level series the platform adds (read by `_read_device`)."""
        return ()

    def _read_device(self) -> dict[str, int]:
        return {}

    def series(self) -> tuple[str, ...]:
        """``allocated``, ``reserved``, the platform's device-level series, then ``rss``."""
        return ("allocated", "reserved", *self._device_series(), "rss")

    def _read(self) -> dict[str, int]:
        module, index = self._module(), self.device_index
        values = {
            "allocated": int(module.memory_allocated(index)),
            "reserved": int(module.memory_reserved(index)),
        }
        values.update(self._read_device())
        values["rss"] = read_rss_bytes()
        return values

    def _synchronize(self) -> None:
        self._module().synchronize(self.device_index)

    def _high_water_counters(self) -> tuple[Hashable, ...]:
        return (peak_counter_key(self.torch_module, self.device_index), vmhwm_counter())

    def _reset_high_water(self) -> frozenset[str]:
        exact: set[str] = set()
        try:
            self._module().reset_peak_memory_stats(self.device_index)
            exact |= {"allocated", "reserved"}
        except Exception as exc:  # e.g. an allocator without peak stats: keep measuring
            self.warnings.append(
                f"reset_peak_memory_stats failed ({type(exc).__name__}: {exc}): "
                f"{self.platform} peaks are sampled"
            )
        return frozenset(exact) | reset_rss_high_water(self.warnings)

    def _read_high_water(self) -> dict[str, int]:
        module, index = self._module(), self.device_index
        peaks: dict[str, int] = {}
        if "allocated" in self._exact_series:
            peaks["allocated"] = int(module.max_memory_allocated(index))
            peaks["reserved"] = int(module.max_memory_reserved(index))
        peaks.update(rss_high_water(self._exact_series))
        return peaks
