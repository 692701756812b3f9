"""The CUDA memory metric and the plugin on a real NVIDIA GPU: twins of test_gpu_metrics.py.

The unit tests drive `CUDAMemoryMetric` through `FakeCuda`; these check the same behaviour with the
real caching allocator and NVML, so a fake that drifted from the real API shows up here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch

from pytest_hwbench.hardware import _nvml
from pytest_hwbench.metrics.memory import MemoryMetricFactory
from pytest_hwbench.metrics.memory.cuda import CUDAMemoryMetric

MiB = 2**20

pytestmark = pytest.mark.hardware("cuda")


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    torch.cuda.empty_cache()
    yield
    torch.cuda.empty_cache()


def test_factory_picks_the_cuda_metric_with_every_series() -> None:
    metric = MemoryMetricFactory.create("cuda:0")
    assert isinstance(metric, CUDAMemoryMetric)
    assert metric.device_index == 0
    nvml_ok, _ = _nvml.nvml_status()
    if nvml_ok:
        assert metric.series() == ("allocated", "reserved", "device_used", "rss")
    else:
        assert metric.series() == ("allocated", "reserved", "rss")


def test_transient_allocation_shows_in_the_exact_peak() -> None:
    with MemoryMetricFactory.create("cuda:0", interval="1s") as metric:
        block = torch.empty(100 * MiB, dtype=torch.uint8, device="cuda:0")
        del block  # between samples: only the high-water mark can see it
    metrics = metric.get_metrics()
    allocated = metrics["series"]["allocated"]
    assert allocated["exact_peak"] is True
    assert allocated["peak_delta_bytes"] == 100 * MiB
    assert allocated["sampled_peak_bytes"] == allocated["start_bytes"]
    assert allocated["end_bytes"] == allocated["start_bytes"]
    reserved = metrics["series"]["reserved"]
    assert reserved["peak_bytes"] - reserved["start_bytes"] >= 100 * MiB
    assert reserved["end_bytes"] - reserved["start_bytes"] >= 100 * MiB  # cached until empty_cache
    assert metrics["warnings"] == []


def test_a_peak_from_before_start_does_not_count() -> None:
    del_me = torch.empty(512 * MiB, dtype=torch.uint8, device="cuda:0")
    del del_me
    with MemoryMetricFactory.create("cuda:0") as metric:
        small = torch.empty(8 * MiB, dtype=torch.uint8, device="cuda:0")
        del small
    assert metric.get_metrics()["series"]["allocated"]["peak_delta_bytes"] == 8 * MiB


def test_nested_metric_on_the_same_device_keeps_the_outer_peak() -> None:
    outer = MemoryMetricFactory.create("cuda:0").start()
    big = torch.empty(50 * MiB, dtype=torch.uint8, device="cuda:0")
    del big
    inner = MemoryMetricFactory.create("cuda:0").start()  # resets the device's peak
    small = torch.empty(10 * MiB, dtype=torch.uint8, device="cuda:0")
    del small
    assert inner.stop()["series"]["allocated"]["peak_delta_bytes"] == 10 * MiB
    assert outer.stop()["series"]["allocated"]["peak_delta_bytes"] == 50 * MiB


def test_device_used_comes_from_nvml_and_includes_the_cache() -> None:
    ok, reason = _nvml.nvml_status()
    if not ok:
        pytest.skip(f"NVML unusable here: {reason}")
    with MemoryMetricFactory.create("cuda:0") as metric:
        block = torch.empty(30 * MiB, dtype=torch.uint8, device="cuda:0")
        sample = metric.record_memory("holding 30 MiB")
        del block
    assert sample.values["allocated"] >= 30 * MiB
    assert sample.values["device_used"] >= sample.values["reserved"] >= 30 * MiB
    assert [m.label for m in metric.get_memory_timeline().marks] == ["holding 30 MiB"]
    assert metric.get_metrics()["series"]["device_used"]["exact_peak"] is False


def test_pending_kernels_finish_before_a_read() -> None:
    a = torch.randn(4096, 4096, device="cuda:0")
    with MemoryMetricFactory.create("cuda:0", interval="1s") as metric:
        for _ in range(20):
            a = a @ a / 4096  # queued work: the read must wait for it, not race it
        metric.record_memory("after matmuls")
    assert torch.isfinite(a).all()
    assert metric.get_metrics()["series"]["allocated"]["exact_peak"] is True


def test_plugin_measures_limits_and_reports_a_real_cuda_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch

        MiB = 2**20

        @pytest.mark.hardware("cuda")
        @pytest.mark.memory_limit(cuda="64MiB")
        def test_fits(hw_device, memory_profile):
            assert hw_device == torch.device("cuda", 0)
            block = torch.empty(32 * MiB, dtype=torch.uint8, device=hw_device)
            memory_profile.record_memory("holding 32 MiB")
            del block

        @pytest.mark.hardware("cuda")
        @pytest.mark.memory_limit(cuda="64MiB")
        def test_too_big(hw_device, memory_profile):
            block = torch.empty(96 * MiB, dtype=torch.uint8, device=hw_device)
            memory_profile.record_memory("holding 96 MiB")
            del block
        """
    )
    report = pytester.path / "hw.json"
    result = pytester.runpytest(f"--hw-report={report}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memory limit exceeded on cuda: peak growth 96.0 MiB > limit 64.0 MiB*",
            "*series 'allocated': start * MiB, peak * MiB (exact)",
        ]
    )
    data = json.loads(report.read_text())
    assert data["complete"] is True
    tests = {entry["nodeid"].rsplit("::", 1)[1]: entry for entry in data["tests"]}
    fits = tests["test_fits[cuda]"]["memory"]
    assert fits["device"]["device"] == "cuda:0"
    assert fits["primary_series"] == "allocated"
    assert fits["series"]["allocated"]["exact_peak"] is True
    assert fits["series"]["allocated"]["peak_delta_bytes"] == 32 * MiB
    assert [m["label"] for m in fits["timeline"]["marks"]] == ["holding 32 MiB"]


