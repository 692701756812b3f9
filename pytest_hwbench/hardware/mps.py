"""Apple's Metal Performance Shaders (MPS): a Mac's GPU, one device, often sharing host RAM."""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware.base import (
    Capability,
    Detection,
    DeviceProperties,
    HardwareBackend,
)
from pytest_hwbench.hardware.peak_counters import before_peak_reset

if TYPE_CHECKING:
    import torch

__all__ = [
    "MPSBackend",
    "MPSStatus",
    "MacHost",
    "probe_mps_dtype",
    "query_mac_host",
    "query_mps",
]

#: The first macOS release whose Metal runs bfloat16 kernels.
BF16_MIN_MACOS = (14, 0)


@dataclass(frozen=True)
class MacHost:
    """What the operating system says about this machine, as far as MPS cares."""

    platform: str
    macos_version: str | None = None
    machine: str = ""
    chip: str | None = None


@dataclass(frozen=True)
class MPSStatus:
    """The host plus what torch says about MPS on it (the one answer detection needs)."""

    host: MacHost
    built: bool
    available: bool
    torch_version: str = ""


def _sysctl(key: str) -> str | None:
    """Read one sysctl value; None when the call fails or hangs (it must never block detection)."""
    try:
        done = subprocess.run(
            ["sysctl", "-n", key], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def _platform() -> str:
    """The OS as Python names it ("darwin", "linux", ...); a seam so tests need not patch `sys`."""
    return sys.platform


def query_mac_host() -> MacHost:
    """Read the OS name, macOS version, architecture and chip (the host query tests patch)."""
    os_name = _platform()
    if os_name != "darwin":
        return MacHost(platform=os_name, machine=platform.machine())
    return MacHost(
        platform=os_name,
        macos_version=platform.mac_ver()[0] or None,
        machine=platform.machine(),
        chip=_sysctl("machdep.cpu.brand_string"),
    )


def query_mps() -> MPSStatus:
    """Ask the host and torch whether MPS can run here (the platform query tests patch)."""
    host = query_mac_host()
    if host.platform != "darwin":
        # Off macOS torch has nothing to say about MPS; don't pay for importing it.
        return MPSStatus(host=host, built=False, available=False)
    import torch

    mps = getattr(torch.backends, "mps", None)
    built = bool(mps is not None and mps.is_built())
    available = bool(built and mps is not None and mps.is_available())
    return MPSStatus(host=host, built=built, available=available, torch_version=torch.__version__)


def probe_mps_dtype(dtype_name: str) -> bool:
    """Whether a tiny matmul in `dtype_name` runs on the MPS device (the op probe tests patch)."""
    try:
        import torch

        dtype = getattr(torch, dtype_name)
        a = torch.ones((2, 2), dtype=dtype, device="mps")
        return bool((a @ a).float().sum().item() == 8.0)
    except Exception:  # an unsupported dtype raises from deep inside the MPS graph compiler
        return False


def _version_tuple(version: str | None) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in (version or "").split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def _accelerator_peak_reset_works(torch: Any) -> bool:
    """Whether `torch.accelerator` keeps resettable peak statistics for the MPS allocator.

    torch ≤ 2.9 has no peak API for MPS at all; later versions route `torch.accelerator` memory
    calls to the current accelerator's allocator, which may or may not implement them.
    """
    accelerator = getattr(torch, "accelerator", None)
    needed = ("current_accelerator", "memory_stats", "reset_peak_memory_stats")
    if accelerator is None or not all(hasattr(accelerator, n) for n in needed):
        return False
    try:
        current = accelerator.current_accelerator()
        if current is None or current.type != "mps":
            return False
        # Before the allocator exists these calls are silent no-ops, which would prove nothing:
        # run a tiny op first. Resetting peaks here is harmless: metrics reset them per test.
        if not probe_mps_dtype("float32"):
            return False
        before_peak_reset("mps", 0)
        accelerator.reset_peak_memory_stats(0)
        return "allocated_bytes.all.peak" in accelerator.memory_stats(0)
    except Exception:  # "not supported" from an allocator without device statistics
        return False


class MPSBackend(HardwareBackend):
    """The Metal GPU of a Mac (Apple silicon, or AMD on Intel Macs); always one device."""

    name = "mps"
    torch_device_type = "mps"
    fallbacks = ("cpu",)
    description = "Apple Metal GPU (memory: torch.mps allocator and driver; peak sampled)"

    def detect(self) -> Detection:
        """Present when torch reports MPS available; otherwise say which requirement is missing."""
        status = query_mps()
        host = status.host
        if host.platform != "darwin":
            return Detection.absent(f"no MPS: not macOS (this is {host.platform})")
        if not status.built:
            version = f" (torch {status.torch_version})" if status.torch_version else ""
            return Detection.absent(f"torch was built without MPS{version}")
        if not status.available:
            here = f"macOS {host.macos_version or 'unknown'} on {host.machine or 'unknown'}"
            return Detection.absent(
                "MPS not available: macOS 12.3+ and an Apple-silicon or AMD GPU are required "
                f"(this is {here})"
            )
        return Detection(available=True, device_count=1)

    def synchronize(self, device: torch.device | int | None = None) -> None:
        """Wait for all queued Metal work (MPS has one device, so `device` only names it)."""
        import torch

        torch.mps.synchronize()

    def _query_properties(self, index: int) -> DeviceProperties:
        import torch

        host = query_mac_host()
        extra: dict[str, str] = {"machine": host.machine}
        if host.macos_version:
            extra["macos_version"] = host.macos_version
        if host.chip:
            extra["chip"] = host.chip

        name = host.chip or "Apple GPU"
        get_name = getattr(torch.backends.mps, "get_name", None)
        if get_name is not None:  # newer torch asks Metal for the GPU's own name
            name = str(get_name())
        cores: int | None = None
        get_core_count = getattr(torch.backends.mps, "get_core_count", None)
        if get_core_count is not None:
            cores = int(get_core_count())

        recommended = getattr(torch.mps, "recommended_max_memory", None)
        if recommended is not None:
            total = int(recommended())
            extra["total_memory_source"] = "torch.mps.recommended_max_memory"
        else:
            import psutil

            # Without Metal's working-set limit the best bound is the RAM the GPU shares.
            total = int(psutil.virtual_memory().total)
            extra["total_memory_source"] = "host RAM"

        vendor = "AMD" if name.upper().startswith("AMD") else "Apple"
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=name,
            vendor=vendor,
            total_memory_bytes=total,
            multiprocessor_count=cores,
            extra=extra,
        )

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        import torch

        host = query_mac_host()
        caps: set[Capability] = set()
        if probe_mps_dtype("float16"):
            caps.add(Capability.FP16)
        if probe_mps_dtype("float64"):  # Metal has no float64: torch refuses the tensor
            caps.add(Capability.FP64)
        if _version_tuple(host.macos_version) >= BF16_MIN_MACOS and probe_mps_dtype("bfloat16"):
            caps.add(Capability.BF16)
        if host.machine == "arm64" or self.properties(index).name.startswith("Apple"):
            # Apple-silicon GPUs share the host's RAM; AMD GPUs in Intel Macs have their own.
            caps.add(Capability.UNIFIED_MEMORY)
        if hasattr(torch.mps, "current_allocated_memory"):
            caps.add(Capability.MEMORY_STATS)
        if hasattr(torch.mps, "synchronize"):
            caps.add(Capability.SYNCHRONIZE)
        if _accelerator_peak_reset_works(torch):
            caps.add(Capability.PEAK_MEMORY_RESET)
        return frozenset(caps)
