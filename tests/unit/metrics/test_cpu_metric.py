from __future__ import annotations

import mmap
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from pytest_hwbench.hardware import HardwareUnavailableError, UnknownHardwareError
from pytest_hwbench.hardware.cpu import CPUBackend, clear_refs_writable
from pytest_hwbench.metrics.memory import (
    CPUMemoryMetric,
    MemoryMetricError,
    MemoryMetricFactory,
    MetricState,
)
from pytest_hwbench.metrics.memory import _host as host_module
from pytest_hwbench.metrics.memory import cpu as cpu_metric_module
from pytest_hwbench.metrics.memory.base import PENDING_TICKS_MAX
from pytest_hwbench.metrics.memory.process_sampler import shutdown_process_samplers

MiB = 2**20
linux_with_clear_refs = pytest.mark.skipif(
    not clear_refs_writable(),
    reason="exact CPU peaks need Linux with a writable /proc/self/clear_refs",
)


def _touch(nbytes: int) -> mmap.mmap:
    # An anonymous mapping gets fresh pages: malloc may hand back heap memory already resident.
    buffer = mmap.mmap(-1, nbytes)
    for i in range(0, nbytes, 4096):
        buffer[i] = 1
    return buffer


def test_design_snippet_prints_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_hwbench import hardware
    from pytest_hwbench.metrics.memory import MemoryMetricFactory

    device = hardware.initialize_hardware("cpu")
    m = MemoryMetricFactory.create(device)
    m.start()
    m.record_memory()
    m.stop()
    metrics = m.get_metrics()
    timeline = m.get_memory_timeline()
    print(metrics["series"]["rss"])
    assert "peak_bytes" in capsys.readouterr().out
    assert len(timeline) >= 3
    assert metrics["device"]["platform"] == "cpu"


@linux_with_clear_refs
def test_short_transient_shows_in_the_exact_peak_every_time() -> None:
    hits = 0
    for _ in range(20):
        metric = MemoryMetricFactory.create("cpu", interval="1s")  # sampling cannot catch it
        metric.start()
        tensor = torch.ones(64 * MiB // 4, dtype=torch.float32)
        del tensor
        metrics = metric.stop()
        rss = metrics["series"]["rss"]
        assert rss["exact_peak"] is True
        if rss["peak_delta_bytes"] >= 60 * MiB:
            hits += 1
    assert hits == 20


@linux_with_clear_refs
def test_exact_peak_is_at_least_every_sample_and_start() -> None:
    with MemoryMetricFactory.create("cpu", interval="2ms") as metric:
        keep = _touch(32 * MiB)
        metric.record_memory("allocated")
        del keep
        time.sleep(0.02)
    rss = metric.get_metrics()["series"]["rss"]
    column = [v for v in metric.get_memory_timeline().column("rss") if v is not None]
    assert rss["peak_bytes"] >= max(column)
    assert rss["peak_delta_bytes"] == rss["peak_bytes"] - rss["start_bytes"]
    assert rss["peak_delta_bytes"] >= 30 * MiB
    assert rss["min_bytes"] <= rss["start_bytes"]
    assert [m.label for m in metric.get_memory_timeline().marks] == ["allocated"]


def test_refused_clear_refs_falls_back_to_sampled_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        host_module, "reset_vmhwm", lambda: "PermissionError: Operation not permitted"
    )
    with MemoryMetricFactory.create("cpu") as metric:
        metric.record_memory("x")
    metrics = metric.get_metrics()
    assert metrics["series"]["rss"]["exact_peak"] is False
    assert metrics["warnings"] == [
        "clear_refs refused (PermissionError: Operation not permitted): CPU peak is sampled"
    ]


