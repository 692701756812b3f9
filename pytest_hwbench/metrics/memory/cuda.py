"""NVIDIA GPUs: torch allocator counters with exact peaks, plus the device's use from NVML."""

from __future__ import annotations

from typing import Any

from pytest_hwbench.metrics.memory._allocator import AllocatorMemoryMetric

__all__ = ["CUDAMemoryMetric"]


class CUDAMemoryMetric(AllocatorMemoryMetric):
    """Series ``allocated``, ``reserved``, ``device_used`` (from NVML) and ``rss``.

    ``device_used`` is NVML v2's used memory: every process, CUDA contexts, cuBLAS workspaces,
    without the driver-reserved part. The three CUDA numbers are different things, reported
    apart. Without NVML (no nvidia-ml-py, no driver) ``device_used`` is missing, with a warning.
    """

    platform = "cuda"
    torch_module = "cuda"

    _nvml_handle: Any = None
    _nvml_checked = False

    def _handle(self) -> Any:
        if not self._nvml_checked:
            from pytest_hwbench.hardware import _nvml

            # NVML ignores CUDA_VISIBLE_DEVICES: the wrapper maps torch's index by UUID.
            self._nvml_handle = _nvml.handle_for_torch_device(self.device_index)
            self._nvml_checked = True
        return self._nvml_handle

    def _device_series(self) -> tuple[str, ...]:
        return ("device_used",) if self._handle() is not None else ()

    def _read_device(self) -> dict[str, int]:
        from pytest_hwbench.hardware import _nvml

        handle = self._handle()
        if handle is None:
            return {}
        used = _nvml.device_memory_used(handle)
        return {} if used is None else {"device_used": used}

    def _on_start(self) -> None:
        if self._handle() is None:
            from pytest_hwbench.hardware import _nvml

            ok, reason = _nvml.nvml_status()
            why = reason if not ok else "no NVML device matches this torch device"
            self.warnings.append(f"NVML unavailable ({why}): no device_used series")
