"""Which `MemoryMetric` class measures which hardware backend: the metrics side's own table.

The hardware layer knows nothing of metrics, so the mapping lives here. A metric class is
registered for a backend class (it then measures that class and its subclasses, the most
specific registration winning, as methods resolve) or for a platform name (what third parties
do: an entry point in group ``pytest_hwbench.memory_metrics``, or the pytest hook
``pytest_hwbench_register_memory_metrics(registry)``). A backend nothing is registered for is
measured on the host only (`CPUMemoryMetric`, whose
entries name the platform ``cpu``).
"""

from __future__ import annotations

import importlib
import threading
from importlib import metadata
from typing import TYPE_CHECKING

from pytest_hwbench._lazy import ProcessDefault

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import HardwareBackend
    from pytest_hwbench.metrics.memory.base import MemoryMetric

__all__ = [
    "ENTRY_POINT_GROUP",
    "MemoryMetricRegistry",
    "default_memory_metric_registry",
    "reset_default_memory_metric_registry",
]

#: Entry-point group third-party packages use to ship a memory metric (name: the platform).
ENTRY_POINT_GROUP = "pytest_hwbench.memory_metrics"

#: The built-in backends' metrics, by "module:class" of each side: nothing is imported until a
#: metric is created (a run that profiles only the CPU never loads the CUDA metric).
_BUILTINS = (
    ("pytest_hwbench.hardware.cpu:CPUBackend", "pytest_hwbench.metrics.memory.cpu:CPUMemoryMetric"),
    (
        "pytest_hwbench.hardware.cuda:CUDABackend",
        "pytest_hwbench.metrics.memory.cuda:CUDAMemoryMetric",
    ),
    (
        "pytest_hwbench.hardware.rocm:ROCmBackend",
        "pytest_hwbench.metrics.memory.rocm:ROCmMemoryMetric",
    ),
    ("pytest_hwbench.hardware.mps:MPSBackend", "pytest_hwbench.metrics.memory.mps:MPSMemoryMetric"),
    ("pytest_hwbench.hardware.xpu:XPUBackend", "pytest_hwbench.metrics.memory.xpu:XPUMemoryMetric"),
    ("pytest_hwbench.hardware.xla:XLABackend", "pytest_hwbench.metrics.memory.xla:XLAMemoryMetric"),
    (
        "pytest_hwbench.hardware.accelerator:AcceleratorBackend",
        "pytest_hwbench.metrics.memory.accelerator:AcceleratorMemoryMetric",
    ),
)
_HOST_ONLY = "pytest_hwbench.metrics.memory.cpu:CPUMemoryMetric"


def _dotted(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load(ref: type[MemoryMetric] | str) -> type[MemoryMetric]:
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    loaded: type[MemoryMetric] = getattr(importlib.import_module(module), name)
    return loaded


class MemoryMetricRegistry:
    """Metric classes by backend class or platform name; registering a taken key needs override."""

    def __init__(self) -> None:
        self._by_class: dict[str, type[MemoryMetric] | str] = {}
        self._by_name: dict[str, type[MemoryMetric] | str] = {}
        # What each backend type resolved to: every measured test asks, so it is answered once.
        self._resolved: dict[tuple[type, str], type[MemoryMetric]] = {}
        self._lock = threading.RLock()

    def register(
        self,
        metric_class: type[MemoryMetric] | str,
        *,
        backend: type[HardwareBackend] | str | None = None,
        override: bool = False,
    ) -> None:
        """Measure `backend` (a backend class, or a platform name) with `metric_class`.

        Without `backend` the metric's own ``platform`` names the platform. `metric_class` may
        be a "module:Class" string, imported when first needed.
        """
        if backend is None:
            if isinstance(metric_class, str):
                raise TypeError("a metric given as 'module:Class' needs backend= (class or name)")
            backend = metric_class.platform
        if isinstance(backend, str):
            table, key = self._by_name, backend.strip().lower()
        else:
            table, key = self._by_class, _dotted(backend)
        with self._lock:
            if key in table and not override:
                raise ValueError(
                    f"a memory metric is already registered for {key!r} ({table[key]!r}); "
                    "pass override=True to replace it"
                )
            table[key] = metric_class
            self._resolved.clear()

    def metric_class_for(self, backend: HardwareBackend) -> type[MemoryMetric]:
        """The metric class that measures `backend`'s devices.

        The most specific registration for a class in the backend's class hierarchy, else one
        for its platform name, else the host-only `CPUMemoryMetric`.
        """
        key = (type(backend), backend.name)
        found = self._resolved.get(key)
        if found is not None:
            return found
        with self._lock:
            ref: type[MemoryMetric] | str | None = None
            for cls in type(backend).__mro__:
                ref = self._by_class.get(_dotted(cls))
                if ref is not None:
                    break
            if ref is None:
                ref = self._by_name.get(backend.name, _HOST_ONLY)
            found = self._resolved[key] = _load(ref)
            return found

    def register_builtins(self) -> None:
        """Register the built-in backends' metrics, the generic accelerators' too (imports none)."""
        for backend, metric in _BUILTINS:
            with self._lock:
                self._by_class[backend] = metric
                self._resolved.clear()

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register the metrics installed distributions advertise in `group` (name: platform).

        One that fails to load is left out with a warning: its platform is then measured on the
        host only, never a crash.
        """
        from pytest_hwbench.hardware.base import warn_broken_backend
        from pytest_hwbench.metrics.memory.base import MemoryMetric

        for entry_point in metadata.entry_points(group=group):
            try:
                loaded = entry_point.load()
                if not (isinstance(loaded, type) and issubclass(loaded, MemoryMetric)):
                    raise TypeError(f"{entry_point.value} is not a MemoryMetric subclass")
                self.register(loaded, backend=entry_point.name, override=True)
            except Exception as exc:
                warn_broken_backend(
                    f"memory metric {entry_point.name!r} failed to load from entry point "
                    f"{entry_point.value!r}: {exc}; that platform is measured on the host only"
                )


def _build_default() -> MemoryMetricRegistry:
    registry = MemoryMetricRegistry()
    registry.register_builtins()
    registry.load_entry_points()
    return registry


_DEFAULT = ProcessDefault(_build_default)


def default_memory_metric_registry() -> MemoryMetricRegistry:
    """The process-wide table: built-ins, then entry points (the pytest hook adds the rest)."""
    return _DEFAULT.get()


def reset_default_memory_metric_registry() -> None:
    """Drop the process-wide table, so the next use rebuilds it (for tests)."""
    _DEFAULT.reset()
