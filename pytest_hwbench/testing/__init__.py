"""Fake hardware for tests: make a platform look present (N devices, given properties) or absent.

Public, so users can fake hardware in their own test suites as we do in ours. The platform
fakes patch the torch (and pynvml) functions our backends call, with the real units, errors and
allocator semantics, so code under test cannot tell them from the device.
"""

from __future__ import annotations

from pytest_hwbench.testing._accelerator import (
    FakeAccelerator,
    FakeAcceleratorDeviceProperties,
    fake_accelerator,
)
from pytest_hwbench.testing._amdsmi import FakeAmdSmi, fake_amdsmi, no_amdsmi
from pytest_hwbench.testing._backend import FakeBackend, fake_registry
from pytest_hwbench.testing._cuda import (
    FakeAllocation,
    FakeCuda,
    FakeCudaDevice,
    FakeCudaDeviceProperties,
    FakeCudaUUID,
    FakeNVML,
    FakeNVMLHandle,
    NVMLError,
    cpu_only_torch,
    fake_cuda,
    fake_nvml,
    fake_rocm,
    no_nvml,
)
from pytest_hwbench.testing._mps import FakeMPS, fake_mps, no_mps
from pytest_hwbench.testing._powercap import FakePowercap
from pytest_hwbench.testing._xla import FakeXLA, fake_xla, no_xla
from pytest_hwbench.testing._xpu import (
    FakeXPU,
    FakeXPUDeviceProperties,
    FakeXPUuuid,
    fake_xpu,
    no_xpu,
)

__all__ = [
    "FakeAccelerator",
    "FakeAcceleratorDeviceProperties",
    "FakeAllocation",
    "FakeAmdSmi",
    "FakeBackend",
    "FakeCuda",
    "FakeCudaDevice",
    "FakeCudaDeviceProperties",
    "FakeCudaUUID",
    "FakeMPS",
    "FakeNVML",
    "FakeNVMLHandle",
    "FakePowercap",
    "FakeXLA",
    "FakeXPU",
    "FakeXPUDeviceProperties",
    "FakeXPUuuid",
    "NVMLError",
    "cpu_only_torch",
    "fake_accelerator",
    "fake_amdsmi",
    "fake_cuda",
    "fake_mps",
    "fake_nvml",
    "fake_registry",
    "fake_rocm",
    "fake_xla",
    "fake_xpu",
    "no_amdsmi",
    "no_mps",
    "no_nvml",
    "no_xla",
    "no_xpu",
]
