"""Energy metrics: what a device used over a stretch of code, from its hardware counters.

>>> from pytest_hwbench.metrics.energy import EnergyMetricFactory
>>> with EnergyMetricFactory.create("cpu") as metric:  # doctest: +SKIP
...     train_step()
>>> metric.get_metrics()["domains"]["package-0"]["joules"]  # doctest: +SKIP
3.91

`EnergyMetricFactory.create` raises `EnergyUnavailableError` (from `pytest_hwbench.hardware`)
where the device has no counter this process may read; docs/energy.md says what each covers.
"""

from __future__ import annotations

from pytest_hwbench.metrics.energy.factory import EnergyMetricFactory
from pytest_hwbench.metrics.energy.metric import EnergyMetric, EnergyMetricError

__all__ = ["EnergyMetric", "EnergyMetricError", "EnergyMetricFactory"]
