"""Energy counters on real hardware: twins of tests/unit/hardware/test_energy_nvml.py.

The unit tests drive NVML's counter through `FakeNVML`'s board (mJ, update steps, power in mW);
these check that a real GPU's counter moves the same way under load, so a fake that drifted
from the driver shows up here.
"""

from __future__ import annotations

import json
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


SUITE = """
import time
import pytest
import torch

def _busy(seconds):
    a = torch.randn(8192, 8192, device="cuda")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(10):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()

@pytest.mark.hardware("cuda")
def test_0_clocks_up():
    _busy(1.5)  # NVML's power is a ~1 s average: the next test starts at the loaded draw

@pytest.mark.hardware("cuda")
def test_1_sustained():
    _busy(2.0)

@pytest.mark.hardware("cuda")
def test_2_five_ms():
    time.sleep(0.005)

@pytest.mark.hardware("cuda")
def test_3_idle():
    time.sleep(2.0)
"""


def test_hw_energy_per_test_on_the_gpu(pytester: pytest.Pytester) -> None:
    """The plugin's twin of tests/plugin/test_energy.py's GPU test, on the real board."""
    try:
        hardware.get_hardware_backend("cuda").energy_counters(0)
    except hardware.EnergyUnavailableError as exc:
        pytest.skip(f"no energy counter on this GPU: {exc}")
    pytester.makepyfile(SUITE)
    report = pytester.path / "hw.json"
    result = pytester.runpytest("--hw-energy", f"--hw-report={report}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    tests = {
        t["nodeid"].rpartition("::")[2]: t["energy"]
        for t in json.loads(report.read_text())["tests"]
    }
    sustained = tests["test_1_sustained"]
    gpu = sustained["domains"]["gpu"]
    print("sustained:", json.dumps({k: v for k, v in sustained.items() if k != "power"}))
    print("idle:", json.dumps({k: v for k, v in tests["test_3_idle"].items() if k != "power"}))
    print("5 ms:", json.dumps(tests["test_2_five_ms"]))
    assert gpu["method"] == "counter"
    assert sustained["exact"] is True
    # The counter and the sampled power, integrated, agree on a steady 2 s load.
    assert gpu["power_joules"] == pytest.approx(gpu["joules"], rel=0.05)
    short = tests["test_2_five_ms"]
    assert short["exact"] is False
    assert short["domains"]["gpu"]["method"] == "power x duration"
    idle_watts = tests["test_3_idle"]["domains"]["gpu"]["mean_watts"]
    assert 10 < idle_watts < gpu["mean_watts"] < 1500
