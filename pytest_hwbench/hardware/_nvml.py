"""Process-wide access to NVIDIA's management library (NVML) through nvidia-ml-py's `pynvml`.

NVML is optional: when `pynvml` is missing or `nvmlInit` fails (no driver), every function here
answers None and `nvml_status()` says why. `nvmlInit` runs once per process, on first use.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

from pytest_hwbench.hardware.energy import EnergyCounter, EnergyUnavailableError

__all__ = [
    "MigInstance",
    "NVMLMemoryInfo",
    "device_count",
    "device_memory_info",
    "device_memory_used",
    "device_name",
    "device_power_mw",
    "device_uuid",
    "driver_version",
    "gpu_units",
    "handle_for_torch_device",
    "mig_instances",
    "nvml_status",
    "open_energy_counter",
    "parse_cuda_visible_devices",
    "reset_for_tests",
]

# pynvml's error codes, repeated so that we can read them without importing pynvml.
_NVML_ERROR_NO_PERMISSION = 4
_NVML_ERROR_DRIVER_NOT_LOADED = 9
_NVML_ERROR_LIBRARY_NOT_FOUND = 12
_NVML_ERROR_FUNCTION_NOT_FOUND = 13
_NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
_NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
_NVML_ERROR_NOT_SUPPORTED = 3

_UUID_PREFIXES = ("GPU-", "MIG-")


@dataclass(frozen=True)
class NVMLMemoryInfo:
    """One device's memory as NVML sees it, in bytes, whoever holds it (every process, the driver).

    `reserved_bytes` (memory the driver keeps for itself) is None when only NVML's v1 call worked;
    v1's `used_bytes` then includes it on drivers since R510.
    """

    total_bytes: int
    free_bytes: int
    used_bytes: int
    reserved_bytes: int | None
    version: int


@dataclass
class _State:
    """What happened when NVML was initialized against one `pynvml` module object."""

    module: Any
    ok: bool
    reason: str | None
    memory_v2: bool = True


class _ImportFailed:
    """Marks a `pynvml` that failed to import, so we don't search sys.path on every call."""


_IMPORT_FAILED = _ImportFailed()
_ABSENT = object()
_lock = threading.Lock()
_state: _State | None = None


def _lookup() -> tuple[Any, str | None]:
    """The `pynvml` module to use now, and why it is unusable (None when it imported)."""
    found = sys.modules.get("pynvml", _ABSENT)
    if found is None:  # blocked on purpose (tests write `sys.modules["pynvml"] = None`)
        return None, "nvidia-ml-py is not installed (pynvml cannot be imported)"
    if found is not _ABSENT:
        return found, None
    current = _state
    if current is not None and current.module is _IMPORT_FAILED:
        return _IMPORT_FAILED, current.reason
    try:
        import pynvml
    except ImportError as exc:
        return _IMPORT_FAILED, f"nvidia-ml-py is not installed ({exc})"
    except Exception as exc:  # a broken install must not break detection
        return _IMPORT_FAILED, f"pynvml failed to import: {type(exc).__name__}: {exc}"
    return pynvml, None


def _init_failure_reason(module: Any, exc: BaseException) -> str:
    code = getattr(exc, "value", None)
    if code == getattr(module, "NVML_ERROR_LIBRARY_NOT_FOUND", _NVML_ERROR_LIBRARY_NOT_FOUND):
        return "NVML library not found (libnvidia-ml.so.1 is missing: no NVIDIA driver installed)"
    if code == getattr(module, "NVML_ERROR_DRIVER_NOT_LOADED", _NVML_ERROR_DRIVER_NOT_LOADED):
        return "NVIDIA driver not found (NVML: the kernel driver is not loaded)"
    if code == getattr(module, "NVML_ERROR_NO_PERMISSION", _NVML_ERROR_NO_PERMISSION):
        return "no permission to use NVML"
    if code == getattr(
        module, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", _NVML_ERROR_LIB_RM_VERSION_MISMATCH
    ):
        return "NVML and the NVIDIA kernel driver have different versions (reload the driver)"
    return f"NVML failed to initialize: {type(exc).__name__}: {exc}"


