"""Names every layer may share: fixtures, markers, environment variables and plain stash keys.

A leaf: it imports nothing of ours, so any module can name a fixture or read a variable without
pulling in the module that owns the thing named.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = [
    "BACKEND_FIXTURE",
    "BENCHMARK_RESULT_KEY",
    "DEVICES_FIXTURE",
    "DEVICE_FIXTURE",
    "DISTRIBUTED_MARKER",
    "DTYPE_FIXTURE",
    "ENERGY_FIXTURE",
    "ENERGY_LIMIT_MARKER",
    "ENERGY_RESULT_KEY",
    "FAILURE_KEY",
    "GPU_PLAN_ENV",
    "HARDWARE_MARKER",
    "HOST_PLATFORM",
    "HW_BENCHMARK_FIXTURE",
    "INFO_FIXTURE",
    "LEAK_LIMIT_MARKER",
    "MEMORY_LIMIT_MARKER",
    "MEMORY_RESULT_KEY",
    "OUR_FIXTURES",
    "OUR_MARKERS",
    "PROFILE_FIXTURE",
    "PYTEST_BENCHMARK_FIXTURE",
    "RANKS_RESULT_KEY",
    "RANK_FIXTURE",
    "SESSION_PLUGIN_NAME",
    "STRETCH_RESULT_KEY",
    "WORLD_SIZE_FIXTURE",
    "XDIST_WORKER_ENV",
]

#: The `torch.device` a test runs on; tests using it run once per selected platform.
DEVICE_FIXTURE = "hw_device"
#: The `torch.dtype` a test computes in; tests using it run once per selected dtype.
DTYPE_FIXTURE = "hw_dtype"
#: The devices a ``min_count=N`` test was granted: a list of N `torch.device`.
DEVICES_FIXTURE = "hw_devices"
#: A distributed test's rank (0 .. world size - 1), in each of its processes.
RANK_FIXTURE = "hw_rank"
#: A distributed test's number of ranks.
WORLD_SIZE_FIXTURE = "hw_world_size"
#: The `HardwareBackend` behind ``hw_device``.
BACKEND_FIXTURE = "hw_backend"
#: A running memory metric for the test's device.
PROFILE_FIXTURE = "memory_profile"
#: A running energy metric for the test's device (its counters, device-wide).
ENERGY_FIXTURE = "energy_profile"
#: Our benchmark fixture: pytest-benchmark's, synchronized with the device, plus memory.
HW_BENCHMARK_FIXTURE = "hw_benchmark"
#: pytest-benchmark's own fixture, which ``hw_benchmark`` drives.
PYTEST_BENCHMARK_FIXTURE = "benchmark"
#: The machine's hardware inventory (session scope).
INFO_FIXTURE = "hw_info"

#: The registry name of the host's backend: tests that name no platform run there.
HOST_PLATFORM = "cpu"

HARDWARE_MARKER = "hardware"
MEMORY_LIMIT_MARKER = "memory_limit"
LEAK_LIMIT_MARKER = "memory_leak_limit"
ENERGY_LIMIT_MARKER = "energy_limit"
DISTRIBUTED_MARKER = "distributed"

#: Fixtures and markers that make a test ours: only tests using one wake the session.
OUR_FIXTURES = frozenset(
    {
        DEVICE_FIXTURE,
        DTYPE_FIXTURE,
        DEVICES_FIXTURE,
        PROFILE_FIXTURE,
        BACKEND_FIXTURE,
        HW_BENCHMARK_FIXTURE,
        ENERGY_FIXTURE,
        RANK_FIXTURE,
        WORLD_SIZE_FIXTURE,
    }
)
OUR_MARKERS = frozenset(
    {
        HARDWARE_MARKER,
        MEMORY_LIMIT_MARKER,
        LEAK_LIMIT_MARKER,
        ENERGY_LIMIT_MARKER,
        DISTRIBUTED_MARKER,
    }
)

#: Carries the xdist controller's GPU plan to its workers (they inherit the environment).
GPU_PLAN_ENV = "PYTEST_HWBENCH_GPU_PLAN"
#: Set by pytest-xdist in each worker: "gw0", "gw1", ...
XDIST_WORKER_ENV = "PYTEST_XDIST_WORKER"

#: The name the session object is registered under with pytest's plugin manager.
SESSION_PLUGIN_NAME = "hwbench_session"

#: A test's memory results (its metric's `get_metrics()` with the timeline), for its entry.
MEMORY_RESULT_KEY = pytest.StashKey[dict[str, Any]]()
#: A host test's memory measured for a report by the run's `HostStretch`: its `StretchResult`
#: (a named tuple), which the report encodes without building the dict form.
STRETCH_RESULT_KEY = pytest.StashKey[tuple[Any, ...]]()
#: A test's energy: its `EnergyMetric`'s results, or why its device has no counter to read.
ENERGY_RESULT_KEY = pytest.StashKey[dict[str, Any]]()
#: Why a test failed when a check of ours failed it (a memory limit, a leak), for its entry.
FAILURE_KEY = pytest.StashKey[dict[str, Any]]()
#: A distributed test's ranks: each one's rank, device, status and memory, for its entry.
RANKS_RESULT_KEY = pytest.StashKey[list[dict[str, Any]]]()
#: The timing statistics of a test's ``hw_benchmark`` run, for its entry.
BENCHMARK_RESULT_KEY = pytest.StashKey[dict[str, Any]]()
