"""GPU memory metrics driven through the faithful torch/NVML fakes of pytest_hwbench.testing."""

from __future__ import annotations

import json

import pytest
import torch

from pytest_hwbench.metrics.memory import MemoryMetricFactory
from pytest_hwbench.metrics.memory.base import MemoryMetricError
from pytest_hwbench.metrics.memory.cuda import CUDAMemoryMetric
from pytest_hwbench.metrics.memory.mps import MPSMemoryMetric
from pytest_hwbench.metrics.memory.rocm import ROCmMemoryMetric
from pytest_hwbench.metrics.memory.xpu import XPUMemoryMetric
from pytest_hwbench.testing import (
    FakeCudaDevice,
    cpu_only_torch,
    fake_cuda,
    fake_mps,
    fake_rocm,
    fake_xpu,
)

MiB = 2**20


def test_factory_picks_the_cuda_metric_for_the_requested_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_cuda(monkeypatch, count=2)
    metric = MemoryMetricFactory.create("cuda:1")
    assert isinstance(metric, CUDAMemoryMetric)
    assert metric.device_index == 1
    assert metric.series() == ("allocated", "reserved", "device_used", "rss")
    assert metric.describe_device()["device"] == "cuda:1"
    unindexed = MemoryMetricFactory.create(torch.device("cuda"))
    assert isinstance(unindexed, CUDAMemoryMetric)
    assert unindexed.describe_device()["device"] == "cuda:0"  # reports name one device


def test_transient_allocation_shows_in_the_exact_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=1, nvml={"processes_visible": True})
    with MemoryMetricFactory.create("cuda:0", interval="1s") as metric:
        block = cuda.allocate(0, 100 * MiB)
        cuda.free(block)  # between samples: only the high-water mark can see it
    series = metric.get_metrics()["series"]
    assert series["allocated"]["exact_peak"] is True
    assert series["allocated"]["peak_delta_bytes"] == 100 * MiB
    assert series["allocated"]["sampled_peak_bytes"] == series["allocated"]["start_bytes"]
    assert series["reserved"]["peak_bytes"] >= 100 * MiB
    assert series["reserved"]["end_bytes"] >= 100 * MiB  # the cache keeps it until empty_cache
    assert series["allocated"]["end_bytes"] == 0
    assert metric.get_metrics()["warnings"] == []


def test_reset_only_affects_the_measured_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2)
    cuda.free(cuda.allocate(0, 64 * MiB))
    with MemoryMetricFactory.create("cuda:1") as metric:
        cuda.free(cuda.allocate(1, 8 * MiB))
    assert metric.get_metrics()["series"]["allocated"]["peak_bytes"] == 8 * MiB
    assert torch.cuda.max_memory_allocated(0) == 64 * MiB


def test_nested_metric_on_the_same_device_keeps_the_outer_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = fake_cuda(monkeypatch)
    outer = MemoryMetricFactory.create("cuda:0").start()
    cuda.free(cuda.allocate(0, 50 * MiB))
    inner = MemoryMetricFactory.create("cuda:0").start()  # resets the device's peak
    cuda.free(cuda.allocate(0, 10 * MiB))
    assert inner.stop()["series"]["allocated"]["peak_bytes"] == 10 * MiB
    assert outer.stop()["series"]["allocated"]["peak_bytes"] == 50 * MiB


def test_device_used_comes_from_nvml_and_includes_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = fake_cuda(monkeypatch)
    with MemoryMetricFactory.create("cuda:0") as metric:
        block = cuda.allocate(0, 30 * MiB)
        sample = metric.record_memory("holding 30 MiB")
        cuda.free(block)
    assert sample.values["allocated"] == 30 * MiB
    assert sample.values["device_used"] >= sample.values["reserved"] >= 30 * MiB
    assert [m.label for m in metric.get_memory_timeline().marks] == ["holding 30 MiB"]
    assert metric.get_metrics()["series"]["device_used"]["exact_peak"] is False


def test_process_used_is_this_process_share_of_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = FakeCudaDevice.nvidia((9, 0), other_processes_bytes=2 * 1024 * MiB)
    cuda = fake_cuda(monkeypatch, devices=[board], nvml={"processes_visible": True})
    with MemoryMetricFactory.create("cuda:0") as metric:
        block = cuda.allocate(0, 1024 * MiB)
        sample = metric.record_memory("holding 1 GiB")
        cuda.free(block)
    values = sample.values
    # Its context and its allocator's segments; another process's 2 GiB only in device_used.
    assert values["reserved"] <= values["process_used"] <= values["device_used"] - 2 * 1024 * MiB
    assert values["process_used"] == values["reserved"] + board.context_bytes
    assert metric.get_metrics()["warnings"] == []
    assert metric.get_metrics()["series"]["process_used"]["exact_peak"] is False


