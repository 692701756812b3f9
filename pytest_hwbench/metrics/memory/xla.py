"""TPUs and other PJRT devices: the device allocator's bytes in use; peaks sampled, or proven."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pytest_hwbench.hardware.peak_counters import peak_counter_key
from pytest_hwbench.hardware.xla import import_torch_xla, memory_info_bytes
from pytest_hwbench.metrics.memory._host import (
    read_rss_bytes,
    reset_rss_high_water,
    rss_high_water,
    vmhwm_counter,
)
from pytest_hwbench.metrics.memory.base import MemoryMetric

__all__ = ["XLAMemoryMetric"]


class XLAMemoryMetric(MemoryMetric):
    """Series ``used`` (device bytes in use, from ``xm.get_memory_info``) and ``rss``.

    ``used`` is the PJRT allocator's ``bytes_used`` (``kb_total - kb_free`` on torch_xla 2.0):
    every live buffer of this process on the device, compiled programs included.

    Peaks. torch_xla's ``peak_bytes_used`` (2.6+) is the allocator's high-water mark over the
    whole process and nothing resets it, so it is not this measurement's peak in general. One
    case is exact all the same: if that lifetime peak *rose* between the start and the end, the
    device reached its new value inside the window (it had never been that high before), and the
    window's peak is exactly that value. So the metric notes the lifetime peak at its start (and
    at each `measure` block's start) and reports ``used`` as exact only when it rose; otherwise
    the peak is the sampler's maximum, flagged ``exact_peak: false``, with a warning saying that
    the device had been higher before. Without ``peak_bytes_used`` the peak is always sampled.

    Reads wait for launched executions (``xm.wait_device_ops``) but never cut the lazy graph:
    memory of operations not yet launched (before the test's own ``torch_xla.sync()``) is not
    allocated yet, and forcing a sync here would change what the test compiles.
    """

    platform = "xla"
    primary_series = "used"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The device's lifetime peak when the current window (metric or block) started.
        self._peak_floor: int | None = None

    def _xm(self) -> Any:
        return import_torch_xla("core.xla_model")

    def _memory_info(self) -> tuple[int, int, int | None]:
        import torch

        info = self._xm().get_memory_info(torch.device("xla", self.device_index))
        return memory_info_bytes(info)

    def series(self) -> tuple[str, ...]:
        """``used`` and ``rss``."""
        return ("used", "rss")

    def _read(self) -> dict[str, int]:
        used, _, _ = self._memory_info()
        return {"used": used, "rss": read_rss_bytes()}

    def _synchronize(self) -> None:
        self._xm().wait_device_ops()

    def _high_water_counters(self) -> tuple[Hashable, ...]:
        return (peak_counter_key("xla", self.device_index), vmhwm_counter())

    def _reset_high_water(self) -> frozenset[str]:
        exact: set[str] = set()
        _, _, peak = self._memory_info()
        if peak is None:
            self._peak_floor = None
            note = (
                "this torch_xla reports no device peak (peak_bytes_used, torch_xla 2.6+): the "
                f"used peak is sampled every {self.interval_s * 1e3:g} ms and can miss shorter "
                "spikes"
            )
            if note not in self.warnings:
                self.warnings.append(note)
        else:
            # Nothing can reset it: remember it, and prove a peak only if it rises past this.
            self._peak_floor = peak
            exact.add("used")
        return frozenset(exact) | reset_rss_high_water(self.warnings)

    def _read_high_water(self) -> dict[str, int]:
        peaks: dict[str, int] = {}
        if "used" in self._exact_series and self._peak_floor is not None:
            _, _, peak = self._memory_info()
            if peak is not None and peak > self._peak_floor:
                peaks["used"] = peak
        peaks.update(rss_high_water(self._exact_series))
        return peaks

    def _on_stop(self) -> None:
        if "used" in self._exact_series and "used" not in self._folded_high_water:
            self.warnings.append(
                f"the device's lifetime peak ({self._peak_floor} bytes, peak_bytes_used, which "
                "nothing resets) was reached before this measurement and not passed during it: "
                f"the used peak is sampled every {self.interval_s * 1e3:g} ms and can miss "
                "shorter spikes"
            )
