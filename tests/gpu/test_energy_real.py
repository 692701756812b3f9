"""Energy counters on real hardware: twins of tests/unit/hardware/test_energy_nvml.py.

The unit tests drive NVML's counter through `FakeNVML`'s board (mJ, update steps, power in mW);
these check that a real GPU's counter moves the same way under load, so a fake that drifted
from the driver shows up here.
"""

from __future__ import annotations

import time

import pytest
import torch

from pytest_hwbench import hardware
from pytest_hwbench.hardware import _nvml

pytestmark = pytest.mark.hardware("cuda")


def _busy(seconds: float) -> None:
    a = torch.randn(8192, 8192, device="cuda")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(10):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


def test_the_counter_advances_under_load_in_the_power_it_reports() -> None:
    try:
        (counter,) = hardware.get_hardware_backend("cuda").energy_counters(0)
    except hardware.EnergyUnavailableError as exc:
        pytest.skip(f"no energy counter on this GPU: {exc}")
    handle = _nvml.handle_for_torch_device(0)
    _busy(0.3)  # clocks up
    start_j, start_t = counter.read_joules(), time.monotonic()
    _busy(2.0)
    watts = (_nvml.device_power_mw(handle) or 0) / 1000
    joules, seconds = counter.read_joules() - start_j, time.monotonic() - start_t
    assert joules > 0
    # The counter's mean power agrees with the board's reported draw under the same load
    # (NVML's power is an average over about a second; the counter lags by one update).
    assert joules / seconds == pytest.approx(watts, rel=0.25)
    assert 20 < watts < 1500  # plausible for any datacenter or desktop board
