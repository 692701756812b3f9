"""An AMD GPU's energy through AMD SMI, against the fake's boards: µJ, PCI matching, why not."""

from __future__ import annotations

import pytest

from pytest_hwbench import hardware
from pytest_hwbench.metrics.energy import EnergyMetric, EnergyMetricFactory
from pytest_hwbench.testing import FakeAmdSmi, FakeCudaDevice, fake_rocm


class ManualClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _rocm(monkeypatch: pytest.MonkeyPatch, **options: object) -> tuple[FakeAmdSmi, ManualClock]:
    clock = ManualClock()
    amdsmi_options = {"clock": clock, **options.pop("amdsmi", {})}  # type: ignore[dict-item]
    cuda = fake_rocm(monkeypatch, amdsmi=amdsmi_options, **options)  # type: ignore[arg-type]
    assert isinstance(cuda.amdsmi, FakeAmdSmi)
    return cuda.amdsmi, clock


def test_the_counter_is_the_boards_accumulator_in_joules(monkeypatch: pytest.MonkeyPatch) -> None:
    amdsmi, clock = _rocm(monkeypatch, devices=[FakeCudaDevice.amd("gfx942")])
    (counter,) = hardware.get_hardware_backend("rocm").energy_counters(0)
    assert counter.domain == "gpu"
    assert counter.covers == ("cuda:0 (AMD Instinct MI300X): the whole board, every process on it")
    assert counter.update_period_s == pytest.approx(0.001)
    assert counter.read_joules() == 0.0  # from when it was opened, not the driver's load
    amdsmi.set_power_w(amdsmi.cuda.gpus[0], 600)
    clock.now += 2.0
    # 1200 J in units of 15.259 µJ: whole units only, as the hardware counts.
    assert counter.read_joules() == pytest.approx(1200.0, abs=2e-5)
    assert counter.read_watts() == 600.0


def test_a_board_without_a_current_reading_gives_its_average(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    amdsmi, _ = _rocm(monkeypatch, amdsmi={"average_power_only": True})
    amdsmi.set_power_w(amdsmi.cuda.gpus[0], 250)
    (counter,) = hardware.get_hardware_backend("rocm").energy_counters(0)
    assert counter.read_watts() == 250.0


def test_torch_devices_are_matched_by_pci_address_whatever_hip_hides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    boards = [FakeCudaDevice.amd("gfx90a"), FakeCudaDevice.amd("gfx90a")]
    amdsmi, clock = _rocm(monkeypatch, devices=boards, visible=[1])  # torch's 0 is board 1
    (counter,) = hardware.get_hardware_backend("rocm").energy_counters(0)
    amdsmi.set_power_w(boards[0], 500)  # the hidden board works hard
    amdsmi.set_power_w(boards[1], 100)
    clock.now += 1.0
    assert counter.read_joules() == pytest.approx(100.0, abs=2e-5)


def test_without_pci_addresses_only_a_single_gpu_is_matched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    boards = [FakeCudaDevice.amd("gfx90a"), FakeCudaDevice.amd("gfx90a")]
    _rocm(monkeypatch, devices=boards)
    props = torch.cuda.get_device_properties(0)
    monkeypatch.delattr(props, "pci_bus_id")  # a torch that does not report it
    with pytest.raises(hardware.EnergyUnavailableError) as excinfo:
        hardware.get_hardware_backend("rocm").energy_counters(0)
    assert str(excinfo.value) == (
        "cannot tell which of AMD SMI's 2 GPUs is torch's device 0: this torch exposes no PCI "
        "address (pci_bus_id) to match them by"
    )


def test_without_the_extra_the_reason_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_rocm(monkeypatch)  # amdsmi cannot be imported
    with pytest.raises(hardware.EnergyUnavailableError) as excinfo:
        hardware.get_hardware_backend("rocm").energy_counters(0)
    assert str(excinfo.value) == (
        "an AMD GPU's energy is read through AMD SMI: AMD SMI is not installed: pip install "
        "'pytest-hwbench[rocm]' (AMD SMI's Python bindings, amdsmi)"
    )


def test_a_missing_driver_and_a_vm_guest_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _rocm(monkeypatch, amdsmi={"init_error": 34})
    with pytest.raises(hardware.EnergyUnavailableError, match="AMD SMI failed to initialize"):
        hardware.get_hardware_backend("rocm").energy_counters(0)
    _rocm(monkeypatch, amdsmi={"energy_supported": False})
    with pytest.raises(hardware.EnergyUnavailableError) as excinfo:
        hardware.get_hardware_backend("rocm").energy_counters(0)
    assert "not supported in a virtual machine guest" in str(excinfo.value)


def test_a_window_shorter_than_the_refresh_is_estimated_from_power(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    amdsmi, clock = _rocm(monkeypatch)
    amdsmi.set_power_w(amdsmi.cuda.gpus[0], 400)
    base = EnergyMetricFactory.create("rocm")
    metric = EnergyMetric(base.device, backend=base.backend, index=0, counters=base.counters,
                          clock=clock)  # fmt: skip
    with metric:
        clock.now += 0.0004
    (gpu,) = metric.get_metrics()["domains"].values()
    assert gpu["method"] == "power x duration"
    assert gpu["joules"] == pytest.approx(400 * 0.0004)
