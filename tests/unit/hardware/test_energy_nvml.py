"""A GPU's energy counter through NVML, against the fake's board: mJ, coarse updates, Volta+."""

from __future__ import annotations

import pytest

from pytest_hwbench import hardware
from pytest_hwbench.hardware import _nvml
from pytest_hwbench.testing import FakeCudaDevice, fake_cuda, no_nvml


class ManualClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_counter_is_the_boards_joules_in_its_update_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    cuda = fake_cuda(monkeypatch, count=1, nvml={"clock": clock})
    nvml = cuda.nvml
    assert nvml is not None
    (counter,) = hardware.get_hardware_backend("cuda").energy_counters(0)
    assert counter.domain == "gpu"
    assert counter.covers == "cuda:0 (NVIDIA H100 80GB HBM3): the whole board, every process on it"
    assert counter.update_period_s == pytest.approx(0.1)
    assert counter.read_joules() == 0.0  # counted from when it was opened, not the driver's load
    nvml.set_power_mw(nvml.gpus[0], 300_000)  # a load starts: 300 W
    clock.now += 0.05  # inside one update: nothing shows yet
    assert counter.read_joules() == 0.0
    clock.now += 0.05
    assert counter.read_joules() == pytest.approx(30.0)  # 300 W x 0.1 s, at the update
    clock.now += 0.95
    assert counter.read_joules() == pytest.approx(300.0)  # 1.0 s of updates; 0.05 s unseen
    nvml.set_power_mw(nvml.gpus[0], 70_000)  # idle again
    clock.now += 1.0
    assert counter.read_joules() == pytest.approx(300.0 + 15.0 + 66.5, abs=0.002)  # whole mJ
    handle = _nvml.handle_for_torch_device(0)
    assert _nvml.device_power_mw(handle) == 70_000


def test_a_gpu_before_volta_has_no_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, devices=[FakeCudaDevice.nvidia((6, 0))])
    with pytest.raises(hardware.EnergyUnavailableError) as excinfo:
        hardware.get_hardware_backend("cuda").energy_counters(0)
    assert str(excinfo.value) == (
        "this device has no total-energy counter (NVML: not supported): it needs a Volta or "
        "later GPU, and a MIG instance has none (its GPU's counts every instance)"
    )


def test_a_mig_instance_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeCudaDevice.nvidia((8, 0)).with_mig(("1g.10gb", 10 * 2**30, 14))
    fake_cuda(monkeypatch, devices=[gpu], visible=[gpu.mig_devices[0].nvml_uuid])
    with pytest.raises(hardware.EnergyUnavailableError, match="a MIG instance has none"):
        hardware.get_hardware_backend("cuda").energy_counters(0)


def test_without_nvml_the_reason_is_nvmls(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, nvml=False)
    with pytest.raises(hardware.EnergyUnavailableError) as excinfo:
        hardware.get_hardware_backend("cuda").energy_counters(0)
    assert str(excinfo.value).startswith("the GPU's energy is read through NVML: ")
    no_nvml(monkeypatch)
    assert _nvml.device_power_mw(object()) is None
