"""AMD GPUs' energy through AMD SMI (``amdsmi``, ROCm's management library; an optional extra).

``amdsmi_get_energy_count(handle)`` gives the board's energy accumulator since the driver loaded
(``energy_accumulator``, called ``power`` before amdsmi 6.2.1) in units of
``counter_resolution`` microjoules (15.259 µJ, 2^-16 J, on current boards); the driver refreshes
it at most once a millisecond. ``amdsmi_get_power_info(handle)`` gives the socket power in watts
(``current_socket_power``, else ``average_socket_power``; "N/A" where the board has none).
``amdsmi_init`` runs once per process, on first use; every failure becomes
`EnergyUnavailableError` with the reason.

AMD SMI lists every GPU of the machine, whatever ``HIP_VISIBLE_DEVICES`` hides from torch: a
torch device is matched to its handle by PCI address (torch's ``pci_domain_id``,
``pci_bus_id``, ``pci_device_id`` against ``amdsmi_get_gpu_device_bdf``), or, where torch does
not expose it, only when the machine has a single GPU.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from pytest_hwbench.hardware.energy import EnergyCounter, EnergyUnavailableError

__all__ = [
    "AMDSMI_UPDATE_PERIOD_S",
    "AmdSmiEnergyCounter",
    "open_energy_counter",
    "reset_for_tests",
]

#: The driver refreshes the accumulator at most once a millisecond (earlier reads get its cache).
AMDSMI_UPDATE_PERIOD_S = 0.001
_INSTALL_HINT = "pip install 'pytest-hwbench[rocm]' (AMD SMI's Python bindings, amdsmi)"

_lock = threading.Lock()
#: (the amdsmi module it was for, the module or None, why not) once initialized.
_state: tuple[Any, Any | None, str | None] | None = None


def _amdsmi() -> tuple[Any | None, str | None]:
    """The initialized ``amdsmi`` module, or None and why it is unusable here."""
    global _state
    found = sys.modules.get("amdsmi", False)
    with _lock:
        if _state is not None and _state[0] is found:
            return _state[1], _state[2]
        module: Any | None = None
        reason: str | None = None
        if found is None:  # blocked on purpose (tests write `sys.modules["amdsmi"] = None`)
            reason = f"AMD SMI is not installed: {_INSTALL_HINT}"
        else:
            try:
                import amdsmi

                amdsmi.amdsmi_init()
                module = amdsmi
            except ImportError:
                reason = f"AMD SMI is not installed: {_INSTALL_HINT}"
            except Exception as exc:  # no driver, no permission, a broken install
                reason = f"AMD SMI failed to initialize ({type(exc).__name__}: {exc})"
        _state = (sys.modules.get("amdsmi", found), module, reason)
        return module, reason


def reset_for_tests() -> None:
    """Forget the initialization, so the next call initializes again (tests only)."""
    global _state
    with _lock:
        _state = None


def _torch_pci_address(index: int) -> tuple[int, int, int] | None:
    """(domain, bus, device) of torch device `index`, where torch exposes them."""
    import torch

    props = torch.cuda.get_device_properties(index)
    parts = [
        getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id")
    ]
    if any(not isinstance(part, int) for part in parts):
        return None
    domain, bus, device = parts
    return domain, bus, device  # type: ignore[return-value]


def _parse_bdf(bdf: str) -> tuple[int, int, int] | None:
    """(domain, bus, device) of a PCI address "0000:c1:00.0"."""
    try:
        domain, bus, rest = str(bdf).strip().split(":")
        return int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
    except ValueError:
        return None


def handle_for_torch_device(module: Any, index: int) -> Any:
    """The AMD SMI handle of torch device `index`; `EnergyUnavailableError` when unknown."""
    try:
        handles = list(module.amdsmi_get_processor_handles())
    except Exception as exc:
        raise EnergyUnavailableError(
            f"AMD SMI lists no GPUs ({type(exc).__name__}: {exc})"
        ) from None
    wanted = _torch_pci_address(index)
    if wanted is None:
        if len(handles) == 1:
            return handles[0]
        raise EnergyUnavailableError(
            f"cannot tell which of AMD SMI's {len(handles)} GPUs is torch's device {index}: this "
            "torch exposes no PCI address (pci_bus_id) to match them by"
        )
    for handle in handles:
        try:
            if _parse_bdf(module.amdsmi_get_gpu_device_bdf(handle)) == wanted:
                return handle
        except Exception:  # a device AMD SMI cannot describe is not the one
            continue
    domain, bus, device = wanted
    raise EnergyUnavailableError(
        f"AMD SMI has no GPU at torch device {index}'s PCI address "
        f"{domain:04x}:{bus:02x}:{device:02x}"
    )


def _accumulated_uj(module: Any, handle: Any) -> float:
    """The board's accumulated energy in µJ (both key names amdsmi has used)."""
    counts = module.amdsmi_get_energy_count(handle)
    raw = counts.get("energy_accumulator", counts.get("power"))
    return float(raw) * float(counts["counter_resolution"])


class AmdSmiEnergyCounter(EnergyCounter):
    """An AMD GPU's energy accumulator (AMD SMI), read as joules since it was opened."""

    update_period_s = AMDSMI_UPDATE_PERIOD_S

    def __init__(self, module: Any, handle: Any, domain: str, covers: str) -> None:
        self.domain = domain
        self.covers = covers
        self._module, self._handle = module, handle
        self._origin_uj = _accumulated_uj(module, handle)  # since the driver loaded

    def read_joules(self) -> float:
        """Joules the board used since this counter was opened."""
        return (_accumulated_uj(self._module, self._handle) - self._origin_uj) / 1e6

    def read_watts(self) -> float | None:
        """The socket's power draw now (AMD SMI), or None where the board reports none."""
        try:
            info = self._module.amdsmi_get_power_info(self._handle)
        except Exception:
            return None
        for key in ("current_socket_power", "average_socket_power"):
            value = info.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None


def open_energy_counter(index: int, domain: str, covers: str) -> AmdSmiEnergyCounter:
    """Torch device `index`'s energy accumulator, read once now; the error says why not."""
    module, reason = _amdsmi()
    if module is None:
        raise EnergyUnavailableError(f"an AMD GPU's energy is read through AMD SMI: {reason}")
    handle = handle_for_torch_device(module, index)
    try:
        return AmdSmiEnergyCounter(module, handle, domain, covers)
    except Exception as exc:  # not supported (a VM guest), or a call that failed
        raise EnergyUnavailableError(
            f"AMD SMI's energy counter could not be read ({type(exc).__name__}: {exc}); it is "
            "not supported in a virtual machine guest"
        ) from None