def test_without_this_process_in_nvmls_list_process_used_is_absent_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_cuda(monkeypatch)  # as in a container: NVML lists no process
    with MemoryMetricFactory.create("cuda:0") as metric:
        pass
    metrics = metric.get_metrics()
    assert set(metrics["series"]) == {"allocated", "reserved", "device_used", "rss"}
    assert metrics["warnings"] == [
        f"per-process GPU memory unavailable here: NVML lists no compute process with this PID "
        f"({__import__('os').getpid()}) on the device: in a container, its PID namespace hides "
        "it (NVML lists the host's PIDs); no process_used series"
    ]


def test_every_read_of_record_start_and_stop_synchronizes(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, count=2)
    metric = MemoryMetricFactory.create("cuda:1", interval="1s")
    before = len(cuda.synchronize_calls)
    with metric:
        metric.record_memory("x")
    assert cuda.synchronize_calls[before:] == [1, 1, 1]


def test_missing_nvml_drops_device_used_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = fake_cuda(monkeypatch, nvml=False)
    with MemoryMetricFactory.create("cuda:0") as metric:
        cuda.free(cuda.allocate(0, MiB))
    metrics = metric.get_metrics()
    assert set(metrics["series"]) == {"allocated", "reserved", "rss"}
    assert len(metrics["warnings"]) == 1
    assert metrics["warnings"][0].startswith("NVML unavailable (")
    assert metrics["warnings"][0].endswith("): no device_used series")
    assert metrics["series"]["allocated"]["exact_peak"] is True


def test_failing_nvml_init_names_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, nvml={"init_error": "NVML_ERROR_DRIVER_NOT_LOADED"})
    with MemoryMetricFactory.create("cuda:0") as metric:
        pass
    warning = metric.get_metrics()["warnings"][0]
    assert "driver" in warning.lower()
    assert "device_used" not in metric.get_metrics()["series"]


def test_allocator_without_peak_reset_falls_back_to_sampled_peaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = fake_cuda(monkeypatch, peak_reset=False, nvml={"processes_visible": True})
    with MemoryMetricFactory.create("cuda:0") as metric:
        block = cuda.allocate(0, 4 * MiB)
        metric.record_memory("held")
        cuda.free(block)
    metrics = metric.get_metrics()
    assert metrics["series"]["allocated"]["exact_peak"] is False
    assert metrics["series"]["allocated"]["peak_bytes"] == 4 * MiB  # the labelled sample saw it
    assert "reset_peak_memory_stats failed" in metrics["warnings"][0]


