from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from pytest_hwbench.testing import (
    FakeBackend,
    FakeCudaDevice,
    cpu_only_torch,
    fake_cuda,
    fake_registry,
    fake_rocm,
)

Loader = Callable[[Path], dict[str, Any]]
MiB = 2**20
# Fast plain-call benchmarks: pytest-benchmark otherwise spends a second per test.
QUICK = ("--benchmark-max-time=0.02", "--benchmark-min-rounds=3")


@pytest.fixture(autouse=True)
def _not_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs are not xdist workers, even when this suite runs under -n.

    pytest-benchmark reads PYTEST_XDIST_WORKER and disables itself where it is set.
    """
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def _benchmarks(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return {b["name"]: b for b in data["benchmarks"]}


def _entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["nodeid"].split("::")[-1]: t for t in report["tests"]}


class LoggingBackend(FakeBackend):
    """A fake GPU whose "kernels" and synchronize calls land in one ordered log."""

    def __init__(self) -> None:
        super().__init__("cuda", device_name="NVIDIA H100 80GB HBM3")
        self.log: list[str] = []

    def launch(self) -> None:
        self.log.append("launch")

    def synchronize(self, device: Any = None) -> None:
        super().synchronize(device)
        self.log.append("sync")


class AsyncBackend(FakeBackend):
    """A fake GPU that runs work asynchronously: `launch` returns at once, `synchronize` waits."""

    def __init__(self) -> None:
        super().__init__("cuda")
        self._busy_until = 0.0
        self._queue_lock = threading.Lock()

    def launch(self, seconds: float) -> None:
        with self._queue_lock:
            self._busy_until = max(self._busy_until, time.perf_counter()) + seconds

    def synchronize(self, device: Any = None) -> None:
        super().synchronize(device)
        # A runaway queue (work launched in a calibration loop) must fail the test, not hang it.
        if self._busy_until - time.perf_counter() > 5.0:
            raise AssertionError("more than 5 s of fake device work queued: launched in a loop?")
        while (left := self._busy_until - time.perf_counter()) > 0:
            time.sleep(left)


class FakeEvent:
    """torch.cuda.Event on a simulated device clock that only "kernels" and records advance."""

    now_s: ClassVar[float] = 0.0
    record_cost_s: ClassVar[float] = 1e-6

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.t: float | None = None

    @classmethod
    def run_kernel(cls, seconds: float) -> None:
        cls.now_s += seconds

    def record(self, stream: object = None) -> None:
        FakeEvent.now_s += self.record_cost_s
        self.t = FakeEvent.now_s

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.t is not None, "start event not recorded"
        assert end.t is not None, "end event not recorded"
        return (end.t - self.t) * 1e3  # milliseconds, as torch


def _fake_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeEvent, "now_s", 0.0)
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "stream")


def test_plain_call_returns_the_result_and_records_stats_and_memory(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        def build(n):
            return bytearray(n)

        def test_plain(hw_benchmark):
            result = hw_benchmark(build, 4 * 2**20)
            assert len(result) == 4 * 2**20
            assert hw_benchmark.stats["rounds"] >= 3
        """
    )
    out = pytester.path / "bench.json"
    result = pytester.runpytest(*QUICK, f"--benchmark-json={out}", f"--hw-report={report_path}")
    result.assert_outcomes(passed=1)
    bench = _benchmarks(out)["test_plain"]
    info = bench["extra_info"]
    assert info["device"] == "cpu"
    assert info["platform"] == "cpu"
    assert info["timer"] == "perf_counter"  # the host has nothing to wait for
    assert info["warmup_rounds"] == 1
    assert set(info["peak_bytes"]) == {"rss"}
    assert info["peak_bytes"]["rss"] > 4 * MiB
    assert isinstance(info["exact_peak"]["rss"], bool)
    assert bench["options"]["timer"] == "hwbench_perf_counter"

    entry = _entries(load_valid_report(report_path))["test_plain"]
    stats = entry["benchmark"]
    assert stats["timed"] is True
    assert stats["unit"] == "seconds"
    for key in ("min", "max", "median", "mean", "stddev", "iqr", "rounds", "iterations"):
        assert stats[key] == pytest.approx(bench["stats"][key]), key
    assert stats["min"] <= stats["median"] <= stats["max"]
    assert stats["warnings"] == []
    # The untimed memory call is the test's memory measurement.
    assert entry["memory"]["series"]["rss"]["peak_bytes"] == info["peak_bytes"]["rss"]


