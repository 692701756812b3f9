"""Intel GPUs: torch.xpu allocator counters (torch >= 2.5) with exact peaks."""

from __future__ import annotations

from pytest_hwbench.metrics.memory._allocator import AllocatorMemoryMetric

__all__ = ["XPUMemoryMetric"]


class XPUMemoryMetric(AllocatorMemoryMetric):
    """Series ``allocated``, ``reserved``, ``rss`` and, where torch has it, ``device_used``.

    ``device_used`` is total minus free from ``torch.xpu.mem_get_info``.
    """

    platform = "xpu"
    torch_module = "xpu"

    def _device_series(self) -> tuple[str, ...]:
        return ("device_used",) if hasattr(self._module(), "mem_get_info") else ()

    def _read_device(self) -> dict[str, int]:
        module = self._module()
        if not hasattr(module, "mem_get_info"):
            return {}
        free, total = module.mem_get_info(self.device_index)
        return {"device_used": int(total) - int(free)}
