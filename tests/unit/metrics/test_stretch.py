"""HostStretch: a test's host memory at the probe's cost, with samples only when it lasts."""

from __future__ import annotations

import mmap
import time
from collections.abc import Iterator

import pytest

from pytest_hwbench.hardware.cpu import clear_refs_writable
from pytest_hwbench.metrics.memory._host import RSSPeakProbe
from pytest_hwbench.metrics.memory.sampler import get_sampler
from pytest_hwbench.metrics.memory.stretch import HostStretch

pytestmark = pytest.mark.skipif(
    not clear_refs_writable(), reason="the probe needs Linux with a writable clear_refs"
)
MiB = 2**20
HOST = {"platform": "cpu", "index": 0, "device": "cpu"}


@pytest.fixture
def stretch() -> Iterator[HostStretch]:
    probe = RSSPeakProbe.open()
    assert probe is not None
    measured = HostStretch(probe, 0.002, HOST)
    yield measured
    measured.close()
    probe.close()


def _touch(mib: int) -> mmap.mmap:
    data = mmap.mmap(-1, mib * MiB)
    for i in range(0, len(data), 4096):
        data[i] = 1
    return data


def test_a_short_stretch_has_start_exact_peak_and_end_but_no_timeline(
    stretch: HostStretch,
) -> None:
    stretch.interval_s = 1.0  # the test below ends well inside one interval
    assert stretch.begin()
    data = _touch(16)
    del data  # freed before the end: only the exact peak can know it
    memory = stretch.end()
    rss = memory["series"]["rss"]
    assert rss["exact_peak"] is True
    assert rss["peak_delta_bytes"] >= 15 * MiB
    assert rss["end_bytes"] < rss["peak_bytes"]
    assert memory["samples"] == 2
    assert memory["timeline"] is None
    assert "device" not in memory  # the entry's own device


def test_a_long_stretch_is_sampled_into_a_timeline(stretch: HostStretch) -> None:
    assert stretch.begin()
    data = _touch(8)
    time.sleep(0.05)
    memory = stretch.end()
    del data
    timeline = memory["timeline"]
    assert timeline is not None
    assert memory["samples"] == len(timeline["t"]) >= 10
    assert timeline["t"] == sorted(timeline["t"])
    assert memory["device"] == HOST
    rss = memory["series"]["rss"]
    assert rss["min_bytes"] <= rss["start_bytes"] <= rss["sampled_peak_bytes"] <= rss["peak_bytes"]


def test_stretches_in_a_row_keep_only_their_own_samples(stretch: HostStretch) -> None:
    assert stretch.begin()
    time.sleep(0.03)
    first = stretch.end()
    time.sleep(0.03)  # between stretches: no tick is kept for anyone
    assert stretch.begin()
    second = stretch.end()
    assert first["timeline"] is not None
    assert second["timeline"] is None


def test_close_stops_its_sampler_client(stretch: HostStretch) -> None:
    assert stretch.begin()
    stretch.end()
    before = len(get_sampler()._clients)
    stretch.close()
    assert len(get_sampler()._clients) == before - 1