def test_leak_check_catches_a_tensor_kept_on_the_gpu(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch

        KEPT = []

        @pytest.mark.hardware("cuda")
        @pytest.mark.memory_leak_limit("1MiB")
        def test_leaks(hw_device):
            KEPT.append(torch.empty(16 * 2**20, dtype=torch.uint8, device=hw_device))

        @pytest.mark.hardware("cuda")
        @pytest.mark.memory_leak_limit("1MiB")
        def test_frees(hw_device):
            block = torch.empty(16 * 2**20, dtype=torch.uint8, device=hw_device)
            del block
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*memory leak on cuda: 'allocated' grew by 16.0 MiB*"])


def test_a_measured_block_has_its_own_exact_peak_and_the_metric_keeps_the_whole() -> None:
    """Twin of the FakeCuda test of the same name."""
    with MemoryMetricFactory.create("cuda:0", interval="1s") as metric:
        workspace = torch.empty(32 * MiB, dtype=torch.uint8, device="cuda:0")
        torch.empty(100 * MiB, dtype=torch.uint8, device="cuda:0")  # a transient
        with metric.measure("step") as scope:
            torch.empty(10 * MiB, dtype=torch.uint8, device="cuda:0")
        del workspace
    step = scope.series["allocated"]
    assert step["exact_peak"] is True
    assert step["peak_delta_bytes"] == 10 * MiB
    assert metric.get_metrics()["series"]["allocated"]["peak_delta_bytes"] == 132 * MiB


FIRST_MATMUL_SUITE = """
import torch

def test_first_matmul(memory_profile):
    a = torch.ones(256, 256, device="cuda:0")
    (a @ a).sum().item()
"""


@pytest.mark.parametrize("warmup", ["auto", "off"])
def test_the_first_cuda_test_carries_no_cublas_workspace_after_the_warm_up(
    pytester: pytest.Pytester, warmup: str
) -> None:
    """Without the warm-up, the first matmul's cuBLAS workspace (MiBs, 32 on an H200) lands on
    the first test that multiplies; with it, the test grows by its tensors alone."""
    pytester.makepyfile(FIRST_MATMUL_SUITE)
    report = pytester.path / "hw.json"
    result = pytester.runpytest_subprocess(
        "--hw-devices=cuda", f"--hw-report={report}", f"--hw-warmup={warmup}"
    )
    result.assert_outcomes(passed=1)
    (entry,) = json.loads(report.read_text())["tests"]
    growth = entry["memory"]["series"]["allocated"]["peak_delta_bytes"]
    print(f"--hw-warmup={warmup}: first CUDA test's allocated growth {growth / MiB:.1f} MiB")
    if warmup == "auto":
        assert growth <= 2 * MiB  # two 256 KiB tensors and the sum, rounded by the allocator
        assert "cuda" in json.loads(report.read_text())["session"]["warmup"]
    else:
        assert growth >= 4 * MiB


def test_process_used_lies_between_reserved_and_device_used() -> None:
    """Twin of test_process_used_is_this_process_share_of_the_device (and of its absence)."""
    with MemoryMetricFactory.create("cuda:0") as metric:
        block = torch.empty(1024 * MiB, dtype=torch.uint8, device="cuda:0")
        sample = metric.record_memory("holding 1 GiB")
        del block
    warnings = metric.get_metrics()["warnings"]
    if "process_used" not in sample.values:  # a container: NVML lists the host's PIDs
        assert any(w.startswith("per-process GPU memory unavailable here: ") for w in warnings)
        return
    values = sample.values
    assert values["reserved"] >= 1024 * MiB
    assert values["reserved"] <= values["process_used"] <= values["device_used"]