@linux_with_clear_refs
def test_nested_metric_reset_does_not_hide_the_outer_peak() -> None:
    outer = MemoryMetricFactory.create("cpu", interval="1s").start()
    spike = torch.ones(48 * MiB // 4)
    del spike
    inner = MemoryMetricFactory.create("cpu", interval="1s").start()  # resets VmHWM
    inner.stop()
    rss = outer.stop()["series"]["rss"]
    assert rss["exact_peak"]
    assert rss["peak_delta_bytes"] >= 44 * MiB


def test_out_of_order_calls_raise_clearly() -> None:
    metric = MemoryMetricFactory.create("cpu")
    with pytest.raises(MemoryMetricError, match="call start\\(\\) first"):
        metric.record_memory()
    with pytest.raises(MemoryMetricError, match="stop\\(\\) needs a running metric"):
        metric.stop()
    with pytest.raises(MemoryMetricError, match="before start"):
        metric.get_metrics()
    metric.start()
    with pytest.raises(MemoryMetricError, match="already running"):
        metric.start()
    metric.stop()
    assert metric.state is MetricState.STOPPED


def test_start_after_stop_begins_a_fresh_measurement() -> None:
    metric = MemoryMetricFactory.create("cpu")
    with metric:
        metric.record_memory("first run")
    with metric:
        pass
    assert metric.get_memory_timeline().marks == []
    assert metric.get_metrics()["series"]["rss"]["end_bytes"] is not None


def test_metrics_while_running_are_a_snapshot() -> None:
    with MemoryMetricFactory.create("cpu") as metric:
        snapshot = metric.get_metrics()
        assert snapshot["running"] is True
        assert snapshot["series"]["rss"]["end_bytes"] is None
    assert metric.get_metrics()["running"] is False


def test_context_manager_stops_on_error() -> None:
    metric = MemoryMetricFactory.create("cpu")
    with pytest.raises(ZeroDivisionError), metric:
        1 / 0  # noqa: B018
    assert metric.state is MetricState.STOPPED


def test_sampler_error_never_fails_the_measured_code(monkeypatch: pytest.MonkeyPatch) -> None:
    metric = MemoryMetricFactory.create("cpu", interval="1ms")
    metric.start()
    calls = {"n": 0}
    real_read = metric._read_raw

    def flaky() -> object:
        if threading.current_thread().name == "pytest-hwbench-sampler":
            calls["n"] += 1
            raise OSError("statm went away")
        return real_read()

    monkeypatch.setattr(metric, "_read_raw", flaky)
    deadline = time.monotonic() + 5
    while not metric.warnings and time.monotonic() < deadline:
        time.sleep(0.002)
    metrics = metric.stop()
    assert calls["n"] == 1
    assert (
        "background sampling stopped after an error (OSError: statm went away)"
        in (metrics["warnings"][0])
    )
    assert metrics["series"]["rss"]["end_bytes"] > 0


def test_interval_below_one_millisecond_is_refused() -> None:
    with pytest.raises(ValueError, match="below the 1 ms minimum"):
        MemoryMetricFactory.create("cpu", interval="500us")


def test_unknown_sampler_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'gpu'; valid samplers: thread, process"):
        MemoryMetricFactory.create("cpu", sampler="gpu")


def test_timeline_states_its_interval() -> None:
    with MemoryMetricFactory.create("cpu", interval="25ms") as metric:
        pass
    assert metric.get_memory_timeline().interval_s == pytest.approx(0.025)
    assert metric.get_metrics()["interval_s"] == pytest.approx(0.025)


def test_include_children_measures_a_child_process() -> None:
    code = (
        "import time\n"
        "b = bytearray(64 * 2**20)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "time.sleep(3)\n"
    )
    with MemoryMetricFactory.create("cpu", include_children=True, interval="10ms") as metric:
        child = subprocess.Popen([sys.executable, "-c", code])
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                sample = metric.record_memory()
                if sample.values["children_rss"] >= 60 * MiB:
                    break
                time.sleep(0.02)
        finally:
            child.kill()
            child.wait()
    series = metric.get_metrics()["series"]
    assert series["children_rss"]["peak_bytes"] >= 60 * MiB
    assert series["children_rss"]["exact_peak"] is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process sampler reads /proc")
def test_process_sampler_samples_near_one_khz_and_leaves_nothing_behind() -> None:
    metric = MemoryMetricFactory.create("cpu", sampler="process", interval="1ms")
    try:
        with metric:
            time.sleep(0.3)
        metrics = metric.get_metrics()
        assert metrics["sampler"] == "process"
        assert metrics["samples"] >= 100  # ~300 at 1 kHz; the bound only proves it is not 10 ms
        assert metric.get_memory_timeline().sampler == "process"
        t = metric.get_memory_timeline().t
        assert t == sorted(t)
    finally:
        from pytest_hwbench.metrics.memory import process_sampler

        pids = [s.child_pid for s in process_sampler._samplers.values()]
        shutdown_process_samplers()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_factory_accepts_names_devices_and_backends() -> None:
    assert isinstance(MemoryMetricFactory.create("cpu"), CPUMemoryMetric)
    assert isinstance(MemoryMetricFactory.create(torch.device("cpu")), CPUMemoryMetric)
    metric = MemoryMetricFactory.create(CPUBackend())
    assert isinstance(metric, CPUMemoryMetric)
    assert metric.device_index == 0


@pytest.mark.usefixtures("cpu_only_machine")
def test_factory_refuses_unknown_and_absent_devices() -> None:
    with pytest.raises(UnknownHardwareError, match="registered backends: cpu, cuda"):
        MemoryMetricFactory.create("tpu")
    with pytest.raises(
        HardwareUnavailableError,
        match="cannot measure memory on cuda:0: cuda is not available.*available here: cpu",
    ):
        MemoryMetricFactory.create("cuda:0")


def test_process_sampler_off_linux_is_refused_at_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_metric_module.sys, "platform", "darwin")
    with pytest.raises(ValueError, match='sampler="process" reads /proc.*not darwin'):
        MemoryMetricFactory.create("cpu", sampler="process")


