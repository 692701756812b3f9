"""The host CPU: always present, one device, the fallback of every other platform."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_hwbench.hardware.base import Capability, Detection, DeviceProperties, HardwareBackend

if TYPE_CHECKING:
    import torch

    from pytest_hwbench.hardware.energy import EnergyCounter

__all__ = ["CLEAR_REFS_PATH", "CPUBackend", "CPUInfo", "query_cpu"]

#: Writing "5" here resets the kernel's resident-set high-water mark (VmHWM) of this process.
CLEAR_REFS_PATH = "/proc/self/clear_refs"


@dataclass(frozen=True)
class CPUInfo:
    """What the OS says about the host processor and memory."""

    model_name: str
    vendor: str
    architecture: str
    logical_cores: int
    physical_cores: int | None
    total_memory_bytes: int
    flags: frozenset[str] = field(default_factory=frozenset)


def _read_proc_cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor block says all we need
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _linux_physical_cores() -> int | None:
    """Distinct cores in sysfs topology (hyperthreads of one core list the same CPUs)."""
    base = "/sys/devices/system/cpu"
    cores: set[str] = set()
    try:
        cpus = [name for name in os.listdir(base) if name[3:].isdigit() and name[:3] == "cpu"]
        for name in cpus:
            for leaf in ("core_cpus_list", "thread_siblings_list"):
                try:
                    with open(f"{base}/{name}/topology/{leaf}", encoding="ascii") as fh:
                        cores.add(fh.read().strip())
                    break
                except OSError:
                    continue
    except OSError:
        return None
    return len(cores) or None


def query_cpu() -> CPUInfo:
    """Read the host CPU and memory from the OS (the one function tests patch).

    On Linux from /proc, /sys and sysconf (what psutil reads too, without importing it: the
    first profiled test pays for this); elsewhere through psutil.
    """
    cpuinfo = _read_proc_cpuinfo()
    model = cpuinfo.get("model name") or cpuinfo.get("Model") or platform.processor()
    vendor = cpuinfo.get("vendor_id") or cpuinfo.get("CPU implementer") or ""
    if sys.platform == "darwin" and not model:
        model = platform.processor()
        vendor = "Apple" if platform.machine() == "arm64" else vendor
    flags = frozenset((cpuinfo.get("flags") or cpuinfo.get("Features") or "").split())
    if sys.platform.startswith("linux"):
        logical: int | None = os.cpu_count()
        physical = _linux_physical_cores()
        total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # MemTotal
    else:
        import psutil

        logical = psutil.cpu_count(logical=True)
        physical = psutil.cpu_count(logical=False)
        total_memory = int(psutil.virtual_memory().total)
    return CPUInfo(
        model_name=model or platform.machine() or "unknown CPU",
        vendor=vendor or "unknown",
        architecture=platform.machine(),
        logical_cores=logical or os.cpu_count() or 1,
        physical_cores=physical,
        total_memory_bytes=total_memory,
        flags=flags,
    )


def _probe_dtype_matmul(dtype_name: str) -> bool:
    """Whether torch can run a tiny matmul in `dtype_name` on the CPU."""
    try:
        import torch

        dtype = getattr(torch, dtype_name)
        a = torch.ones((2, 2), dtype=dtype)
        return bool((a @ a).float().sum().item() == 8.0)
    except Exception:
        return False


class CPUBackend(HardwareBackend):
    """The host processor; its memory is the process's resident set."""

    name = "cpu"
    torch_device_type = "cpu"
    fallbacks = ()
    description = "host CPU (memory: process RSS; exact peak from Linux VmHWM)"
    is_host = True
    communication_backend = "gloo"

    def detect(self) -> Detection:
        """The CPU is always there, as one device."""
        return Detection(available=True, device_count=1)

    def _make_device(self, index: int) -> torch.device:
        import torch

        return torch.device("cpu")  # torch has one CPU device; "cpu:0" would not compare equal

    def _query_properties(self, index: int) -> DeviceProperties:
        info = query_cpu()
        extra = {
            "architecture": info.architecture,
            "logical_cores": str(info.logical_cores),
            "os": f"{platform.system()} {platform.release()}",
        }
        if info.physical_cores is not None:
            extra["physical_cores"] = str(info.physical_cores)
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=info.model_name,
            vendor=info.vendor,
            total_memory_bytes=info.total_memory_bytes,
            multiprocessor_count=info.physical_cores,
            extra=extra,
        )

    def energy_counters(self, index: int = 0) -> list[EnergyCounter]:
        """Every CPU package's RAPL counter and its DRAM's (Linux powercap), opened now.

        The host is one device: all its packages are counted. Raises `EnergyUnavailableError`
        where RAPL is missing or root-only, saying how to grant read access.
        """
        from pytest_hwbench.hardware import _rapl

        self.require_available(index)
        return list(_rapl.open_rapl_counters(_rapl.POWERCAP_ROOT))  # read now: tests move it

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        caps = {Capability.DEVICE_MEMORY_INFO, Capability.FP64}
        if _probe_dtype_matmul("float16"):
            caps.add(Capability.FP16)
        if _probe_dtype_matmul("bfloat16"):
            caps.add(Capability.BF16)
        if clear_refs_writable():
            caps.add(Capability.PEAK_MEMORY_RESET)
        return frozenset(caps)


def clear_refs_writable() -> bool:
    """Whether this process may reset its RSS high-water mark (Linux, not refused by policy)."""
    return sys.platform.startswith("linux") and os.access(CLEAR_REFS_PATH, os.W_OK)
