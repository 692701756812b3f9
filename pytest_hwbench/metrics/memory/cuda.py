"""NVIDIA GPUs: torch allocator counters with exact peaks, plus the device's use from NVML."""

from __future__ import annotations

import os
from typing import Any

from pytest_hwbench.metrics.memory._allocator import AllocatorMemoryMetric

__all__ = ["CUDAMemoryMetric"]


class CUDAMemoryMetric(AllocatorMemoryMetric):
    """Series ``allocated``, ``reserved``, ``device_used``, ``process_used`` (NVML) and ``rss``.

    ``device_used`` is NVML v2's used memory: every process, CUDA contexts, cuBLAS workspaces,
    without the driver-reserved part. ``process_used`` is this process's share of it (NVML's
    running compute processes: its context, its allocator's segments, libraries' workspaces),
    what another process on the GPU does not change. The CUDA numbers are different things,
    reported apart. Without NVML (no nvidia-ml-py, no driver) both NVML series are missing,
    with a warning; where NVML does not list this process (a container's PID namespace)
    ``process_used`` is missing, with a warning saying so.
    """

    platform = "cuda"
    torch_module = "cuda"

    _nvml_handle: Any = None
    _nvml_checked = False
    #: Whether NVML lists this process on the device (checked once, at the first series query).
    _process_listed: bool | None = None
    _process_reason: str | None = None

    def _handle(self) -> Any:
        if not self._nvml_checked:
            from pytest_hwbench.hardware import _nvml

            # NVML ignores CUDA_VISIBLE_DEVICES: the wrapper maps torch's index by UUID.
            self._nvml_handle = _nvml.handle_for_torch_device(self.device_index)
            self._nvml_checked = True
        return self._nvml_handle

    def _lists_this_process(self) -> bool:
        if self._process_listed is None:
            from pytest_hwbench.hardware import _nvml

            # NVML lists a process once it has a context on the device: make sure of it first
            # (measuring initializes CUDA anyway, to reset its peaks).
            self._synchronize()
            used, why = _nvml.process_memory_used(self._handle(), os.getpid())
            self._process_listed = used is not None
            self._process_reason = why
        return self._process_listed

    def _device_series(self) -> tuple[str, ...]:
        if self._handle() is None:
            return ()
        return ("device_used", "process_used") if self._lists_this_process() else ("device_used",)

    def _read_device(self) -> dict[str, int]:
        from pytest_hwbench.hardware import _nvml

        handle = self._handle()
        if handle is None:
            return {}
        values = {}
        used = _nvml.device_memory_used(handle)
        if used is not None:
            values["device_used"] = used
        if self._process_listed:
            mine, _ = _nvml.process_memory_used(handle, os.getpid())
            if mine is not None:
                values["process_used"] = mine
        return values

    def _on_start(self) -> None:
        if self._handle() is None:
            from pytest_hwbench.hardware import _nvml

            ok, reason = _nvml.nvml_status()
            why = reason if not ok else "no NVML device matches this torch device"
            self.warnings.append(f"NVML unavailable ({why}): no device_used series")
        elif not self._lists_this_process():
            self.warnings.append(
                f"per-process GPU memory unavailable here: {self._process_reason}; "
                "no process_used series"
            )
