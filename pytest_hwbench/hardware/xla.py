"""TPUs (and any PJRT device) through torch_xla: N lazily executed devices, sampled peaks.

Facts this module relies on (torch_xla's own sources, github.com/pytorch/xla):

- ``import torch_xla`` picks a default ``PJRT_DEVICE`` (TPU when libtpu and a TPU chip on the
  PCI bus are found) without opening the runtime; ``torch_xla.runtime.device_type()`` only reads
  that variable. Counting devices through the runtime (``addressable_device_count``) creates the
  PJRT client, and on a TPU that opens the chips for this process alone: another process (an
  xdist worker, a second pytest) then fails to open them. So detection counts TPU chips on the
  PCI bus instead, as torch_xla does before spawning, unless the runtime is already up.
- ``xm.get_memory_info(device)``: ``{"bytes_used", "bytes_limit", "peak_bytes_used"}`` from
  torch_xla 2.6 (``bytes_*`` since 2.4, ``peak_bytes_used`` added in 2.6), ``{"kb_free",
  "kb_total"}`` (KiB) up to 2.0's XRT runtime; PJRT raised "not implemented" from 2.1 to 2.3,
  and its CPU client still does. No API resets ``peak_bytes_used`` (pytorch/xla#8900).
- ``torch_xla.sync()`` (2.4+; ``xm.mark_step()`` before) cuts the pending lazy graph and
  launches it; ``xm.wait_device_ops()`` waits for launched executions on every local device.
"""

from __future__ import annotations

import glob
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_hwbench.hardware.base import (
    Capability,
    Detection,
    DeviceProperties,
    HardwareBackend,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "TPU_PCI_DEVICE_IDS",
    "XLABackend",
    "XLAStatus",
    "import_torch_xla",
    "memory_info_bytes",
    "probe_xla_dtype",
    "query_tpu_chips",
    "query_xla",
]

INSTALL_HINT = (
    "torch_xla is not installed (pip install torch_xla[tpu]): TPUs and other PJRT devices are "
    "reached through it"
)
#: Google's PCI vendor id, and the device ids of its TPU chips (TPU v2/v3, v4, v5e, v6e, 7x,
#: and two test parts), as torch_xla lists them in `torch_xla/_internal/tpu.py`.
GOOGLE_PCI_VENDOR = "0x1ae0"
TPU_PCI_DEVICE_IDS = frozenset(
    {"0x0027", "0x005e", "0x0063", "0x006f", "0x0076", "0x0056", "0x0062"}
)
#: TPU v2 and v3 chips hold two TensorCores, each its own XLA device.
_TWO_CORE_CHIPS = frozenset({"0x0027"})
#: Who makes the devices of each PJRT device type.
_VENDORS = {"TPU": "Google", "CUDA": "NVIDIA", "GPU": "NVIDIA", "NEURON": "AWS", "ROCM": "AMD"}


def import_torch_xla(module: str = "") -> Any:
    """``torch_xla`` or one of its submodules ("core.xla_model", "runtime"), imported now."""
    return importlib.import_module(f"torch_xla.{module}" if module else "torch_xla")


@dataclass(frozen=True)
class XLAStatus:
    """What torch_xla says here: installed or not, its PJRT device type and device count."""

    installed: bool
    version: str = ""
    #: Why torch_xla or its runtime could not be used (an exception's text), or None.
    error: str | None = None
    #: The PJRT device type ("TPU", "CPU", "CUDA", "NEURON"), or None when none is selected.
    device_type: str | None = None
    device_count: int = 0
    #: Where the count came from: "pci" (TPU chips, runtime left closed) or "runtime".
    count_source: str = ""


def query_tpu_chips() -> list[str]:
    """The PCI device ids of the TPU chips attached here, read from sysfs (never opens them)."""
    chips: list[str] = []
    for vendor_file in sorted(glob.glob("/sys/bus/pci/devices/*/vendor")):
        try:
            vendor = Path(vendor_file).read_text().strip()
            if vendor != GOOGLE_PCI_VENDOR:
                continue
            device = (Path(vendor_file).parent / "device").read_text().strip()
        except OSError:
            continue
        if device in TPU_PCI_DEVICE_IDS:
            chips.append(device)
    return chips


def _visible_tpu_chips() -> list[str]:
    """The attached TPU chips that ``TPU_VISIBLE_CHIPS`` (chip indices) leaves to this process."""
    chips = query_tpu_chips()
    visible = os.environ.get("TPU_VISIBLE_CHIPS")
    if visible is None:
        return chips
    indices = [int(p) for p in (e.strip() for e in visible.split(",")) if p.isdigit()]
    return [chips[i] for i in indices if i < len(chips)]


def _runtime_module() -> Any:
    """``torch_xla.runtime`` (2.1+), or None on older torch_xla."""
    try:
        return import_torch_xla("runtime")
    except ImportError:
        return None


