"""HostStretch: a test's host memory at the probe's cost, with samples only when it lasts."""

from __future__ import annotations

import mmap
import time
from collections.abc import Iterator

import pytest

from pytest_hwbench.hardware.cpu import clear_refs_writable
from pytest_hwbench.metrics.memory._host import RSSPeakProbe
from pytest_hwbench.metrics.memory.stretch import HostStretch
from pytest_hwbench.metrics.sampler import get_sampler

pytestmark = pytest.mark.skipif(
    not clear_refs_writable(), reason="the probe needs Linux with a writable clear_refs"
)
MiB = 2**20
HOST = {"platform": "cpu", "index": 0, "device": "cpu"}


@pytest.fixture
def probe() -> Iterator[RSSPeakProbe]:
    opened = RSSPeakProbe.open()
    assert opened is not None
    yield opened
    opened.close()


@pytest.fixture
def stretch(probe: RSSPeakProbe) -> Iterator[HostStretch]:
    measured = HostStretch(probe, 0.002, HOST)
    yield measured
    measured.close()


def _touch(mib: int) -> mmap.mmap:
    data = mmap.mmap(-1, mib * MiB)
    for i in range(0, len(data), 4096):
        data[i] = 1
    return data


def test_a_short_stretch_has_start_exact_peak_and_end_but_no_timeline(
    probe: RSSPeakProbe,
) -> None:
    stretch = HostStretch(probe, 1.0, HOST)  # the test below ends well inside one interval
    assert stretch.begin()
    data = _touch(16)
    del data  # freed before the end: only the exact peak can know it
    memory = stretch.end().to_memory()
    rss = memory["series"]["rss"]
    assert rss["exact_peak"] is True
    assert rss["peak_delta_bytes"] >= 15 * MiB
    assert rss["end_bytes"] < rss["peak_bytes"]
    assert memory["samples"] == 2
    assert memory["timeline"] is None
    assert "device" not in memory  # the entry's own device
    measured = stretch.end() if stretch.begin() else None  # the tuple: what the report encodes
    assert measured is not None
    assert measured.long_form is None
    assert measured.peak_delta_bytes == measured.peak_bytes - measured.start_bytes >= 0
    stretch.close()


def test_a_long_stretch_is_sampled_into_a_timeline(stretch: HostStretch) -> None:
    assert stretch.begin()
    data = _touch(8)
    time.sleep(0.05)
    memory = stretch.end().to_memory()
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
    first = stretch.end().to_memory()
    time.sleep(0.03)  # between stretches: no tick is kept for anyone
    assert stretch.begin()
    second = stretch.end().to_memory()
    assert first["timeline"] is not None
    assert second["timeline"] is None


def test_close_stops_its_sampler_client(stretch: HostStretch) -> None:
    assert stretch.begin()
    stretch.end()
    before = len(get_sampler()._clients)
    stretch.close()
    assert len(get_sampler()._clients) == before - 1


def test_after_short_stretches_the_sampler_looks_in_rarely_until_one_lasts(
    probe: RSSPeakProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks: list[int] = []
    tick = HostStretch._tick

    def counted(self: HostStretch, now_ns: int) -> int | None:
        ticks.append(now_ns)
        return tick(self, now_ns)

    monkeypatch.setattr(HostStretch, "_tick", counted)
    stretch = HostStretch(probe, 0.002, HOST, look_in_s=0.2)
    try:
        assert stretch.begin()
        stretch.end()  # short: from now on the thread looks in every 0.2 s, not every 2 ms
        time.sleep(0.01)  # the tick already due at the interval
        seen = len(ticks)
        time.sleep(0.1)
        assert len(ticks) - seen <= 1  # at the interval it would be ~50
        # A long stretch is still sampled, from the first look-in on...
        assert stretch.begin()
        time.sleep(0.4)
        long = stretch.end().to_memory()
        assert long["timeline"] is not None
        assert long["samples"] >= 20
        # ...and the next one from its first interval on, as stretches last again.
        assert stretch.begin()
        time.sleep(0.05)
        following = stretch.end().to_memory()
        assert following["samples"] >= 5  # looking in every 0.2 s, it would have had at most 3
    finally:
        stretch.close()