def _ensure() -> _State:
    """Initialize NVML once for the current `pynvml` module; later calls reuse the outcome."""
    global _state
    module, why = _lookup()
    current = _state
    if current is not None and current.module is module:
        return current
    with _lock:
        if _state is not None and _state.module is module:
            return _state
        if why is not None:
            _state = _State(module, ok=False, reason=why)
            return _state
        try:
            module.nvmlInit()
        except Exception as exc:
            _state = _State(module, ok=False, reason=_init_failure_reason(module, exc))
        else:
            _state = _State(module, ok=True, reason=None)
        return _state


def _nvml() -> Any | None:
    """The initialized `pynvml` module, or None when NVML is unusable here."""
    state = _ensure()
    return state.module if state.ok else None


def _text(value: Any) -> str:
    # nvidia-ml-py before 11.515 returned bytes for strings.
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_status() -> tuple[bool, str | None]:
    """Whether NVML initialized in this process, and if not, a sentence saying why."""
    state = _ensure()
    return state.ok, state.reason


def reset_for_tests() -> None:
    """Forget whether NVML was initialized, so the next call initializes again (tests only)."""
    global _state
    with _lock:
        _state = None


def driver_version() -> str | None:
    """The NVIDIA driver version (e.g. "550.54.15"), or None without NVML."""
    nv = _nvml()
    if nv is None:
        return None
    try:
        return _text(nv.nvmlSystemGetDriverVersion())
    except Exception:  # NVMLError, or a driver too old for the call
        return None


def device_count() -> int | None:
    """How many GPUs NVML sees (all of them: it ignores CUDA_VISIBLE_DEVICES), or None."""
    nv = _nvml()
    if nv is None:
        return None
    try:
        return int(nv.nvmlDeviceGetCount())
    except Exception:  # NVMLError
        return None


def device_uuid(handle: Any) -> str | None:
    """The device's NVML UUID ("GPU-..." or "MIG-..."), or None when NVML can't say."""
    nv = _nvml()
    if nv is None or handle is None:
        return None
    try:
        return _text(nv.nvmlDeviceGetUUID(handle))
    except Exception:
        return None


def device_name(handle: Any) -> str | None:
    """The device's marketing name as NVML reports it, or None."""
    nv = _nvml()
    if nv is None or handle is None:
        return None
    try:
        return _text(nv.nvmlDeviceGetName(handle))
    except Exception:
        return None


def device_memory_info(handle: Any) -> NVMLMemoryInfo | None:
    """The whole device's memory (all processes), preferring NVML's v2 call; None without NVML."""
    state = _ensure()
    nv = state.module if state.ok else None
    if nv is None or handle is None:
        return None
    version_v2 = getattr(nv, "nvmlMemory_v2", None)
    if state.memory_v2 and version_v2 is not None:
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(handle, version=version_v2)
        except TypeError:  # an nvidia-ml-py without the `version` argument
            state.memory_v2 = False
        except Exception as exc:
            code = getattr(exc, "value", None)
            if code in (_NVML_ERROR_FUNCTION_NOT_FOUND, _NVML_ERROR_ARGUMENT_VERSION_MISMATCH):
                state.memory_v2 = False  # the driver predates v2: stop asking
            elif code != _NVML_ERROR_NOT_SUPPORTED:  # unsupported for this device only: try v1
                return None
        else:
            return NVMLMemoryInfo(
                total_bytes=int(mem.total),
                free_bytes=int(mem.free),
                used_bytes=int(mem.used),
                reserved_bytes=int(mem.reserved),
                version=2,
            )
    try:
        mem = nv.nvmlDeviceGetMemoryInfo(handle)
    except Exception:
        return None
    return NVMLMemoryInfo(
        total_bytes=int(mem.total),
        free_bytes=int(mem.free),
        used_bytes=int(mem.used),
        reserved_bytes=None,
        version=1,
    )