def test_pedantic_synchronizes_every_round_and_warmup(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LoggingBackend()
    fake_registry(monkeypatch, backend)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cuda")
        def test_rounds(hw_benchmark):
            launch = hw_benchmark.backend.launch
            hw_benchmark.pedantic(launch, rounds=4, warmup_rounds=2, iterations=1)
            assert hw_benchmark.extra_info["timer"] == "synchronize+perf_counter"
            assert hw_benchmark.extra_info["warmup_rounds"] == 2
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    log = backend.log
    launches = [i for i, entry in enumerate(log) if entry == "launch"]
    assert len(launches) == 2 + 4 + 1  # warm-ups, rounds, the untimed memory call
    for i in launches[:-1]:  # every timed or warm-up call sits between two synchronizations
        assert log[i - 1 : i + 2] == ["sync", "launch", "sync"], log
    assert log.count("sync") >= 2 + 4
    assert all(call == torch.device("cuda", 0) for call in backend.synchronize_calls)


def test_iterations_of_a_round_run_back_to_back(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LoggingBackend()
    fake_registry(monkeypatch, backend)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("cuda")
        def test_rounds(hw_benchmark):
            hw_benchmark.pedantic(hw_benchmark.backend.launch, rounds=3, iterations=5,
                                  warmup_rounds=0)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    # The rounds: 5 launches each, queued without waiting, the device drained at both ends.
    runs = "".join("L" if e == "launch" else "S" for e in backend.log).split("S")
    # Then, untimed: pytest-benchmark's call for the result (it loops otherwise), and ours for
    # memory.
    assert [len(r) for r in runs if r] == [5, 5, 5, 2]


def test_timings_include_queued_device_work(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_registry(monkeypatch, AsyncBackend())
    pytester.makepyfile(
        """
        import pytest
        from pytest_hwbench import hardware

        KERNEL_S = 0.004

        @pytest.mark.hardware("cuda")
        def test_synchronized(hw_benchmark):
            backend = hw_benchmark.backend
            hw_benchmark.pedantic(backend.launch, args=(KERNEL_S,), rounds=5)

        def test_launch_only(benchmark):
            backend = hardware.get_hardware_backend("cuda")
            # pytest-benchmark's own clock: the device is drained before each round, not after.
            benchmark.pedantic(backend.launch, args=(KERNEL_S,), rounds=5,
                               setup=backend.synchronize)
        """
    )
    out = tmp_path / "bench.json"
    pytester.runpytest(f"--benchmark-json={out}").assert_outcomes(passed=2)
    benches = _benchmarks(out)
    synced = benches["test_synchronized"]["stats"]
    launch_only = benches["test_launch_only"]["stats"]
    assert synced["min"] >= 0.004  # the work, not the launch
    # Launch-only timing sees microseconds of host work, far below the 4 ms of device work.
    assert launch_only["median"] < synced["min"] / 4


def test_cuda_events_time_the_device_when_they_work(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cuda = fake_cuda(monkeypatch)
    _fake_events(monkeypatch)
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.hardware("cuda")
        def test_events(hw_benchmark):
            kernel = torch.cuda.Event.run_kernel  # the fake's simulated device clock
            hw_benchmark.pedantic(kernel, args=(0.003,), rounds=5, warmup_rounds=1,
                                  flops=6e12, bytes_moved=3e9, dtype=torch.bfloat16)
        """
    )
    out = tmp_path / "bench.json"
    result = pytester.runpytest(f"--benchmark-json={out}")
    result.assert_outcomes(passed=1)
    # The terminal says what the benchmark achieved, beside pytest-benchmark's timings.
    result.stdout.fnmatch_lines(
        [
            "*hwbench: benchmark throughput (at the median)*",
            "*3.00 ms  2.00 PFLOP/s (202% of the bf16 peak), 1.00 TB/s (30% of peak bandwidth)"
            "  test_*.py::test_events (cuda:0)",
        ]
    )
    bench = _benchmarks(out)["test_events"]
    info = bench["extra_info"]
    assert info["timer"] == "cuda_events"
    assert "timer_note" not in info
    assert bench["options"]["timer"] == "hwbench_cuda_events"
    # Device time between the events: the kernel and one event record, not host time.
    assert bench["stats"]["median"] == pytest.approx(0.003 + 1e-6, rel=1e-6)
    assert bench["stats"]["max"] == pytest.approx(0.003 + 1e-6, rel=1e-6)
    assert len(cuda.synchronize_calls) >= 5 + 1  # events still wait for every stream
    # FLOP/s from the median; H100 SXM dense bf16 is 989.5 TFLOP/s, HBM3 3.35 TB/s.
    median = bench["stats"]["median"]
    assert info["throughput_time"] == "median"
    assert info["dtype"] == "bf16"
    assert info["flops_per_s"] == pytest.approx(6e12 / median)
    assert info["peak_flops_per_s"] == pytest.approx(989.5e12)
    assert info["fraction_of_peak_flops"] == pytest.approx(6e12 / median / 989.5e12)
    assert "H100 Tensor Core GPU datasheet (H100 SXM)" in info["peak_flops_source"]
    assert info["bytes_per_s"] == pytest.approx(3e9 / median)
    assert info["fraction_of_peak_bandwidth"] == pytest.approx(3e9 / median / 3.35e12)


def test_without_working_events_cuda_falls_back_to_synchronize(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A CPU-only build's torch.cuda.Event cannot be created: the fallback a broken setup takes.
    cpu_only_torch(monkeypatch)
    cuda = fake_cuda(monkeypatch)
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.hardware("cuda")
        def test_fallback(hw_benchmark):
            fake = torch.cuda.synchronize.__self__  # the FakeCuda behind torch.cuda

            def step():
                fake.free(fake.allocate(0, 8 * 2**20))

            hw_benchmark.pedantic(step, rounds=3, warmup_rounds=2)
        """
    )
    out = tmp_path / "bench.json"
    pytester.runpytest(f"--benchmark-json={out}").assert_outcomes(passed=1)
    info = _benchmarks(out)["test_fallback"]["extra_info"]
    assert info["timer"] == "synchronize+perf_counter"
    assert info["timer_note"].startswith("CUDA events do not work here (RuntimeError: ")
    assert info["device"] == "cuda:0"
    assert info["device_name"] == "NVIDIA H100 80GB HBM3"
    assert len(cuda.synchronize_calls) >= 3 + 2
    # Memory of the one untimed call, per series, from the allocator's exact peaks.
    assert info["peak_delta_bytes"]["allocated"] == 8 * MiB
    assert info["exact_peak"]["allocated"] is True
    assert {"allocated", "reserved", "device_used", "rss"} <= set(info["peak_bytes"])


@pytest.mark.parametrize(
    ("install", "expected_peak", "source"),
    [
        (lambda mp: fake_cuda(mp, capability=(8, 9)), 242.5e12, "L4 Tensor Core GPU datasheet"),
        (
            lambda mp: fake_cuda(mp, name="NVIDIA H100 PCIe"),
            1513e12,
            "(H100 PCIe)",
        ),
        (
            lambda mp: fake_cuda(
                mp,
                devices=[FakeCudaDevice.nvidia((9, 0)).with_mig(("1g.10gb", 10 * 2**30, 16))],
            ),
            1979e12 * 16 / 132,
            "scaled to 16 of 132 compute units",
        ),
        (
            lambda mp: fake_rocm(mp, arch="gfx942"),
            2614.9e12,
            "AMD Instinct MI300X accelerator datasheet",
        ),
    ],
    ids=["L4", "H100-PCIe", "H100-MIG-1g", "MI300X"],
)
def test_fraction_of_peak_uses_the_device_table(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    install: Callable[[pytest.MonkeyPatch], Any],
    expected_peak: float,
    source: str,
) -> None:
    install(monkeypatch)
    _fake_events(monkeypatch)
    platform = "rocm" if "MI300X" in source else "cuda"
    pytester.makepyfile(
        f"""
        import pytest
        import torch

        @pytest.mark.hardware("{platform}")
        def test_fp8(hw_benchmark):
            hw_benchmark.pedantic(torch.cuda.Event.run_kernel, args=(0.002,), rounds=3,
                                  flops=1e12, dtype="float8_e4m3fn")
        """
    )
    out = tmp_path / "bench.json"
    pytester.runpytest(f"--benchmark-json={out}").assert_outcomes(passed=1)
    info = _benchmarks(out)["test_fp8"]["extra_info"]
    assert info["peak_flops_per_s"] == pytest.approx(expected_peak)
    assert source in info["peak_flops_source"]
    assert info["fraction_of_peak_flops"] == pytest.approx(info["flops_per_s"] / expected_peak)


def test_ini_peaks_override_the_table(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cuda(monkeypatch)
    _fake_events(monkeypatch)
    pytester.makeini(
        """
        [pytest]
        hw_peak_flops =
            nvidia h100 80gb:bf16=1e15, bandwidth=4e12
            Tenstorrent Wormhole:fp16=74e12
        """
    )
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.hardware("cuda")
        def test_bf16(hw_benchmark):
            hw_benchmark.pedantic(torch.cuda.Event.run_kernel, args=(0.002,), rounds=3,
                                  flops=1e12, bytes_moved=1e9, dtype=torch.bfloat16)
        """
    )
    out = tmp_path / "bench.json"
    pytester.runpytest(f"--benchmark-json={out}").assert_outcomes(passed=1)
    info = _benchmarks(out)["test_bf16"]["extra_info"]
    assert info["peak_flops_per_s"] == 1e15
    assert (
        info["peak_flops_source"] == "ini hw_peak_flops: nvidia h100 80gb:bf16=1e15, bandwidth=4e12"
    )
    assert info["peak_bandwidth_bytes_per_s"] == 4e12


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("NVIDIA H100 bf16=989e12", "no ':' between the device name and the values"),
        (":bf16=989e12", "a device name and at least one value are needed"),
        ("NVIDIA H100:bf17=989e12", "bad entry 'bf17=989e12'"),
        ("NVIDIA H100:bf16=fast", "'fast' is not a number"),
        ("NVIDIA H100:bf16=-1", "'-1' is not a positive number"),
    ],
)
def test_bad_ini_peak_is_a_usage_error(pytester: pytest.Pytester, line: str, problem: str) -> None:
    pytester.makeini(f"[pytest]\nhw_peak_flops =\n    {line}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"ERROR: pytest-hwbench: ini hw_peak_flops line {line!r}: {problem}; expected " in err
    assert "'DEVICE NAME:key=value[,key=value...]' where DEVICE NAME is a substring of" in err
    assert "e.g. 'NVIDIA H100 80GB HBM3:bf16=989e12,bandwidth=3.35e12'" in err


def test_bad_warmup_ini_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhw_benchmark_warmup = two\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini hw_benchmark_warmup='two': give a number of calls*"])


def test_bad_work_arguments_fail_the_test_with_the_fix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_dtype_alone(hw_benchmark):
            hw_benchmark(lambda dtype: None, dtype="bf16")

        def test_flops_not_a_number(hw_benchmark):
            hw_benchmark(lambda: None, flops="many")

        def test_unknown_dtype(hw_benchmark):
            hw_benchmark(lambda: None, flops=1.0, dtype="int4")

        def test_twice(hw_benchmark):
            hw_benchmark(lambda: None)
            hw_benchmark(lambda: None)
        """
    )
    result = pytester.runpytest(*QUICK)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "*TypeError: hw_benchmark: dtype= only picks the peak that flops= is compared with;"
            " to pass dtype to the benchmarked function, use hw_benchmark.pedantic(fn, "
            "kwargs={'dtype': ...}) or functools.partial",
            "*TypeError: hw_benchmark: flops= must be a number per call, got 'many'",
            "*ValueError: hw_benchmark: unknown dtype 'int4'; give a torch.dtype or one of *",
            "*RuntimeError: hw_benchmark can only be used once per test; it was used as "
            "hw_benchmark(...)",
        ],
        consecutive=False,
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ("-p", "no:benchmark"),
            "pytest-benchmark is not active (not installed, or -p no:benchmark)",
        ),
        (("--benchmark-disable",), "--benchmark-disable"),
    ],
    ids=["no-plugin", "disabled"],
)
def test_untimed_runs_call_once_and_still_measure_memory(
    pytester: pytest.Pytester,
    report_path: Path,
    load_valid_report: Loader,
    args: tuple[str, ...],
    reason: str,
) -> None:
    pytester.makepyfile(
        """
        calls = []

        def step(n):
            calls.append(n)
            return bytearray(n)

        def test_plain(hw_benchmark):
            assert len(hw_benchmark(step, 2**20, flops=10.0)) == 2**20
            assert calls == [2**20]
            assert hw_benchmark.stats is None
            info = hw_benchmark.extra_info
            assert info["timer"] is None and info["flops"] == 10.0 and "flops_per_s" not in info
            assert info["peak_bytes"]["rss"] > 0

        def test_pedantic(hw_benchmark):
            calls.clear()
            result = hw_benchmark.pedantic(step, setup=lambda: ((3,), {}), rounds=10,
                                           warmup_rounds=4)
            assert result == bytearray(3) and calls == [3]
        """
    )
    # No warning either: not pytest-benchmark's "fixture was not used", not ours.
    result = pytester.runpytest(*args, "-W", "error", f"--hw-report={report_path}")
    result.assert_outcomes(passed=2)
    for entry in _entries(load_valid_report(report_path)).values():
        assert entry["benchmark"]["timed"] is False
        assert entry["benchmark"]["reason"] == reason
        assert entry["benchmark"]["warnings"] == []
        assert entry["memory"]["series"]["rss"]["peak_bytes"] > 0
    result.stdout.no_fnmatch_line("*benchmarks without timings*")


