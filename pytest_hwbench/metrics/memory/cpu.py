"""The host process's memory: RSS sampled cheaply, the exact peak from Linux's VmHWM."""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from pytest_hwbench.metrics.memory._host import (
    NO_HEAP_REASON,
    HostRSSReader,
    RSSPeakProbe,
    heap_in_use_reader,
    read_rss_bytes,
    read_rss_high_water_bytes,
    read_rss_raw,
    read_vmhwm_bytes,
    reset_rss_high_water,
    reset_vmhwm,
    rss_from_raw,
    rss_high_water,
    vmhwm_counter,
)
from pytest_hwbench.metrics.memory.base import MemoryMetric

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.base import HardwareBackend

__all__ = [
    "CPUMemoryMetric",
    "HostRSSReader",
    "RSSPeakProbe",
    "read_rss_high_water_bytes",
    "read_vmhwm_bytes",
    "reset_rss_high_water",
    "reset_vmhwm",
    "rss_high_water",
]


class CPUMemoryMetric(MemoryMetric):
    """The host process's memory: ``rss``; ``children_rss`` and ``heap`` when asked.

    ``children_rss`` comes with ``include_children=True``, ``heap`` with ``include_heap=True``.
    The peak of ``rss`` is exact on Linux where clear_refs may be written: VmHWM is reset at
    `start()` and read at `stop()`. Elsewhere it is the sampler's maximum, flagged as sampled.
    ``heap`` is what malloc has handed out and not had back (glibc's ``mallinfo2()``): what the
    program holds, beside what the OS gave it, as CUDA's ``allocated`` beside ``reserved``. It
    has no high-water mark: its peak is always sampled.
    """

    platform = "cpu"
    supported_samplers = ("thread", "process")

    def __init__(
        self,
        device: torch.device | str | None = None,
        *,
        backend: HardwareBackend | None = None,
        include_children: bool = False,
        include_heap: bool = False,
        **options: Any,
    ) -> None:
        self.include_children = include_children
        self._read_heap = heap_in_use_reader() if include_heap else None
        if include_heap and self._read_heap is None:
            raise ValueError(f"include_heap=True: {NO_HEAP_REASON}; leave include_heap off")
        self.include_heap = include_heap
        self._children_process: Any = None
        self._process_token: int | None = None
        if options.get("sampler") == "process" and not sys.platform.startswith("linux"):
            raise ValueError(
                f'sampler="process" reads /proc/<pid>/statm and needs Linux, not {sys.platform}; '
                'use sampler="thread"'
            )
        super().__init__(device, backend=backend, **options)

    def series(self) -> tuple[str, ...]:
        """``rss``, plus ``children_rss`` and ``heap`` when included."""
        return (
            "rss",
            *(("children_rss",) if self.include_children else ()),
            *(("heap",) if self.include_heap else ()),
        )

    def _read(self) -> dict[str, int]:
        values = {"rss": read_rss_bytes()}
        values.update(self._read_in_process())
        return values

    def _read_in_process(self) -> dict[str, int]:
        """The series only this process can read (the process sampler reads ``rss``)."""
        values = {}
        if self.include_children:
            values["children_rss"] = self._read_children()
        if self._read_heap is not None:
            values["heap"] = self._read_heap()
        return values

    def _read_raw(self) -> object:
        # A tick parks statm's bytes; parsing waits until someone reads the results.
        if self.include_children or self.include_heap:
            return self._read()
        return read_rss_raw()

    def _decode_raw(self, raw: Any) -> Mapping[str, int]:
        return raw if isinstance(raw, dict) else {"rss": rss_from_raw(raw)}

    def _read_children(self) -> int:
        import psutil

        if self._children_process is None:
            self._children_process = psutil.Process()
        total = 0
        for child in self._children_process.children(recursive=True):
            try:
                total += int(child.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # a worker that exits between listing and reading is simply gone
        return total

    def _high_water_counters(self) -> tuple[Hashable, ...]:
        return (vmhwm_counter(),)

    def _reset_high_water(self) -> frozenset[str]:
        return reset_rss_high_water(self.warnings, "CPU peak")

    def _read_high_water(self) -> dict[str, int]:
        return rss_high_water(self._exact_series)

    # The process sampler feeds ``rss`` from a helper process; the thread keeps the rest.
    def _start_sampling(self) -> None:
        if self.sampler != "process":
            super()._start_sampling()
            return
        from pytest_hwbench.metrics.memory.process_sampler import get_process_sampler

        self._process_token = get_process_sampler(self.interval_s).subscribe(self._on_record)
        if self.include_children or self.include_heap:
            super()._start_sampling()

    def _stop_sampling(self) -> None:
        super()._stop_sampling()
        if self._process_token is not None:
            from pytest_hwbench.metrics.memory.process_sampler import get_process_sampler

            sampler = get_process_sampler(self.interval_s)
            if not sampler.flush():
                self.warnings.append(
                    "the process sampler did not flush in time: timeline may end early"
                )
            sampler.unsubscribe(self._process_token)
            self._process_token = None

    def _sample_tick(self, now_ns: int) -> None:
        if self.sampler != "process":
            super()._sample_tick(now_ns)
            return
        values = self._read_in_process()
        with self._lock:
            if self._is_running():
                self._add_sample(now_ns, values, None)

    def _on_record(self, t_ns: int, rss: int) -> None:
        with self._lock:
            if self._is_running() and t_ns >= self._t0_ns:
                self._add_sample(t_ns, {"rss": rss}, None)
