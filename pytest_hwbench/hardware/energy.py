"""Energy counters: what a platform offers to measure the energy its devices use.

A counter is device-wide and cumulative, as the hardware's are (RAPL's per CPU package, NVML's per
GPU): it counts every process on the device, not this one alone, and advances only as often as
the hardware updates it. `EnergyCounter.read_joules` gives joules since the counter was opened,
wrap-arounds included; a backend's `energy_counters` opens its device's, or raises
`EnergyUnavailableError` saying why there are none and what would help.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["EnergyCounter", "EnergyUnavailableError"]


class EnergyUnavailableError(RuntimeError):
    """No energy counter can be read here; the message says why, and what would help."""


class EnergyCounter(ABC):
    """One device-wide cumulative energy counter, read as joules since it was opened."""

    #: The counter's name in reports: ``package-0``, ``dram-0``, ``gpu``.
    domain: str
    #: What the figure covers, in words: the device, and that every process on it counts.
    covers: str
    #: How often the hardware advances the counter, in seconds (None where unknown): a window
    #: shorter than this reads 0 or a whole update, and can only be estimated.
    update_period_s: float | None

    @abstractmethod
    def read_joules(self) -> float:
        """Joules the device used since this counter was opened (safe from several threads)."""

    def read_watts(self) -> float | None:
        """The device's power draw now, where the hardware reports one apart (NVML); else None.

        What a window shorter than `update_period_s` is estimated from.
        """
        return None
