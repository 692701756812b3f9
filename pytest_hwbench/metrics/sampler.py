"""The one background thread per process that samples every running metric (memory, power)."""

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

#: Called with the time (``perf_counter_ns``) of the tick. It may return how many ns until it
#: wants its next call, overriding its interval for that once (None: at its interval).
SampleCallback = Callable[[int], "int | None"]
ErrorCallback = Callable[[BaseException], None]


class _Client:
    __slots__ = ("callback", "interval_ns", "next_due_ns", "on_error", "token")

    def __init__(
        self,
        token: int,
        callback: SampleCallback,
        on_error: ErrorCallback,
        interval_ns: int,
        due_ns: int,
    ) -> None:
        self.token = token
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
        # Guards the clients, the thread and the stop flag; the thread itself never takes it on
        # a tick: it reads `_snapshot`, a tuple replaced whole on every change.
        self._lock = threading.Lock()
        self._clients: dict[int, _Client] = {}
        self._snapshot: tuple[_Client, ...] = ()
        # A binary semaphore the thread sleeps on (acquire with a timeout) and `_notify` releases.
        # Every tick holds the GIL, which the measured code must hand over; waiting on a bare
        # lock instead of a Condition keeps the Python run on each wake-up short.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = False
        # When the thread will next wake by itself (None: running now, or only when notified),
        # so that adding a client wakes it only if it must run sooner, and removing one never does.
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
        """Start calling `callback(now_ns)` every `interval_s`; returns a token for `remove`.

        A callback that returns a number of ns is next called that much later instead (a
        client that knows it has nothing to sample for a while lets the thread sleep).
        """
        interval_ns = max(int(interval_s * 1e9), 1)
        with self._lock:
            token = next(self._ids)
            due_ns = time.perf_counter_ns() + interval_ns
            self._clients[token] = _Client(token, callback, on_error, interval_ns, due_ns)
            # Published before `_wake_at_ns` is read: the thread re-reads the snapshot after
            # setting `_wake_at_ns`, so one of the two always sees the new client in time.
            self._snapshot = tuple(self._clients.values())
            self._idle_poll_ns = interval_ns
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._wake_at_ns = None
                self._thread = threading.Thread(
                    target=self._run, name="pytest-hwbench-sampler", daemon=True
                )
                self._thread.start()
            else:
                wake_at = self._wake_at_ns
                if wake_at is not None and due_ns < wake_at:
                    self._notify()
        return token

    def remove(self, token: int) -> None:
        """Stop calling the callback registered under `token` (unknown tokens are ignored)."""
        with self._lock:
            # No notify: a thread waking for a removed client just finds nothing due.
            if self._clients.pop(token, None) is not None:
                self._snapshot = tuple(self._clients.values())

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and wait for it (at interpreter exit, or in tests)."""
        with self._lock:
            self._stopping = True
            self._clients.clear()
            self._snapshot = ()
            self._notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        with self._lock:
            if self._thread is thread:
                self._thread = None

    def _notify(self) -> None:
        """Wake the thread now (or at its next wait, if it is running)."""
        with contextlib.suppress(RuntimeError):  # already released: a wake-up is pending
            self._wake.release()

    def _run(self) -> None:
        wake = self._wake
        clock = time.perf_counter_ns
        idle_since_ns: int | None = None
        while True:
            clients = self._snapshot
            now_ns = clock()
            if not clients:
                if self._stopping:
                    return
                idle_since_ns = idle_since_ns or now_ns
                wait_ns = self._idle_wait_ns(now_ns - idle_since_ns)
                if wait_ns is None:
                    return
            else:
                idle_since_ns = None
                wait_ns = None
                for client in clients:
                    due_ns = client.next_due_ns
                    if due_ns <= now_ns:
                        try:
                            delay_ns = client.callback(now_ns)
                        except BaseException as exc:
                            self._drop(client, exc)
                            delay_ns = None
                        if delay_ns is None:
                            # Skip missed ticks rather than bursting to catch up after a stall.
                            missed = (now_ns - due_ns) // client.interval_ns
                            due_ns += (missed + 1) * client.interval_ns
                        else:
                            due_ns = now_ns + max(delay_ns, 0)
                        client.next_due_ns = due_ns
                    if wait_ns is None or due_ns - now_ns < wait_ns:
                        wait_ns = due_ns - now_ns
                assert wait_ns is not None  # clients is not empty
                if self._stopping:
                    return
            self._wake_at_ns = now_ns + wait_ns
            if self._snapshot is clients:  # else a client came or went meanwhile: look again
                wake.acquire(True, wait_ns / 1e9)
            self._wake_at_ns = None

    def _idle_wait_ns(self, idle_ns: int) -> int | None:
        """How long an idle thread sleeps before looking again; None: it has exited."""
        idle_left_ns = int(IDLE_EXIT_S * 1e9) - idle_ns
        with self._lock:
            if self._snapshot:
                return 0  # a client arrived: serve it
            if idle_left_ns <= 0 or self._stopping:
                self._thread = None
                self._idle_poll_ns = None
                return None
            poll_ns = self._idle_poll_ns
            return idle_left_ns if poll_ns is None else min(poll_ns, idle_left_ns)

    def _drop(self, client: _Client, exc: BaseException) -> None:
        self.remove(client.token)
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