@pytest.mark.skipif(sys.platform == "win32", reason="xdist subprocess run")
def test_under_xdist_memory_is_measured_and_missing_timings_are_reported(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytest.importorskip("xdist")
    pytester.makeconftest(
        """
        import sys

        def pytest_sessionfinish(session):
            if not hasattr(session.config, "workerinput"):
                assert "torch" not in sys.modules, "controller imported torch"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_step(hw_benchmark, n):
            assert hw_benchmark(bytearray, n * 2**20) == bytearray(n * 2**20)
            assert hw_benchmark.extra_info["peak_bytes"]["rss"] > 0
        """
    )
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        f"--hw-report={report_path}",
        # Its machine info is read at start-up: the controller must not import torch for it.
        "--benchmark-compare",
        f"--benchmark-storage={pytester.path / 'storage'}",
    )
    result.assert_outcomes(passed=3)
    entries = load_valid_report(report_path)["tests"]
    assert len(entries) == 3
    for entry in entries:
        bench = entry["benchmark"]
        assert bench["timed"] is False
        assert bench["reason"] == "pytest-benchmark disables itself under pytest-xdist"
        assert bench["warnings"] == [
            "timings were not collected: pytest-benchmark disables itself under pytest-xdist "
            "(-n); memory was measured. Run without -n (or -n 0) to time"
        ]
        assert entry["memory"]["series"]["rss"]["peak_bytes"] > 0
    result.stdout.fnmatch_lines(
        [
            "*hwbench: benchmarks without timings*",
            "3 tests: timings were not collected: pytest-benchmark disables itself under "
            "pytest-xdist*",
        ]
    )