def process_memory_used(handle: Any, pid: int) -> tuple[int | None, str | None]:
    """Bytes process `pid` holds on the device, from NVML's list of its compute processes.

    Returns ``(bytes, None)``, or ``(None, why)``: no NVML, a driver that keeps the figure
    (Windows' WDDM), or `pid` not among the listed processes, which is what a container's own
    PID namespace gives (NVML lists the host's PIDs) and what a process without a context on
    the device gives (ask after CUDA is initialized).
    """
    state = _ensure()
    nv = state.module if state.ok else None
    if nv is None or handle is None:
        return None, "NVML is unavailable"
    try:
        processes = nv.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception as exc:
        return None, f"NVML's process list failed ({type(exc).__name__}: {exc})"
    for process in processes or ():
        if int(getattr(process, "pid", -1)) == pid:
            used = getattr(process, "usedGpuMemory", None)
            if used is None:
                return None, "NVML does not give this process's memory (the driver keeps it)"
            return int(used), None
    return None, (
        f"NVML lists no compute process with this PID ({pid}) on the device: in a container, "
        "its PID namespace hides it (NVML lists the host's PIDs)"
    )


def device_memory_used(handle: Any) -> int | None:
    """Bytes in use on the whole device (every process and its context), or None without NVML."""
    info = device_memory_info(handle)
    return None if info is None else info.used_bytes


# -- energy -------------------------------------------------------------------------------------

#: How often NVML's total-energy counter advances at the slowest: ~20-100 ms depending on the
#: board (NVML does not say which); a shorter window can only be estimated.
NVML_ENERGY_UPDATE_PERIOD_S = 0.1


class NVMLEnergyCounter(EnergyCounter):
    """A GPU's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ), from now."""

    update_period_s = NVML_ENERGY_UPDATE_PERIOD_S

    def __init__(self, module: Any, handle: Any, domain: str, covers: str, origin_mj: int) -> None:
        self.domain = domain
        self.covers = covers
        self._module, self._handle = module, handle
        self._origin_mj = origin_mj  # since the driver loaded: 64 bits of mJ never wrap

    def read_joules(self) -> float:
        """Joules the board used since this counter was opened (NVML is thread-safe)."""
        now_mj = int(self._module.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        return (now_mj - self._origin_mj) / 1000

    def read_watts(self) -> float | None:
        """The board's power draw (NVML's ``nvmlDeviceGetPowerUsage``), or None without one."""
        power_mw = device_power_mw(self._handle)
        return None if power_mw is None else power_mw / 1000


def open_energy_counter(handle: Any, domain: str, covers: str) -> NVMLEnergyCounter:
    """The GPU's total-energy counter, read once now; `EnergyUnavailableError` says why not."""
    nv = _nvml()
    if nv is None:
        _, reason = nvml_status()
        raise EnergyUnavailableError(f"the GPU's energy is read through NVML: {reason}")
    if handle is None:
        raise EnergyUnavailableError("NVML has no handle for this device")
    try:
        origin = int(nv.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception as exc:
        if getattr(exc, "value", None) == _NVML_ERROR_NOT_SUPPORTED:
            raise EnergyUnavailableError(
                "this device has no total-energy counter (NVML: not supported): it needs a "
                "Volta or later GPU, and a MIG instance has none (its GPU's counts every "
                "instance)"
            ) from None
        raise EnergyUnavailableError(
            f"NVML's energy counter could not be read ({type(exc).__name__}: {exc})"
        ) from None
    return NVMLEnergyCounter(nv, handle, domain, covers, origin)


def device_power_mw(handle: Any) -> int | None:
    """The board's power draw in mW (NVML's average over about a second), or None."""
    nv = _nvml()
    if nv is None or handle is None:
        return None
    try:
        return int(nv.nvmlDeviceGetPowerUsage(handle))
    except Exception:  # NVMLError: not supported (MIG, some boards)
        return None


# -- torch index → NVML handle ------------------------------------------------------------------


def parse_cuda_visible_devices(value: str | None) -> list[int] | list[str] | None:
    """Read CUDA_VISIBLE_DEVICES as the CUDA runtime does; None when it is unset (all devices).

    Integers give physical indices; "GPU-"/"MIG-" entries give (possibly shortened) UUIDs. The
    first invalid entry ends the list and a repeated entry empties it, like CUDA; so "" and "-1"
    give an empty list: no device visible.
    """
    if value is None:
        return None
    entries = [entry.strip() for entry in value.split(",")]
    if entries[0].startswith(_UUID_PREFIXES):
        uuids: list[str] = []
        for entry in entries:
            if not entry.startswith(_UUID_PREFIXES):
                break
            if entry in uuids:
                return []
            uuids.append(entry)
        return uuids
    indices: list[int] = []
    for entry in entries:
        digits = entry[1:] if entry[:1] == "+" else entry
        end = 0
        while end < len(digits) and digits[end].isdigit():
            end += 1
        if end == 0:  # no leading number ("", "-1", "abc"): CUDA stops reading here
            break
        number = int(digits[:end])
        if number in indices:
            return []
        indices.append(number)
    return indices


def _torch_uuid(index: int) -> str | None:
    """Device `index`'s UUID as torch reports it, without any "GPU-" prefix."""
    try:
        import torch

        raw = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except Exception:  # torch too old, CUDA unusable, index out of range
        return None
    if raw is None:
        return None
    text = str(raw).strip()
    for prefix in _UUID_PREFIXES:
        text = text.removeprefix(prefix)
    return text or None


def _all_handles(nv: Any) -> list[Any]:
    """Every NVML device handle: each GPU, then each of its MIG devices."""
    handles: list[Any] = []
    try:
        count = int(nv.nvmlDeviceGetCount())
    except Exception:
        return handles
    for gpu_index in range(count):
        try:
            gpu = nv.nvmlDeviceGetHandleByIndex(gpu_index)
        except Exception:
            continue
        handles.append(gpu)
        handles.extend(_mig_handles(nv, gpu))
    return handles


def _mig_handles(nv: Any, gpu: Any, slots: int | None = None) -> list[Any]:
    """The MIG devices of `gpu` (`slots`: its MIG slot count, where already asked)."""
    handles: list[Any] = []
    for slot in range(_mig_slots(nv, gpu) if slots is None else slots):
        try:
            handles.append(nv.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot))
        except Exception:  # empty slot: NVML answers NOT_FOUND
            continue
    return handles


@dataclass(frozen=True)
class MigInstance:
    """One MIG instance of a GPU in MIG mode, as NVML lists it: a device of its own for CUDA."""

    #: "MIG-<uuid>", what CUDA_VISIBLE_DEVICES takes to show a process this instance.
    uuid: str
    #: NVML's name: the GPU's and the profile, "NVIDIA H100 80GB HBM3 MIG 2g.20gb".
    name: str | None
    total_memory_bytes: int | None
    #: The GPU it is a slice of ("GPU-<uuid>"), and its place there.
    gpu_uuid: str | None
    gpu_instance_id: int | None
    compute_instance_id: int | None

    @property
    def profile(self) -> str | None:
        """The MIG profile ("2g.20gb"): the last word of NVML's name, where it has one."""
        if not self.name or " MIG " not in self.name:
            return None
        return self.name.rsplit(" MIG ", 1)[1].strip() or None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field, with the profile."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "profile": self.profile,
            "total_memory_bytes": self.total_memory_bytes,
            "gpu_uuid": self.gpu_uuid,
            "gpu_instance_id": self.gpu_instance_id,
            "compute_instance_id": self.compute_instance_id,
        }