def _device_type(xr: Any) -> str | None:
    if xr is not None and hasattr(xr, "device_type"):
        kind = xr.device_type()
    else:  # torch_xla 2.0: the variable is all there is
        kind = os.environ.get("PJRT_DEVICE") or None
    return str(kind).split("_")[0].upper() if kind else None


def _runtime_initialized(torch_xla: Any) -> bool:
    is_initialized = getattr(torch_xla._XLAC, "_xla_runtime_is_initialized", None)
    return bool(is_initialized()) if is_initialized is not None else False


def _runtime_device_count(xr: Any) -> int:
    """Ask the runtime (creates the PJRT client: on a TPU, opens its chips for this process)."""
    if xr is not None and hasattr(xr, "addressable_device_count"):
        return int(xr.addressable_device_count())
    xm = import_torch_xla("core.xla_model")
    return len(xm.get_xla_supported_devices() or [])


def query_xla() -> XLAStatus:
    """Ask torch_xla whether it is here and how many devices it has (tests fake torch_xla)."""
    try:
        torch_xla = import_torch_xla()
    except ModuleNotFoundError as exc:
        if exc.name == "torch_xla":
            return XLAStatus(installed=False)
        return XLAStatus(installed=True, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # libtpu or torch mismatches fail inside torch_xla's __init__
        return XLAStatus(installed=True, error=f"{type(exc).__name__}: {exc}")
    version = str(getattr(torch_xla, "__version__", ""))
    try:
        xr = _runtime_module()
        device_type = _device_type(xr)
        if device_type is None:
            return XLAStatus(installed=True, version=version)
        if device_type == "TPU" and not _runtime_initialized(torch_xla):
            chips = _visible_tpu_chips()
            if chips:
                count = sum(2 if chip in _TWO_CORE_CHIPS else 1 for chip in chips)
                return XLAStatus(True, version, None, device_type, count, "pci")
            # None found on the bus (no sysfs in this container, or an unknown chip): only the
            # runtime can tell, at the cost of opening the TPU.
        count = _runtime_device_count(xr)
    except Exception as exc:  # a busy TPU, a PJRT plugin that fails to load
        return XLAStatus(installed=True, version=version, error=f"{type(exc).__name__}: {exc}")
    return XLAStatus(True, version, None, device_type, count, "runtime")


def memory_info_bytes(info: Any) -> tuple[int, int, int | None]:
    """(used, limit, lifetime peak or None) in bytes from either form of `xm.get_memory_info`."""
    if "bytes_used" in info:
        peak = info.get("peak_bytes_used")
        return (
            int(info["bytes_used"]),
            int(info["bytes_limit"]),
            None if peak is None else int(peak),
        )
    total = int(info["kb_total"]) * 1024
    return total - int(info["kb_free"]) * 1024, total, None


def probe_xla_dtype(index: int, dtype_name: str) -> bool:
    """Whether a tiny matmul in `dtype_name` compiles and runs on ``xla:index`` (tests patch)."""
    try:
        import torch

        dtype = getattr(torch, dtype_name)
        a = torch.ones((2, 2), dtype=dtype, device=torch.device("xla", index))
        # .cpu() executes this tensor's graph alone: the user's pending graph stays pending.
        return bool((a @ a).cpu().float().sum().item() == 8.0)
    except Exception:  # XLA refuses a type its device lacks when it compiles the graph
        return False


class XLABackend(HardwareBackend):
    """TPUs, or whatever PJRT device torch_xla drives (``PJRT_DEVICE``), as "xla" devices.

    Detection never opens a TPU: it counts the chips on the PCI bus (honouring
    ``TPU_VISIBLE_CHIPS``) unless this process already started the runtime. The runtime opens
    the TPU at the first property, capability or device use. Other PJRT device types (CPU, CUDA,
    NEURON) are counted by the runtime itself, which creates their client.
    """

    name = "xla"
    torch_device_type = "xla"
    fallbacks = ("cpu",)
    description = (
        "TPU / PJRT device via torch_xla (memory: PJRT allocator; peak exact when it rises "
        "in the window, else sampled)"
    )
    # torch.distributed's backend for XLA devices is named "xla"
    # (torch_xla.distributed.xla_backend), but a rank needs that module imported and its PJRT
    # topology (TPU_VISIBLE_CHIPS, TPU_PROCESS_BOUNDS, ...) set before the runtime starts, which
    # the plugin's rank runner does not do yet: distributed tests skip rather than hang.
    communication_backend = None
    # None, so --hw-gpus-per-worker does not split TPUs: libtpu's chip mask (TPU_VISIBLE_CHIPS)
    # alone is not enough, a one-chip process also needs TPU_CHIPS_PER_PROCESS_BOUNDS=1,1,1,
    # TPU_PROCESS_BOUNDS=1,1,1 and a TPU_PROCESS_PORT of its own, which a plan does not set.
    # Detection honours a TPU_VISIBLE_CHIPS the user set.
    visibility_variables = ()
    torch_runtime_attribute = None  # torch.version has no XLA entry: torch_xla is a plugin

    def detect(self) -> Detection:
        """Present when torch_xla imports and its PJRT device type has at least one device."""
        status = query_xla()
        if not status.installed:
            return Detection.absent(INSTALL_HINT)
        version = f"torch_xla {status.version}" if status.version else "torch_xla"
        if status.error is not None:
            return Detection.absent(f"{version} is unusable: {status.error}")
        if status.device_type is None:
            return Detection.absent(
                f"{version}: no PJRT device type selected (set PJRT_DEVICE=TPU, CPU, CUDA, ...)"
            )
        if status.device_count <= 0:
            where = " (no TPU chip on the PCI bus)" if status.device_type == "TPU" else ""
            return Detection.absent(
                f"{version}: PJRT_DEVICE={status.device_type} has no device{where}"
            )
        return Detection(available=True, device_count=status.device_count)

    def count_devices_unopened(self) -> int | None:
        """The TPU chips ``TPU_VISIBLE_CHIPS`` would split, read from the PCI bus, or None."""
        selected = os.environ.get("PJRT_DEVICE")
        if selected and not selected.upper().startswith("TPU"):
            return None
        return len(_visible_tpu_chips()) or None

    def _make_device(self, index: int) -> torch.device:
        """``torch_xla.device(index)`` (2.3+; ``xm.xla_device`` before): also the default device."""
        device = getattr(import_torch_xla(), "device", None)
        if device is None:
            return import_torch_xla("core.xla_model").xla_device(index)  # type: ignore[no-any-return]
        return device(index)  # type: ignore[no-any-return]

    def synchronize(self, device: torch.device | int | None = None) -> None:
        """The XLA step barrier: launch the pending graph, then wait for every local device.

        ``torch_xla.sync()`` (``xm.mark_step()`` before 2.4) cuts the default device's lazy
        graph and launches it; ``xm.wait_device_ops()`` waits until every launched execution
        finished, so timings include the device's work. `device` is not needed: both act on
        the whole process.
        """
        xm = import_torch_xla("core.xla_model")
        sync = getattr(import_torch_xla(), "sync", None)
        if sync is not None:
            sync()
        else:
            xm.mark_step()
        xm.wait_device_ops()

    def _query_properties(self, index: int) -> DeviceProperties:
        import torch

        torch_xla = import_torch_xla()
        xm = import_torch_xla("core.xla_model")
        xr = _runtime_module()
        device = f"xla:{index}"
        real = str(xm.xla_real_devices([device])[0])  # "TPU:0"
        hardware = real.split(":")[0]
        extra: dict[str, str] = {"hardware": hardware, "real_device": real}
        device_type = _device_type(xr)
        if device_type:
            extra["pjrt_device"] = device_type
        kind = None
        if hasattr(xm, "xla_device_kind"):  # torch_xla 2.7+: "TPU v5 lite"
            kind = str(xm.xla_device_kind(device))
            extra["device_kind"] = kind
        if xr is not None and hasattr(xr, "runtime_device_attributes"):
            for key, value in sorted(xr.runtime_device_attributes(real).items()):
                extra[f"attribute.{key}"] = str(value)
        try:
            _, total, _ = memory_info_bytes(xm.get_memory_info(torch.device("xla", index)))
            extra["total_memory_source"] = "xm.get_memory_info"
        except Exception as exc:  # PJRT's CPU client, and torch_xla 2.1-2.3, have none
            total = 0
            extra["total_memory_source"] = f"unavailable: {type(exc).__name__}: {exc}"
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=kind or hardware,
            vendor=_VENDORS.get(hardware, "unknown"),
            total_memory_bytes=total,
            runtime_version=str(getattr(torch_xla, "__version__", "")) or None,
            extra=extra,
        )

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        import torch

        xm = import_torch_xla("core.xla_model")
        hardware = self.properties(index).extra["hardware"]
        caps: set[Capability] = {Capability.SYNCHRONIZE}
        # TPUs compute in bfloat16 natively; elsewhere the device decides.
        if hardware == "TPU" or probe_xla_dtype(index, "bfloat16"):
            caps.add(Capability.BF16)
        if probe_xla_dtype(index, "float16"):
            caps.add(Capability.FP16)
        if probe_xla_dtype(index, "float64"):
            caps.add(Capability.FP64)
        if hardware == "CPU":
            caps.add(Capability.UNIFIED_MEMORY)  # XLA's CPU device is host memory
        try:
            xm.get_memory_info(torch.device("xla", index))
            caps.add(Capability.DEVICE_MEMORY_INFO)
        except Exception:
            pass
        # No PEAK_MEMORY_RESET: torch_xla has no API that resets peak_bytes_used.
        return frozenset(caps)
