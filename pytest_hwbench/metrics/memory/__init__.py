"""Memory metrics: one per platform, created by `MemoryMetricFactory.create(device)`.

>>> from pytest_hwbench.metrics.memory import MemoryMetricFactory
>>> with MemoryMetricFactory.create("cpu") as metric:
...     _ = metric.record_memory("after setup")
>>> metric.get_metrics()["series"]["rss"]["peak_bytes"] > 0
True
"""

from pytest_hwbench.metrics.memory.base import MemoryMetric, MemoryMetricError, MetricState
from pytest_hwbench.metrics.memory.cpu import CPUMemoryMetric
from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory
from pytest_hwbench.metrics.memory.sampler import DEFAULT_INTERVAL_S, MIN_INTERVAL_S
from pytest_hwbench.metrics.memory.timeline import MemoryMark, MemorySample, MemoryTimeline

__all__ = [
    "DEFAULT_INTERVAL_S",
    "MIN_INTERVAL_S",
    "CPUMemoryMetric",
    "MemoryMark",
    "MemoryMetric",
    "MemoryMetricError",
    "MemoryMetricFactory",
    "MemorySample",
    "MemoryTimeline",
    "MetricState",
]