def _optional_int(call: Any, *args: Any) -> int | None:
    try:
        return int(call(*args))
    except Exception:  # an NVMLError, or an nvidia-ml-py without the call
        return None


def gpu_units() -> list[tuple[str, list[MigInstance]]] | None:
    """Each GPU NVML sees that CUDA can use, with its MIG instances (empty: MIG off).

    In NVML's order. A GPU is named "GPU-<uuid>" (its index where NVML gives no UUID); one in
    MIG mode without instances yet is left out (CUDA can run nothing on it). None without
    NVML. Initializes no CUDA context.
    """
    nv = _nvml()
    if nv is None:
        return None
    try:
        count = int(nv.nvmlDeviceGetCount())
    except Exception:
        return None
    units: list[tuple[str, list[MigInstance]]] = []
    for gpu_index in range(count):
        try:
            gpu = nv.nvmlDeviceGetHandleByIndex(gpu_index)
        except Exception:
            continue
        gpu_uuid = device_uuid(gpu)
        slots = _mig_slots(nv, gpu)
        instances = []
        for handle in _mig_handles(nv, gpu, slots):
            uuid = device_uuid(handle)
            if uuid is None:
                continue
            memory = device_memory_info(handle)
            instances.append(
                MigInstance(
                    uuid=uuid,
                    name=device_name(handle),
                    total_memory_bytes=memory.total_bytes if memory is not None else None,
                    gpu_uuid=gpu_uuid,
                    gpu_instance_id=_optional_int(nv.nvmlDeviceGetGpuInstanceId, handle),
                    compute_instance_id=_optional_int(nv.nvmlDeviceGetComputeInstanceId, handle),
                )
            )
        if instances or not slots:
            units.append((gpu_uuid or str(gpu_index), instances))
    return units


