"""The energy metric over the fakes' counters: a window's joules, measured or estimated, and why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_hwbench import hardware
from pytest_hwbench.hardware import _rapl
from pytest_hwbench.metrics.energy import EnergyMetric, EnergyMetricError, EnergyMetricFactory
from pytest_hwbench.testing import FakePowercap, fake_cuda


class ManualClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def powercap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePowercap:
    if not sys.platform.startswith("linux"):
        pytest.skip("RAPL is read through Linux's powercap")
    tree = FakePowercap(tmp_path)
    monkeypatch.setattr(_rapl, "POWERCAP_ROOT", str(tmp_path))
    return tree


def _on_clock(metric: EnergyMetric, clock: ManualClock) -> EnergyMetric:
    return EnergyMetric(
        metric.device,
        backend=metric.backend,
        index=metric.index,
        counters=metric.counters,
        clock=clock,
    )


def test_a_cpu_window_is_each_domains_counter_difference(powercap: FakePowercap) -> None:
    clock = ManualClock()
    metric = _on_clock(EnergyMetricFactory.create("cpu"), clock)
    powercap.add_joules("package-0", 100.0)  # before the window: not counted
    with metric:
        clock.now += 2.0
        powercap.add_joules("package-0", 30.0)
        powercap.add_joules("dram-0", 4.0)
    powercap.add_joules("package-0", 50.0)  # after: not counted either
    result = metric.get_metrics()
    assert result["device"] == {"platform": "cpu", "index": 0, "device": "cpu"}
    assert result["duration_s"] == pytest.approx(2.0)
    assert result["total_joules"] == pytest.approx(34.0)
    assert result["exact"] is True
    package = result["domains"]["package-0"]
    assert package == {
        "joules": pytest.approx(30.0),
        "mean_watts": pytest.approx(15.0),
        "exact": True,
        "method": "counter",
        "update_period_s": pytest.approx(0.001),
        "covers": "CPU package 0: all its cores and caches, every process",
    }
    assert result["domains"]["dram-0"]["joules"] == pytest.approx(4.0)


def test_a_gpu_window_shorter_than_the_counters_update_is_estimated_from_power(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    cuda = fake_cuda(monkeypatch, nvml={"clock": clock})
    assert cuda.nvml is not None
    cuda.nvml.set_power_mw(cuda.nvml.gpus[0], 250_000)
    metric = _on_clock(EnergyMetricFactory.create("cuda:0"), clock)
    with metric:
        clock.now += 0.005  # 5 ms: the counter (100 ms updates) shows nothing
    (gpu,) = metric.get_metrics()["domains"].values()
    assert gpu["exact"] is False
    assert gpu["method"] == "power x duration"
    assert gpu["joules"] == pytest.approx(250.0 * 0.005)
    with metric:  # a long window: the counter's difference, whole updates
        clock.now += 2.0
    (gpu,) = metric.get_metrics()["domains"].values()
    assert gpu["exact"] is True
    assert gpu["method"] == "counter"
    assert gpu["joules"] == pytest.approx(500.0, abs=0.002)
    assert gpu["mean_watts"] == pytest.approx(250.0, abs=0.001)


def test_without_a_power_reading_a_short_window_says_it_is_the_bare_counter(
    powercap: FakePowercap,
) -> None:
    clock = ManualClock()
    metric = _on_clock(EnergyMetricFactory.create("cpu"), clock).start()
    clock.now += 0.0004  # under RAPL's ~1 ms update
    metric.stop()
    package = metric.get_metrics()["domains"]["package-0"]
    assert package["exact"] is False
    assert package["method"] == "counter, window shorter than its update period"
    assert package["joules"] == 0.0


def test_misuse_says_what_to_do(powercap: FakePowercap) -> None:
    metric = EnergyMetricFactory.create("cpu")
    with pytest.raises(EnergyMetricError, match=r"stop\(\) before start\(\)"):
        metric.stop()
    with pytest.raises(EnergyMetricError, match="on a metric not started: stop it first"):
        metric.get_metrics()
    metric.start()
    with pytest.raises(EnergyMetricError, match="on a metric running: stop it first"):
        metric.get_metrics()


def test_no_counter_is_the_backends_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_rapl, "POWERCAP_ROOT", str(tmp_path))  # an empty powercap
    with pytest.raises(hardware.EnergyUnavailableError, match="no RAPL energy counters"):
        EnergyMetricFactory.create("cpu")
    with pytest.raises(hardware.HardwareUnavailableError):
        EnergyMetricFactory.create("mps")


def test_a_gpus_power_timeline_is_its_own_reading_and_integrates_to_power_joules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()
    cuda = fake_cuda(monkeypatch, nvml={"clock": clock})
    assert cuda.nvml is not None
    board = cuda.nvml.gpus[0]
    cuda.nvml.set_power_mw(board, 250_000)
    metric = _on_clock(EnergyMetricFactory.create("cuda:0"), clock).start()
    clock.now += 0.5
    metric._sample_power(0)  # the sampler thread's tick
    cuda.nvml.set_power_mw(board, 400_000)  # a load starts
    for _ in range(2):
        clock.now += 0.5
        metric._sample_power(0)
    clock.now += 0.5
    metric.stop()
    timeline = metric.get_power_timeline()
    assert timeline == {"t": [0.5, 1.0, 1.5, 2.0], "watts": {"gpu": [250.0, 400.0, 400.0, 400.0]}}
    gpu = metric.get_metrics()["domains"]["gpu"]
    assert gpu["peak_watts"] == 400.0
    # Trapezoids from the start's 250 W: 125 + 162.5 + 200 + 200 J; the counter, 725 J.
    assert gpu["power_joules"] == pytest.approx(687.5)
    assert gpu["joules"] == pytest.approx(725.0, abs=0.002)


def test_a_cpus_power_timeline_is_its_counters_rise_per_interval(powercap: FakePowercap) -> None:
    clock = ManualClock()
    metric = _on_clock(EnergyMetricFactory.create("cpu"), clock).start()
    for joules in (10.0, 5.0):
        clock.now += 0.5
        powercap.add_joules("package-0", joules)
        metric._sample_power(0)
    clock.now += 0.5
    metric.stop()
    timeline = metric.get_power_timeline()
    assert timeline is not None
    assert timeline["t"] == [0.5, 1.0, 1.5]
    assert timeline["watts"]["package-0"] == [20.0, 10.0, 0.0]
    package = metric.get_metrics()["domains"]["package-0"]
    assert package["peak_watts"] == 20.0
    assert "power_joules" not in package  # the counter is the power: nothing to check it with
    # Each interval's mean power times its length gives back the counter's joules.
    steps = zip([0.0, *timeline["t"]], timeline["t"], timeline["watts"]["package-0"], strict=False)
    assert sum((end - begin) * watts for begin, end, watts in steps) == pytest.approx(15.0)


def test_the_shared_sampler_thread_reads_power_while_the_metric_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    cuda = fake_cuda(monkeypatch)
    assert cuda.nvml is not None
    cuda.nvml.set_power_mw(cuda.nvml.gpus[0], 300_000)
    base = EnergyMetricFactory.create("cuda:0")
    metric = EnergyMetric(
        base.device, backend=base.backend, index=0, counters=base.counters, interval_s=0.005
    )
    with metric:
        time.sleep(0.1)
    timeline = metric.get_power_timeline()
    assert timeline is not None
    assert len(timeline["t"]) >= 5
    assert set(timeline["watts"]["gpu"]) == {300.0}
    assert timeline["t"] == sorted(timeline["t"])
    assert timeline["t"][-1] == pytest.approx(metric.get_metrics()["duration_s"])
    sampled = len(timeline["t"])
    time.sleep(0.03)  # stopped: no tick lands after the window
    assert len(metric.get_power_timeline()["t"]) == sampled  # type: ignore[index]


def test_a_long_timeline_halves_itself_keeping_the_peak_and_the_integral(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_hwbench.metrics.energy import metric as metric_module

    monkeypatch.setattr(metric_module, "MAX_POWER_POINTS", 8)
    clock = ManualClock()
    cuda = fake_cuda(monkeypatch, nvml={"clock": clock})
    assert cuda.nvml is not None
    board = cuda.nvml.gpus[0]
    cuda.nvml.set_power_mw(board, 100_000)
    metric = _on_clock(EnergyMetricFactory.create("cuda:0"), clock).start()
    for tick in range(1, 20):
        cuda.nvml.set_power_mw(board, 500_000 if tick == 7 else 100_000)  # one spike
        clock.now += 0.1
        metric._sample_power(0)
    clock.now += 0.1
    metric.stop()
    timeline = metric.get_power_timeline()
    assert timeline is not None
    assert len(timeline["t"]) <= 8
    assert timeline["t"][-1] == pytest.approx(2.0)
    assert timeline["t"] == sorted(timeline["t"])
    gpu = metric.get_metrics()["domains"]["gpu"]
    assert gpu["peak_watts"] == 500.0  # though merged away from the timeline
    assert max(timeline["watts"]["gpu"]) < 500.0
    # Trapezoids over every reading, not the merged ones: 2 s at 100 W, plus the spike's two.
    assert gpu["power_joules"] == pytest.approx(200.0 + 2 * 0.1 * 400 / 2)
