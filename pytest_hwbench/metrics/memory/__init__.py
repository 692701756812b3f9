"""Memory metrics: one per platform, created by `MemoryMetricFactory.create(device)`.

>>> from pytest_hwbench.metrics.memory import MemoryMetricFactory
>>> with MemoryMetricFactory.create("cpu") as metric:
...     _ = metric.record_memory("after setup")
>>> metric.get_metrics()["series"]["rss"]["peak_bytes"] > 0
True

The names below load on first use: the plugin imports this package's constants at start-up and
must not pay for the metrics themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_hwbench._lazy import lazy_exports

if TYPE_CHECKING:
    from pytest_hwbench.metrics.memory.base import MemoryMetric, MemoryMetricError, MetricState
    from pytest_hwbench.metrics.memory.cpu import CPUMemoryMetric
    from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory
    from pytest_hwbench.metrics.memory.reader import MemoryReader
    from pytest_hwbench.metrics.memory.registry import (
        MemoryMetricRegistry,
        default_memory_metric_registry,
    )
    from pytest_hwbench.metrics.memory.timeline import MemoryMark, MemorySample, MemoryTimeline
    from pytest_hwbench.metrics.sampler import DEFAULT_INTERVAL_S, MIN_INTERVAL_S

_EXPORTS = {
    "DEFAULT_INTERVAL_S": "base",  # the sampler's (metrics/sampler.py), as memory uses it
    "MIN_INTERVAL_S": "base",
    "CPUMemoryMetric": "cpu",
    "MemoryMark": "timeline",
    "MemoryMetric": "base",
    "MemoryMetricError": "base",
    "MemoryMetricFactory": "factory",
    "MemorySample": "timeline",
    "MemoryTimeline": "timeline",
    "MetricState": "base",
    "MemoryReader": "reader",
    "MemoryMetricRegistry": "registry",
    "default_memory_metric_registry": "registry",
}

__all__ = [
    "DEFAULT_INTERVAL_S",
    "MIN_INTERVAL_S",
    "CPUMemoryMetric",
    "MemoryMark",
    "MemoryMetric",
    "MemoryMetricError",
    "MemoryMetricFactory",
    "MemoryMetricRegistry",
    "MemoryReader",
    "MemorySample",
    "MemoryTimeline",
    "MetricState",
    "default_memory_metric_registry",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
