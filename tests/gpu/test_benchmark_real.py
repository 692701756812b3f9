"""hw_benchmark on a real NVIDIA GPU: what tests/plugin/test_benchmark.py checks against fakes.

A matmul is asynchronous: the call returns once the kernel is queued. Timed without waiting for
the device, it measures the launch; hw_benchmark's clock waits, so it measures the kernel.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import pytest
import torch

from pytest_hwbench.hardware.cuda import CUDABackend
from pytest_hwbench.hardware.timing import DeviceTimer

# Our own marker skips these where there is no NVIDIA GPU, with the backend's reason.
pytestmark = pytest.mark.hardware("cuda")

N = 8192  # a bf16 8192² matmul: 1.1 TFLOP, about a millisecond on an H100, ~10 µs to launch

SUITE = f"""
import pytest
import torch

N = {N}


@pytest.fixture
def operands():
    a = torch.randn(N, N, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(N, N, device="cuda", dtype=torch.bfloat16)
    torch.matmul(a, b)  # cuBLAS initialized and its heuristics cached before any timing
    torch.cuda.synchronize()
    return a, b


@pytest.mark.hardware("cuda")
def test_synchronized(hw_benchmark, operands):
    hw_benchmark.pedantic(torch.matmul, args=operands, rounds=10, warmup_rounds=3,
                          flops=2 * N**3, dtype=torch.bfloat16)
    # The untimed call's growth: at least the bf16 output.
    assert hw_benchmark.extra_info["peak_delta_bytes"]["allocated"] >= N * N * 2


def test_launch_only(benchmark, operands):
    # pytest-benchmark's own clock, with the device drained before each round but not after.
    benchmark.pedantic(torch.matmul, args=operands, rounds=10, setup=torch.cuda.synchronize)
"""


def test_synchronized_timings_measure_the_kernel_not_its_launch(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    out = pytester.path / "bench.json"
    result = pytester.runpytest_subprocess(f"--benchmark-json={out}")
    result.assert_outcomes(passed=2)
    benches = {b["name"]: b for b in json.loads(out.read_text())["benchmarks"]}
    synced = benches["test_synchronized"]
    launch_only = benches["test_launch_only"]
    info = synced["extra_info"]
    assert info["timer"] == "cuda_events"  # events work on a real GPU
    assert "timer_note" not in info
    assert info["device_name"] == torch.cuda.get_device_name(0)
    assert synced["stats"]["median"] > 5 * launch_only["stats"]["median"]
    if "peak_flops_per_s" in info:  # a device in the built-in table
        # A kernel cannot beat its device's peak; a launch-only "time" would, by far.
        assert 0.05 < info["fraction_of_peak_flops"] <= 1.05
        launch_fraction = 2 * N**3 / launch_only["stats"]["median"] / info["peak_flops_per_s"]
        assert launch_fraction > 1.5
    machine = json.loads(out.read_text())["machine_info"]["hwbench"]
    names = [d["name"] for d in machine["devices"] if d["platform"] == "cuda"]
    assert names == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _median_round(
    clock: Callable[[], float], work: Callable[[], object], rounds: int = 15
) -> float:
    times = []
    for _ in range(rounds):
        start = clock()
        work()
        times.append(clock() - start)
    return statistics.median(times)


def test_event_clock_agrees_with_the_synchronized_host_clock() -> None:
    backend, device = CUDABackend(), torch.device("cuda", 0)
    a = torch.randn(N, N, device=device, dtype=torch.bfloat16)
    b = torch.randn(N, N, device=device, dtype=torch.bfloat16)

    def work() -> None:
        torch.matmul(a, b)

    work()
    torch.cuda.synchronize(device)
    events = DeviceTimer()
    events.bind(backend, device)
    host = DeviceTimer()
    host.bind(backend, device, events=False)
    assert events.kind == "cuda_events"
    assert host.kind == "synchronize+perf_counter"

    by_events = _median_round(events, work)
    by_host = _median_round(host, work)
    unsynchronized = _median_round(time.perf_counter, work)
    torch.cuda.synchronize(device)
    # Both wait for the kernel; the host clock adds only the launch and the wake-up from sync.
    assert by_events == pytest.approx(by_host, rel=0.2)
    # Without waiting, a round is the launch only (while the queue has room).
    assert unsynchronized < by_events / 5
