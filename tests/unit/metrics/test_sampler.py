from __future__ import annotations

import itertools
import threading
import time

from pytest_hwbench.metrics.sampler import SamplerThread


def _wait_for(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return False


def test_one_thread_serves_every_client_at_its_interval() -> None:
    sampler = SamplerThread()
    fast: list[int] = []
    slow: list[int] = []
    threads: set[int | None] = set()
    errors: list[BaseException] = []

    def on_fast(now_ns: int) -> None:
        threads.add(threading.get_ident())
        fast.append(now_ns)

    def on_slow(now_ns: int) -> None:
        threads.add(threading.get_ident())
        slow.append(now_ns)

    a = sampler.add(on_fast, 0.005, errors.append)
    b = sampler.add(on_slow, 0.050, errors.append)
    thread = sampler.thread
    try:
        assert _wait_for(lambda: len(slow) >= 3)
        assert sampler.thread is thread
        assert len(fast) > 2 * len(slow)
        assert fast == sorted(fast)
        assert thread is not None
        assert threads == {thread.ident}
    finally:
        sampler.remove(a)
        sampler.remove(b)
        sampler.shutdown()
    assert not errors
    assert thread is not None
    assert not thread.is_alive()


def test_failing_callback_is_removed_and_reported_others_continue() -> None:
    sampler = SamplerThread()
    errors: list[BaseException] = []
    good: list[int] = []

    def bad(now_ns: int) -> None:
        raise OSError("statm vanished")

    sampler.add(bad, 0.002, errors.append)
    sampler.add(good.append, 0.002, errors.append)
    try:
        assert _wait_for(lambda: len(good) >= 10)
    finally:
        sampler.shutdown()
    assert len(errors) == 1
    assert isinstance(errors[0], OSError)


def test_shutdown_leaves_no_thread() -> None:
    sampler = SamplerThread()
    sampler.add(lambda now: None, 0.01, lambda exc: None)
    thread = sampler.thread
    sampler.shutdown()
    assert thread is not None
    assert not thread.is_alive()
    assert sampler.thread is None


def test_next_client_after_an_idle_gap_is_served_without_waking_the_thread() -> None:
    """Each test's metric is a new client: waking the thread for each would cost every test."""
    sampler = SamplerThread()
    notified = []
    real_notify = sampler._notify

    def counting_notify() -> None:
        notified.append(1)
        real_notify()

    sampler._notify = counting_notify  # type: ignore[method-assign]
    try:
        ticks: list[int] = []
        token = sampler.add(ticks.append, 0.01, lambda exc: None)  # starts the thread
        assert _wait_for(lambda: len(ticks) >= 2)
        for _ in range(5):  # tests come and go; the thread idles between them
            sampler.remove(token)
            time.sleep(0.03)
            ticks.clear()
            token = sampler.add(ticks.append, 0.01, lambda exc: None)
            assert _wait_for(lambda: len(ticks) >= 2, timeout_s=1.0)
        assert notified == []
    finally:
        sampler.shutdown()


def test_faster_client_wakes_a_thread_sleeping_on_a_slow_one() -> None:
    sampler = SamplerThread()
    slow: list[int] = []
    fast: list[int] = []
    try:
        sampler.add(slow.append, 30.0, lambda exc: None)
        time.sleep(0.05)  # the thread now sleeps until the slow client's first tick, 30 s away
        sampler.add(fast.append, 0.005, lambda exc: None)
        assert _wait_for(lambda: len(fast) >= 3, timeout_s=2.0)
        assert slow == []
    finally:
        sampler.shutdown()


def test_clients_added_and_removed_concurrently_are_all_served() -> None:
    """Adds race the thread's own bookkeeping; none may be left waiting for a late wake-up."""
    sampler = SamplerThread()
    try:
        for _ in range(50):
            ticks: list[int] = []
            token = sampler.add(ticks.append, 0.002, lambda exc: None)
            assert _wait_for(ticks.__len__, timeout_s=1.0)
            sampler.remove(token)
    finally:
        sampler.shutdown()


def test_a_callback_returning_a_delay_is_next_called_after_it() -> None:
    sampler = SamplerThread()
    calls: list[int] = []
    errors: list[BaseException] = []

    def slow_down(now_ns: int) -> int | None:
        calls.append(now_ns)
        return 50_000_000 if len(calls) >= 3 else None  # three at 2 ms, then every 50 ms

    token = sampler.add(slow_down, 0.002, errors.append)
    try:
        assert _wait_for(lambda: len(calls) >= 5)
    finally:
        sampler.remove(token)
        sampler.shutdown()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(gap < 40_000_000 for gap in gaps[:2])
    assert all(gap >= 49_000_000 for gap in gaps[2:4])
    assert not errors
