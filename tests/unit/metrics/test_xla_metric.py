"""The XLA memory metric driven through `FakeXLA`: device bytes in use, peaks proven or sampled."""

from __future__ import annotations

import pytest

from pytest_hwbench.hardware.xla import XLABackend
from pytest_hwbench.metrics.memory.xla import XLAMemoryMetric
from pytest_hwbench.testing._xla import FakeXLA, fake_xla

MIB = 2**20
GIB = 2**30


def _metric(fake: FakeXLA, index: int = 0, interval: str | None = None) -> XLAMemoryMetric:
    """The metric of device `index`, on a fresh backend (with `fake` installed)."""
    assert fake.count > index
    return XLAMemoryMetric(f"xla:{index}", backend=XLABackend(), index=index, interval=interval)


def test_series_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=4)
    metric = _metric(fake, 2)
    assert metric.series() == ("used", "rss")
    assert metric.primary_series == "used"
    device = metric.describe_device()
    assert device["device"] == "xla:2"
    assert device["properties"]["name"] == "TPU v5 lite"


def test_used_follows_allocations_on_the_measured_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=2, baseline_bytes=4 * MIB)
    fake.allocate(0, 100 * MIB)  # another device's buffers are not this metric's
    with _metric(fake, 1, interval="1s") as metric:
        handle = fake.allocate(1, 30 * MIB)
        held = metric.record_memory("holding 30 MiB")
        fake.free(handle)
    assert held.values["used"] == 34 * MIB
    used = metric.get_metrics()["series"]["used"]
    assert used["start_bytes"] == used["end_bytes"] == 4 * MIB
    assert used["peak_delta_bytes"] == 30 * MIB
    assert [m.label for m in metric.get_memory_timeline().marks] == ["holding 30 MiB"]


def test_a_new_lifetime_peak_is_this_measurements_exact_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_xla(monkeypatch, count=1)
    with _metric(fake, interval="1s") as metric:
        fake.free(fake.allocate(0, 64 * MIB))  # between samples: only the device peak saw it
    metrics = metric.get_metrics()
    used = metrics["series"]["used"]
    assert used["exact_peak"] is True
    assert used["peak_bytes"] == 64 * MIB
    assert used["sampled_peak_bytes"] == 0
    assert not any("lifetime peak" in w for w in metrics["warnings"])


def test_an_older_higher_peak_leaves_the_peak_sampled_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_xla(monkeypatch, count=1)
    fake.free(fake.allocate(0, 500 * MIB))  # an earlier test's peak, which nothing resets
    with _metric(fake, interval="1s") as metric:
        handle = fake.allocate(0, 10 * MIB)
        metric.record_memory("held")
        fake.free(handle)
        fake.free(fake.allocate(0, 20 * MIB))  # unseen: below the old peak, between samples
    metrics = metric.get_metrics()
    used = metrics["series"]["used"]
    assert used["exact_peak"] is False
    assert used["peak_bytes"] == 10 * MIB  # what the samples saw, flagged
    assert any(
        f"lifetime peak ({500 * MIB} bytes" in w and "sampled" in w for w in metrics["warnings"]
    )


def test_without_peak_bytes_used_the_peak_is_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=1, api="no_peak")
    with _metric(fake) as metric:
        handle = fake.allocate(0, 8 * MIB)
        metric.record_memory("held")
        fake.free(handle)
    metrics = metric.get_metrics()
    assert metrics["series"]["used"]["exact_peak"] is False
    assert metrics["series"]["used"]["peak_delta_bytes"] == 8 * MIB
    assert any("reports no device peak" in w for w in metrics["warnings"])


def test_old_torch_xla_reads_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=1, api="old", bytes_limit=GIB)
    with _metric(fake) as metric:
        handle = fake.allocate(0, 6 * MIB)
        sample = metric.record_memory("held")
        fake.free(handle)
    assert sample.values["used"] == 6 * MIB  # (kb_total - kb_free) * 1024
    assert metric.get_metrics()["series"]["used"]["exact_peak"] is False


def test_a_measured_block_gets_its_own_proven_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=1)
    with _metric(fake, interval="1s") as metric:
        fake.free(fake.allocate(0, 100 * MIB))  # the first call's transient
        with metric.measure("step") as scope:
            fake.free(fake.allocate(0, 10 * MIB))  # below the lifetime peak: sampled
        with metric.measure("bigger") as bigger:
            fake.free(fake.allocate(0, 150 * MIB))  # a new lifetime peak: proven
    assert scope.series["used"]["exact_peak"] is False
    assert bigger.series["used"]["exact_peak"] is True
    assert bigger.series["used"]["peak_delta_bytes"] == 150 * MIB
    whole = metric.get_metrics()["series"]["used"]
    assert whole["exact_peak"] is True
    assert whole["peak_bytes"] == 150 * MIB


def test_reads_wait_for_the_device_without_cutting_the_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_xla(monkeypatch, count=1)
    with _metric(fake, interval="1s") as metric:
        metric.record_memory("x")
    assert fake.wait_calls == 3  # start, record_memory, stop
    assert fake.sync_calls == 0  # a sync would change what the test compiles
