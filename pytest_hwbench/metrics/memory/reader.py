"""`MemoryReader`: what a platform's memory metric provides, and the device it reads.

The platform half of a `MemoryMetric`: which series there are and how to read them, how to wait
for the device, and the platform's high-water marks (which counters, how to reset and read them,
and what a metric keeps of them when another measurement resets the counter). `MemoryMetric`
adds the measuring: the state machine, the sampler, the timeline and the statistics.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = ["MemoryReader", "device_index"]


def device_index(device: object) -> int:
    """The index in "cuda:1" or ``torch.device("cuda", 1)``; 0 when none is given."""
    raw = getattr(device, "index", None)
    if isinstance(raw, int):
        return raw
    if isinstance(device, str) and ":" in device:
        tail = device.rsplit(":", 1)[1]
        return int(tail) if tail.isdigit() else 0
    return 0


class MemoryReader(ABC):
    """Reads one device's memory series (bytes) and the platform's high-water marks of them."""

    #: The registry name of the platform this metric measures.
    platform: ClassVar[str] = "cpu"
    #: The series that limits, leak checks and summaries use (the test's own memory).
    primary_series: ClassVar[str] = "rss"
    #: The samplers this metric implements; others fall back to the thread, with a warning.
    supported_samplers: ClassVar[tuple[str, ...]] = ("thread",)

    def __init__(
        self,
        device: torch.device | str | None = None,
        *,
        backend: HardwareBackend | None = None,
        index: int | None = None,
    ) -> None:
        self.device = device
        self.backend = backend
        self.device_index = device_index(device) if index is None else index
        self.warnings: list[str] = []
        self._lock = threading.RLock()
        #: The series whose peak the platform's high-water mark covers since the last reset.
        self._exact_series: frozenset[str] = frozenset()
        #: High-water marks kept from before another measurement reset a shared counter.
        self._folded_high_water: dict[str, int] = {}
        self._device_info: dict[str, Any] | None = None

    # -- what subclasses provide -----------------------------------------------------------------

    @abstractmethod
    def series(self) -> tuple[str, ...]:
        """The names of the series this metric reads, e.g. ("allocated", "reserved", "rss")."""

    @abstractmethod
    def _read(self) -> dict[str, int]:
        """Read every series now, in bytes."""

    def _read_raw(self) -> object:
        """What a sampler tick reads: `_decode_raw` turns it into `_read`'s values later.

        Runs on the sampler thread while the measured code waits for the GIL: a subclass may
        return something cheaper than `_read`'s dict (bytes as read) and decode it later.
        """
        return self._read()

    def _decode_raw(self, raw: Any) -> Mapping[str, int]:
        """`_read`'s values from what `_read_raw` returned."""
        return raw  # type: ignore[no-any-return]

    def _synchronize(self) -> None:
        """Wait for the device's queued work, so counters include it (no-op on the host)."""

    def _high_water_counters(self) -> tuple[Hashable, ...]:
        """Keys naming the high-water counters this metric resets (VmHWM, a device's peaks)."""
        return ()

    def _reset_high_water(self) -> frozenset[str]:
        """Reset the platform's high-water marks; return the series whose peak is now exact."""
        return frozenset()

    def _read_high_water(self) -> dict[str, int]:
        """The platform's high-water marks (bytes) for the series `_reset_high_water` named."""
        return {}

    def _on_start(self) -> None:
        """Prepare platform resources (open files, handles) before the first reading."""

    def _on_stop(self) -> None:
        """Release what `_on_start` prepared."""

    def describe_device(self) -> dict[str, Any]:
        """The measured device for reports: name, index and, where known, its properties."""
        if self._device_info is None:  # a device's properties do not change: build it once
            info: dict[str, Any] = {"platform": self.platform, "index": self.device_index}
            if self.backend is not None:
                # "cuda:0", not the "cuda" a caller may have passed: reports name one device.
                info["device"] = self.backend.device_label(self.device_index)
            elif self.device is not None:
                info["device"] = str(self.device)
            if self.backend is not None:
                try:
                    info["properties"] = self.backend.properties_dict(self.device_index)
                except Exception as exc:
                    info["properties_error"] = f"{type(exc).__name__}: {exc}"
            self._device_info = info
        return dict(self._device_info)

    def read_current(self) -> dict[str, int]:
        """Synchronize the device and read every series now, started or not (bytes)."""
        self._synchronize()
        return self._read()

    # -- high-water marks --------------------------------------------------------------------------

    def _safe_read_high_water(self) -> dict[str, int]:
        if not self._exact_series:
            return {}
        try:
            return self._read_high_water()
        except Exception as exc:
            self.warnings.append(
                f"reading high-water marks failed ({type(exc).__name__}: {exc}); peaks are sampled"
            )
            self._exact_series = frozenset()
            return {}

    def _fold_high_water(self) -> None:
        """Keep the high-water marks seen so far before another metric resets the counter."""
        with self._lock:
            for name, value in self._safe_read_high_water().items():
                self._folded_high_water[name] = max(self._folded_high_water.get(name, 0), value)