def test_rocm_metric_reads_the_hip_allocator_and_mem_get_info(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rocm = fake_rocm(monkeypatch)
    metric = MemoryMetricFactory.create("rocm:0")
    assert isinstance(metric, ROCmMemoryMetric)
    assert isinstance(MemoryMetricFactory.create(torch.device("cuda", 0)), ROCmMemoryMetric)
    with metric:
        rocm.free(rocm.allocate(0, 12 * MiB))
    series = metric.get_metrics()["series"]
    assert series["allocated"]["peak_bytes"] == 12 * MiB
    assert series["allocated"]["exact_peak"] is True
    total = torch.cuda.get_device_properties(0).total_memory
    free, _ = torch.cuda.mem_get_info(0)
    assert series["device_used"]["end_bytes"] == total - free


def test_xpu_metric_has_exact_allocator_peaks(monkeypatch: pytest.MonkeyPatch) -> None:
    xpu = fake_xpu(monkeypatch, count=2)
    metric = MemoryMetricFactory.create("xpu:1")
    assert isinstance(metric, XPUMemoryMetric)
    with metric:
        xpu.free(xpu.allocate(1, 20 * MiB))
    series = metric.get_metrics()["series"]
    assert series["allocated"]["exact_peak"] is True
    assert series["allocated"]["peak_delta_bytes"] == 20 * MiB
    assert "device_used" in series


def test_mps_peaks_are_sampled_and_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    mps = fake_mps(monkeypatch)
    metric = MemoryMetricFactory.create("mps")
    assert isinstance(metric, MPSMemoryMetric)
    with metric:
        handle = mps.allocate(16 * MiB)
        metric.record_memory("allocated")
        mps.free(handle)
    metrics = metric.get_metrics()
    allocated = metrics["series"]["allocated"]
    assert allocated["exact_peak"] is False
    assert allocated["peak_delta_bytes"] >= 16 * MiB
    assert metrics["series"]["driver"]["peak_bytes"] >= allocated["peak_bytes"]
    assert any("no MPS peak-memory API" in w for w in metrics["warnings"])


def test_cuda_test_runs_on_fake_cuda_and_is_skipped_without(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.hardware("cuda")
        @pytest.mark.memory_limit(cuda="64MiB")
        def test_gpu(hw_device, memory_profile):
            assert hw_device == torch.device("cuda", 0)
            memory_profile.record_memory("start")
        """
    )
    with monkeypatch.context() as patch:
        cpu_only_torch(patch)
        result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * cuda: torch was built without CUDA"])
    fake_cuda(monkeypatch)
    report = pytester.path / "hw.json"
    result = pytester.runpytest(f"--hw-report={report}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["cuda (top 1):", "*allocated (exact)*test_gpu[[]cuda[]]"])
    (entry,) = json.loads(report.read_text())["tests"]
    assert entry["memory"]["device"]["device"] == "cuda:0"


def test_capability_probe_during_a_measurement_keeps_the_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_hwbench import hardware

    cuda = fake_cuda(monkeypatch)
    with MemoryMetricFactory.create("cuda:0", interval="1s") as metric:
        cuda.free(cuda.allocate(0, 300 * MiB))
        # The first capability query probes the peak reset on the device for real.
        assert hardware.get_hardware_backend("cuda").has_capability("peak_memory_reset")
    allocated = metric.get_metrics()["series"]["allocated"]
    assert allocated["exact_peak"] is True
    assert allocated["peak_bytes"] == 300 * MiB


def test_process_sampler_request_on_a_gpu_metric_says_it_uses_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_cuda(monkeypatch, nvml={"processes_visible": True})
    metric = MemoryMetricFactory.create("cuda:0", sampler="process", interval="1ms")
    with metric:
        pass
    metrics = metric.get_metrics()
    assert metrics["sampler"] == "thread"
    assert metric.get_memory_timeline().sampler == "thread"
    assert metrics["warnings"] == [
        'CUDAMemoryMetric has no sampler="process": its series are sampled by the thread sampler'
    ]


def test_cuda_string_measures_the_amd_gpu_on_a_rocm_build(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_rocm(monkeypatch, count=2)
    metric = MemoryMetricFactory.create("cuda:1")
    assert isinstance(metric, ROCmMemoryMetric)
    assert metric.device_index == 1


def test_a_measured_block_has_its_own_exact_peak_and_the_metric_keeps_the_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = fake_cuda(monkeypatch, count=1)
    with MemoryMetricFactory.create("cuda:0", interval="1s") as metric:
        workspace = cuda.allocate(0, 32 * MiB)  # a first call's one-time cost, kept
        cuda.free(cuda.allocate(0, 100 * MiB))  # and its transient
        with metric.measure("step") as scope:
            cuda.free(cuda.allocate(0, 10 * MiB))  # between samples: the mark alone sees it
        cuda.free(workspace)
    step = scope.series["allocated"]
    assert step["exact_peak"] is True
    assert step["start_bytes"] == 32 * MiB
    assert step["peak_delta_bytes"] == 10 * MiB
    whole = metric.get_metrics()["series"]["allocated"]
    assert whole["peak_delta_bytes"] == 132 * MiB  # the reset for the block hid nothing
    assert [s["label"] for s in metric.get_metrics()["scopes"]] == ["step"]
    assert [m.label for m in metric.get_memory_timeline().marks] == ["step", "step:end"]


def test_measure_refuses_nesting_a_stopped_metric_and_a_bad_label(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_cuda(monkeypatch, count=1)
    metric = MemoryMetricFactory.create("cuda:0")
    not_running = pytest.raises(MemoryMetricError, match="needs a running metric; this one is")
    with not_running, metric.measure("step"):
        pass
    with metric:
        nested = pytest.raises(MemoryMetricError, match="blocks do not nest")
        with metric.measure("outer"), nested, metric.measure("inner"):
            pass
        with pytest.raises(TypeError, match="non-empty str label"), metric.measure(""):
            pass
    assert [s["label"] for s in metric.get_metrics()["scopes"]] == ["outer"]
