"""AMD GPUs (torch's HIP build): the same allocator counters as CUDA, device use from HIP."""

from __future__ import annotations

from pytest_hwbench.metrics.memory._allocator import AllocatorMemoryMetric

__all__ = ["ROCmMemoryMetric"]


class ROCmMemoryMetric(AllocatorMemoryMetric):
    """Series ``allocated``, ``reserved``, ``device_used`` and ``rss`` of an AMD GPU.

    ``device_used`` is total minus free from ``torch.cuda.mem_get_info``: every process on it.
    """

    platform = "rocm"
    torch_module = "cuda"  # a HIP build of torch answers through torch.cuda

    def _device_series(self) -> tuple[str, ...]:
        return ("device_used",)

    def _read_device(self) -> dict[str, int]:
        free, total = self._module().mem_get_info(self.device_index)
        return {"device_used": int(total) - int(free)}