def _mig_slots(nv: Any, gpu: Any) -> int:
    """How many MIG devices the GPU may hold: 0 where MIG is off or unsupported."""
    try:
        return int(nv.nvmlDeviceGetMaxMigDeviceCount(gpu))
    except Exception:
        return 0


def mig_instances() -> list[MigInstance]:
    """Every MIG instance of every GPU in MIG mode, in NVML's order (empty without NVML)."""
    return [instance for _, instances in gpu_units() or () for instance in instances]


def _handle_by_uuid_prefix(nv: Any, prefix: str) -> Any | None:
    try:
        return nv.nvmlDeviceGetHandleByUUID(prefix)
    except Exception:
        pass
    # CUDA accepts a unique leading part of a UUID; NVML wants it whole, so search.
    matches = [h for h in _all_handles(nv) if (device_uuid(h) or "").startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


def _handle_for_legacy_mig(nv: Any, entry: str) -> Any | None:
    """Resolve the CUDA 11.0 form "MIG-GPU-<uuid>/<gpu instance>/<compute instance>"."""
    parts = entry.removeprefix("MIG-").split("/")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    parent = _handle_by_uuid_prefix(nv, parts[0])
    if parent is None:
        return None
    for handle in _mig_handles(nv, parent):
        try:
            gi = int(nv.nvmlDeviceGetGpuInstanceId(handle))
            ci = int(nv.nvmlDeviceGetComputeInstanceId(handle))
        except Exception:
            continue
        if (gi, ci) == (int(parts[1]), int(parts[2])):
            return handle
    return None


def _index_order_matches_nvml(nv: Any) -> bool:
    """Whether CUDA numbers GPUs in NVML's (PCI bus) order.

    CUDA's default order is fastest first, which differs from NVML's when the GPUs differ; with
    identical GPUs ties go by PCI bus, so the orders agree.
    """
    if os.environ.get("CUDA_DEVICE_ORDER", "FASTEST_FIRST").strip().upper() == "PCI_BUS_ID":
        return True
    names = {device_name(h) for h in _all_handles(nv) if not _is_mig(nv, h)}
    return len(names) <= 1


def _is_mig(nv: Any, handle: Any) -> bool:
    try:
        return bool(nv.nvmlDeviceIsMigDeviceHandle(handle))
    except Exception:
        return False


def _handle_from_visible_devices(nv: Any, index: int) -> Any | None:
    """Map torch index → NVML handle through CUDA_VISIBLE_DEVICES, which NVML ignores."""
    visible = parse_cuda_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    entry: int | str
    if visible is None:
        entry = index
    elif 0 <= index < len(visible):
        entry = visible[index]
    else:
        return None
    if isinstance(entry, int):
        if not _index_order_matches_nvml(nv):
            return None
        try:
            return nv.nvmlDeviceGetHandleByIndex(entry)
        except Exception:
            return None
    if entry.startswith("MIG-GPU-"):
        return _handle_for_legacy_mig(nv, entry)
    return _handle_by_uuid_prefix(nv, entry)


def handle_for_torch_device(index: int) -> Any | None:
    """The NVML handle of torch CUDA device `index`, or None when NVML is unusable or can't tell.

    Matches torch's UUID for the device against NVML's first; failing that, reads
    CUDA_VISIBLE_DEVICES (integer, UUID or MIG forms) to find the physical device.
    """
    nv = _nvml()
    if nv is None:
        return None
    bare = _torch_uuid(index)
    if bare is not None:
        for prefix in _UUID_PREFIXES:
            try:
                return nv.nvmlDeviceGetHandleByUUID(prefix + bare)
            except Exception:  # NOT_FOUND: try the other prefix, then the environment
                continue
    return _handle_from_visible_devices(nv, index)