def test_machine_info_names_the_accelerators(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cuda(monkeypatch, count=2, capability=(8, 0))
    pytester.makepyfile(
        """
        def test_cpu(hw_benchmark):
            hw_benchmark.pedantic(sum, args=([1, 2],), rounds=2)
        """
    )
    out = tmp_path / "bench.json"
    pytester.runpytest(f"--benchmark-json={out}").assert_outcomes(passed=1)
    machine = json.loads(out.read_text())["machine_info"]["hwbench"]
    assert machine["torch"]["version"] == str(torch.__version__)
    assert machine["torch"]["cuda"] == "12.4"
    gpus = [d for d in machine["devices"] if d["platform"] == "cuda"]
    assert [g["index"] for g in gpus] == [0, 1]
    for gpu in gpus:
        assert gpu["name"] == "NVIDIA A100-SXM4-80GB"
        assert gpu["compute_capability"] == "8.0"
        assert gpu["driver_version"] == "550.54.15"
        assert gpu["total_memory_bytes"] == 81_050 * MiB
        assert "uuid" not in gpu  # two boards of one model compare equal


def test_benchmark_only_and_skip_treat_hw_benchmark_as_a_benchmark(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_timed(hw_benchmark):
            hw_benchmark.pedantic(sum, args=([1],), rounds=2)

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("--benchmark-only", "-v")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*::test_timed PASSED*", "*::test_plain SKIPPED*"])
    result = pytester.runpytest("--benchmark-skip", "-v")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*::test_timed SKIPPED*", "*::test_plain PASSED*"])


def test_hw_benchmark_with_benchmark_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_both(hw_benchmark, benchmark):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*uses both hw_benchmark and pytest-benchmark's benchmark fixture*use hw_benchmark"]
    )


def test_memory_profile_keeps_the_report_and_the_call_is_measured_apart(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        def test_both(memory_profile, hw_benchmark):
            memory_profile.record_memory("before")
            hw_benchmark.pedantic(bytearray, args=(2**20,), rounds=2)
            assert hw_benchmark.extra_info["peak_bytes"]["rss"] > 0
        """
    )
    pytester.runpytest(f"--hw-report={report_path}").assert_outcomes(passed=1)
    entry = _entries(load_valid_report(report_path))["test_both"]
    assert [m["label"] for m in entry["memory"]["timeline"]["marks"]] == ["before"]
    assert entry["benchmark"]["rounds"] == 2


def test_help_lists_the_ini_settings(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "  hw_peak_flops (linelist):*",
            "  hw_benchmark_warmup (string):*",
        ],
        consecutive=False,
    )
