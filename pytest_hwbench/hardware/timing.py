"""`DeviceTimer`: a clock that waits for a device's queued work before each reading.

A benchmark reads its clock at the start and end of every round. Bound to a device that queues
work, the timer synchronizes it first, so a round's time includes the kernels it queued, not only
their launches; where the platform has timing events (CUDA, HIP) it reads device time from them.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = ["DeviceTimer", "load_clock"]


class DeviceTimer:
    """A callable clock (seconds) that waits for the bound device before every reading.

    Bound to a device with timing events it reads them; otherwise it synchronizes the device
    through its backend and reads `base` (perf_counter by default). Unbound, it is `base`.
    """

    __name__: str

    def __init__(self, base: Callable[[], float] = time.perf_counter) -> None:
        self.base = base
        #: How readings are taken: "cuda_events", "synchronize+perf_counter", or the bare clock.
        self.kind = _callable_name(base)
        #: Why events were not used where the platform has them (None: used, or none exist).
        self.fallback_reason: str | None = None
        self._synchronize: Callable[[], None] | None = None
        self._events: Callable[[], float] | None = None
        self.__name__ = f"hwbench_{self.kind}"  # pytest-benchmark's JSON names the timer so

    def bind(self, backend: HardwareBackend, device: torch.device, *, events: bool = True) -> None:
        """Wait for `device` through `backend` at every reading; read its events if it has them.

        ``events=False`` always synchronizes and reads `base` (to compare the two, say).
        """
        if not backend.queues_work():
            return  # nothing is ever queued (the host): the bare clock, without a call per reading
        self._synchronize = functools.partial(backend.synchronize, device)
        self.kind = f"synchronize+{self.kind}"
        clock: Callable[[], float] | None = None
        if events:
            try:
                clock = backend.event_clock(device)
            except Exception as exc:
                self.fallback_reason = (
                    f"{backend.torch_device_type.upper()} events do not work here "
                    f"({type(exc).__name__}: {exc}); timed with {self.kind}"
                )
        if clock is not None:
            self._events = clock
            self.kind = f"{backend.torch_device_type}_events"
        self.__name__ = f"hwbench_{self.kind}"

    def unbind(self) -> None:
        """Drop the device (pytest-benchmark keeps timers for the session)."""
        self._synchronize = None
        self._events = None

    def __call__(self) -> float:
        if self._events is not None:
            return self._events()
        if self._synchronize is not None:
            self._synchronize()
        return self.base()

    # pytest-benchmark caches each timer's precision in a dict: equal timers share one entry.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceTimer):
            return NotImplemented
        return (self.kind, self.base) == (other.kind, other.base)

    def __hash__(self) -> int:
        return hash((DeviceTimer, self.kind, self.base))

    def __repr__(self) -> str:
        return f"<DeviceTimer {self.kind}>"


def _callable_name(function: Callable[..., Any]) -> str:
    return str(getattr(function, "__name__", None) or repr(function))


def load_clock(dotted: str) -> Callable[[], float]:
    """The clock function named "module.attr" (as ``--benchmark-timer`` takes it)."""
    module, _, attr = dotted.rpartition(".")
    function: Callable[[], float] = getattr(importlib.import_module(module), attr)
    return function
