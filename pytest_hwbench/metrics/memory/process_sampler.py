"""A helper process that samples this process's RSS at up to 1 kHz without taking the GIL."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["ProcessSampler", "get_process_sampler", "shutdown_process_samplers"]

RecordCallback = Callable[[int, int], None]
_CHILD = Path(__file__).with_name("_proc_child.py")
_RECORD = struct.Struct("<qq")  # as written by _proc_child.py
_RECORD_SIZE = _RECORD.size


class ProcessSampler:
    """One helper process (started with subprocess, not fork) reading ``/proc/<pid>/statm``.

    Records (perf_counter_ns, rss_bytes) arrive in batches on a pipe; a reader thread that
    blocks in ``os.read`` (GIL released) hands them to the subscribed callbacks. The helper
    samples only while someone is subscribed.
    """

    def __init__(self, interval_s: float, pid: int | None = None) -> None:
        if not sys.platform.startswith("linux"):
            raise RuntimeError(
                'sampler="process" reads /proc/<pid>/statm and needs Linux; '
                'use sampler="thread" here'
            )
        self.interval_s = interval_s
        self.pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()
        self._subscribers: dict[int, RecordCallback] = {}
        self._ids = itertools.count(1)
        self._flushed = threading.Condition(self._lock)
        self._flush_count = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-I", str(_CHILD), str(self.pid), repr(interval_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
            close_fds=True,
        )
        self._reader = threading.Thread(
            target=self._read_loop, name="pytest-hwbench-process-sampler", daemon=True
        )
        self._reader.start()

    @property
    def alive(self) -> bool:
        """Whether the helper process still runs."""
        return self._proc.poll() is None

    @property
    def child_pid(self) -> int:
        """The helper process's pid (for tests that check nothing leaks)."""
        return self._proc.pid

    def subscribe(self, callback: RecordCallback) -> int:
        """Start delivering records to `callback(t_ns, rss_bytes)`; returns a token."""
        with self._lock:
            token = next(self._ids)
            first = not self._subscribers
            self._subscribers[token] = callback
        if first:
            self._send(b"1")
        return token

    def unsubscribe(self, token: int) -> None:
        """Stop delivering to the callback of `token`; the helper pauses when nobody listens."""
        with self._lock:
            self._subscribers.pop(token, None)
            last = not self._subscribers
        if last:
            self._send(b"0")

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Wait until every record sampled so far has been delivered; False on timeout."""
        with self._lock:
            target = self._flush_count + 1
        if not self._send(b"f"):
            return False
        with self._flushed:
            return self._flushed.wait_for(lambda: self._flush_count >= target, timeout_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the helper process and the reader thread."""
        self._send(b"q")
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        if self._reader is not threading.current_thread():
            self._reader.join(timeout_s)

    def _send(self, command: bytes) -> bool:
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return False
        try:
            stdin.write(command)
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def _read_loop(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        fd = stdout.fileno()
        pending = b""
        while True:
            try:
                chunk = os.read(fd, 64 * 1024)
            except (OSError, ValueError):
                break
            if not chunk:
                break
            data = pending + chunk
            usable = len(data) - len(data) % _RECORD_SIZE
            pending = data[usable:]
            with self._lock:
                callbacks = list(self._subscribers.values())
            flushes = 0
            for t_ns, rss in _RECORD.iter_unpack(data[:usable]):
                if t_ns < 0:
                    flushes += 1
                    continue
                for callback in callbacks:
                    # A subscriber's failure is its own; the others still get their data.
                    with contextlib.suppress(Exception):
                        callback(t_ns, rss)
            if flushes:
                with self._flushed:
                    self._flush_count += flushes
                    self._flushed.notify_all()


_samplers: dict[float, ProcessSampler] = {}
_samplers_lock = threading.Lock()


def get_process_sampler(interval_s: float) -> ProcessSampler:
    """The process-wide helper for `interval_s` (started on first use, restarted if it died)."""
    with _samplers_lock:
        sampler = _samplers.get(interval_s)
        if sampler is None or not sampler.alive or sampler.pid != os.getpid():
            sampler = ProcessSampler(interval_s)
            _samplers[interval_s] = sampler
        return sampler


def shutdown_process_samplers() -> None:
    """Stop every helper process this process started (also run at interpreter exit)."""
    with _samplers_lock:
        samplers = [s for s in _samplers.values() if s.pid == os.getpid()]
        _samplers.clear()
    for sampler in samplers:
        sampler.close()


atexit.register(shutdown_process_samplers)