def test_sampler_ticks_reach_the_timeline_and_their_backlog_stays_bounded() -> None:
    """Ticks park raw readings; readers file them, and the thread does when nobody reads."""
    metric = MemoryMetricFactory.create("cpu", interval="1ms")
    metric.start()
    try:
        deadline = time.monotonic() + 10
        record = metric._record
        while record.timeline.samples_seen < PENDING_TICKS_MAX and time.monotonic() < deadline:
            time.sleep(0.01)  # nobody reads the results meanwhile
        assert record.timeline.samples_seen >= PENDING_TICKS_MAX  # filed by the thread itself
        # At most the bound: the tick that reaches it files the backlog right after parking.
        assert len(metric._record.pending) <= PENDING_TICKS_MAX
        seen = metric.get_memory_timeline().samples_seen
        assert not metric._record.pending or metric._record.pending[0][0] > metric._t0_ns
        assert seen > PENDING_TICKS_MAX
    finally:
        metrics = metric.stop()
    timeline = metric.get_memory_timeline()
    assert timeline.t == sorted(timeline.t)
    rss = [v for v in timeline.column("rss") if v is not None]
    assert len(rss) == metrics["samples"]
    assert all(v > 1 << 20 for v in rss)  # decoded from statm pages into bytes
    assert metrics["series"]["rss"]["peak_bytes"] >= max(rss)


def test_undecodable_sample_is_a_warning_not_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    metric = MemoryMetricFactory.create("cpu", interval="1ms")
    monkeypatch.setattr(metric, "_read_raw", lambda: b"garbage")
    metric.start()
    time.sleep(0.02)
    metrics = metric.stop()
    assert any("decoding a background sample failed (IndexError" in w for w in metrics["warnings"])
    assert metrics["series"]["rss"]["end_bytes"] > 0
    assert metrics["series"]["rss"]["exact_peak"] is clear_refs_writable()


glibc_heap = pytest.mark.skipif(
    host_module.heap_in_use_reader() is None, reason=host_module.NO_HEAP_REASON
)


def _malloc_held(nbytes: int) -> int:
    """Have malloc hand out `nbytes` (never touched) and return the pointer, for `_free`."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    pointer = libc.malloc(nbytes)
    assert pointer
    return int(pointer)


def _free(pointer: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None)
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(pointer)


@glibc_heap
@pytest.mark.parametrize("sampler", ["thread", "process"])
def test_the_heap_series_is_what_malloc_handed_out_touched_or_not(sampler: str) -> None:
    metric = MemoryMetricFactory.create("cpu", include_heap=True, sampler=sampler, interval="5ms")
    assert metric.series() == ("rss", "heap")
    metric.start()
    pointer = _malloc_held(64 * MiB)  # handed out, never touched: not resident, yet held
    try:
        metric.record_memory("held")
        time.sleep(0.03)
    finally:
        _free(pointer)
    metric.record_memory("given back")
    results = metric.stop()
    heap = results["series"]["heap"]
    assert heap["exact_peak"] is False  # no high-water mark: sampled, and said so
    assert heap["peak_delta_bytes"] >= 64 * MiB
    held, given_back = metric.get_memory_timeline().marks[-2:]
    assert held.values["heap"] - heap["start_bytes"] >= 64 * MiB
    assert given_back.values["heap"] - heap["start_bytes"] < 8 * MiB
    assert held.values["rss"] - results["series"]["rss"]["start_bytes"] < 32 * MiB
    timeline = metric.get_memory_timeline().to_dict()
    assert len([v for v in timeline["series"]["heap"] if v is not None]) >= 4  # sampled too


def test_without_mallinfo2_the_heap_series_is_refused_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpu_metric_module, "heap_in_use_reader", lambda: None)
    with pytest.raises(
        ValueError, match=r"include_heap=True: the heap series reads glibc's mallinfo2"
    ):
        CPUMemoryMetric(include_heap=True)
    assert CPUMemoryMetric().series() == ("rss",)
