"""The one background thread per process that samples every running memory metric."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable

__all__ = [
    "DEFAULT_INTERVAL_S",
    "MIN_INTERVAL_S",
    "SamplerThread",
    "get_sampler",
    "shutdown_sampler",
]

#: The default sampling interval: ~0.5% cost on pure-Python code on a 2-core machine.
DEFAULT_INTERVAL_S = 0.010
#: Below this, neither a thread nor a helper process samples honestly.
MIN_INTERVAL_S = 0.001
#: An idle sampler thread (no metric running) exits after this long; the next metric restarts it.
IDLE_EXIT_S = 5.0

SampleCallback = Callable[[int], None]
ErrorCallback = Callable[[BaseException], None]


class _Client:
    __slots__ = ("callback", "interval_ns", "next_due_ns", "on_error")

    def __init__(
        self, callback: SampleCallback, on_error: ErrorCallback, interval_ns: int, due_ns: int
    ) -> None:
        self.callback = callback
        self.on_error = on_error
        self.interval_ns = interval_ns
        self.next_due_ns = due_ns


class SamplerThread:
    """Calls each registered callback every `interval` seconds from one daemon thread.

    One thread serves every running metric, so a test suite starts it once, not once per test.
    A callback that raises is removed and its `on_error` told; the measured code never sees it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._clients: dict[int, _Client] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = False
        # When the thread will next wake by itself (None: only when notified), so that adding a
        # client wakes it only if it must run sooner, and removing one never does.
        self._wake_at_ns: int | None = None
        # While idle (until IDLE_EXIT_S) the thread keeps waking at the last client's interval,
        # so the next client (the next test's metric) is served without a notify: waking a
        # waiting thread costs the caller ~10 µs and a GIL handoff, every test.
        self._idle_poll_ns: int | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The running thread, if any (for tests that check nothing leaks)."""
        return self._thread

    def add(self, callback: SampleCallback, interval_s: float, on_error: ErrorCallback) -> int:
        """Start calling `callback(now_ns)` every `interval_s`; returns a token for `remove`."""
        interval_ns = max(int(interval_s * 1e9), 1)
        with self._cond:
            token = next(self._ids)
            due_ns = time.perf_counter_ns() + interval_ns
            self._clients[token] = _Client(callback, on_error, interval_ns, due_ns)
            self._idle_poll_ns = interval_ns
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._wake_at_ns = None
                self._thread = threading.Thread(
                    target=self._run, name="pytest-hwbench-sampler", daemon=True
                )
                self._thread.start()
            elif self._wake_at_ns is None or due_ns < self._wake_at_ns:
                self._cond.notify()
        return token

    def remove(self, token: int) -> None:
        """Stop calling the callback registered under `token` (unknown tokens are ignored)."""
        with self._cond:
            # No notify: a thread waking for a removed client just finds nothing due.
            self._clients.pop(token, None)

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and wait for it (at interpreter exit, or in tests)."""
        with self._cond:
            self._stopping = True
            self._clients.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        with self._cond:
            if self._thread is thread:
                self._thread = None

    def _run(self) -> None:
        idle_since: float | None = None
        while True:
            with self._cond:
                if self._stopping:
                    return
                if not self._clients:
                    now = time.monotonic()
                    idle_since = idle_since or now
                    idle_left_s = IDLE_EXIT_S - (now - idle_since)
                    if idle_left_s <= 0:
                        self._thread = None
                        self._idle_poll_ns = None
                        return
                    poll_ns = self._idle_poll_ns
                    if poll_ns is None or poll_ns / 1e9 >= idle_left_s:
                        self._wake_at_ns = None
                        self._cond.wait(idle_left_s)
                    else:
                        self._wake_at_ns = time.perf_counter_ns() + poll_ns
                        self._cond.wait(poll_ns / 1e9)
                    continue
                idle_since = None
                now_ns = time.perf_counter_ns()
                next_due = min(c.next_due_ns for c in self._clients.values())
                if next_due > now_ns:
                    self._wake_at_ns = next_due
                    self._cond.wait((next_due - now_ns) / 1e9)
                    continue
                due = [(t, c) for t, c in self._clients.items() if c.next_due_ns <= now_ns]
                for _, client in due:
                    # Skip missed ticks rather than bursting to catch up after a GIL stall.
                    missed = (now_ns - client.next_due_ns) // client.interval_ns
                    client.next_due_ns += (missed + 1) * client.interval_ns
            for token, client in due:
                try:
                    client.callback(now_ns)
                except BaseException as exc:
                    self.remove(token)
                    # An error reporter that fails must not kill the shared thread.
                    with contextlib.suppress(Exception):
                        client.on_error(exc)


_sampler: SamplerThread | None = None
_sampler_lock = threading.Lock()
_sampler_pid = os.getpid()


def get_sampler() -> SamplerThread:
    """The process-wide sampler (a forked child gets its own: threads do not survive fork)."""
    global _sampler, _sampler_pid
    with _sampler_lock:
        if _sampler is None or _sampler_pid != os.getpid():
            _sampler = SamplerThread()
            _sampler_pid = os.getpid()
        return _sampler


def shutdown_sampler() -> None:
    """Stop the process-wide sampler thread if it runs."""
    with _sampler_lock:
        sampler = _sampler
    if sampler is not None and _sampler_pid == os.getpid():
        sampler.shutdown()


atexit.register(shutdown_sampler)
