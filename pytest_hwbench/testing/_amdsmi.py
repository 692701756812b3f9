"""A fake AMD SMI (``amdsmi``) over a fake ROCm machine: PCI addresses, energy and power."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pytest_hwbench.testing._cuda import FakeCuda, FakeCudaDevice, _EnergyMeter

if TYPE_CHECKING:
    import pytest

__all__ = ["AmdSmiLibraryException", "FakeAmdSmi", "fake_amdsmi", "no_amdsmi"]

#: amdsmi's status codes the fake raises (``amdsmi_status_t``).
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_DRIVER_NOT_LOADED = 34
#: What boards report as the accumulator's unit, in µJ (2^-16 J).
COUNTER_RESOLUTION_UJ = 15.259
#: How often the driver refreshes the accumulator (a read within it gets the cached value).
UPDATE_PERIOD_S = 0.001
#: amdsmi's "no value" for a power field.
_NOT_AVAILABLE = "N/A"


class AmdSmiLibraryException(Exception):
    """amdsmi's `AmdSmiLibraryException`: a failed library call, with its status code."""

    def __init__(self, err_code: int) -> None:
        super().__init__(err_code)
        self.err_code = abs(err_code)

    def get_error_code(self) -> int:
        """The ``amdsmi_status_t`` code."""
        return self.err_code


class _Handle:
    """An ``amdsmi_processor_handle``: opaque to its users."""

    __slots__ = ("device",)

    def __init__(self, device: FakeCudaDevice) -> None:
        self.device = device


class FakeAmdSmi(types.ModuleType):
    """Stands in for the ``amdsmi`` module; install it in ``sys.modules["amdsmi"]``.

    It lists every GPU of `cuda`'s machine (like AMD SMI, whatever HIP_VISIBLE_DEVICES hides),
    at its PCI address. Each board's energy accumulator integrates its power
    (`FakeCudaDevice.power_mw`, changed with `set_power_w`) in units of
    `COUNTER_RESOLUTION_UJ`, refreshed every `UPDATE_PERIOD_S`, from a value the driver
    accumulated long before. `init_error` makes ``amdsmi_init`` fail (no driver);
    `energy_supported=False` makes the energy call fail as in a virtual machine guest;
    `average_power_only=True` reports "N/A" for the current socket power, as older boards do.
    """

    AmdSmiLibraryException = AmdSmiLibraryException

    def __init__(
        self,
        cuda: FakeCuda,
        *,
        init_error: int | None = None,
        energy_supported: bool = True,
        average_power_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("amdsmi")
        self.cuda = cuda
        self.init_error = init_error
        self.energy_supported = energy_supported
        self.average_power_only = average_power_only
        self.clock = clock
        self.initialized = False
        self._handles = [_Handle(gpu) for gpu in cuda.gpus]
        self._meters: dict[int, _EnergyMeter] = {}

    def _require_init(self) -> None:
        if not self.initialized:
            raise AmdSmiLibraryException(32)  # AMDSMI_STATUS_NOT_INIT

    def _meter(self, device: FakeCudaDevice) -> _EnergyMeter:
        meter = self._meters.get(id(device))
        if meter is None:
            # The accumulator counts from the driver's load, long before this process.
            base_mj = 3_600_000 + 1_000 * self.cuda.gpus.index(device)
            meter = self._meters[id(device)] = _EnergyMeter(
                device.power_mw, UPDATE_PERIOD_S, self.clock(), base_mj
            )
        return meter

    # -- what tests drive -------------------------------------------------------------------------

    def set_power_w(self, device: FakeCudaDevice, watts: float) -> None:
        """Make `device` draw `watts` from now on (a load starting or ending)."""
        self._meter(device).set_power(self.clock(), round(watts * 1000))

    # -- the module's functions -------------------------------------------------------------------

    def amdsmi_init(self, flag: object = None) -> None:
        """Initialize the library (fails with `init_error`)."""
        if self.init_error is not None:
            raise AmdSmiLibraryException(self.init_error)
        self.initialized = True

    def amdsmi_shut_down(self) -> None:
        """Release the library."""
        self.initialized = False

    def amdsmi_get_processor_handles(self) -> list[_Handle]:
        """Every GPU of the machine, in PCI order."""
        self._require_init()
        return list(self._handles)

    def amdsmi_get_gpu_device_bdf(self, handle: _Handle) -> str:
        """The GPU's PCI address, "0000:c1:00.0"."""
        self._require_init()
        return f"0000:{handle.device.pci_bus_id:02x}:00.0"

    def amdsmi_get_energy_count(self, handle: _Handle) -> dict[str, Any]:
        """The accumulator since the driver loaded, its unit (µJ) and a timestamp (ns)."""
        self._require_init()
        if not self.energy_supported:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)
        now = self.clock()
        energy_uj = self._meter(handle.device).counter_mj(now) * 1000
        return {
            "energy_accumulator": int(energy_uj / COUNTER_RESOLUTION_UJ),
            "counter_resolution": COUNTER_RESOLUTION_UJ,
            "timestamp": int(now * 1e9),
        }

    def amdsmi_get_power_info(self, handle: _Handle) -> dict[str, Any]:
        """The socket's power in W ("N/A" where the board has no such reading)."""
        self._require_init()
        watts = self._meter(handle.device).power_mw() // 1000
        current: int | str = _NOT_AVAILABLE if self.average_power_only else watts
        return {
            "socket_power": current,
            "current_socket_power": current,
            "average_socket_power": watts,
            "gfx_voltage": _NOT_AVAILABLE,
            "soc_voltage": _NOT_AVAILABLE,
            "mem_voltage": _NOT_AVAILABLE,
            "power_limit": 300,
        }


def _forget_amdsmi_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hwbench.hardware import _amdsmi

    monkeypatch.setattr(_amdsmi, "_state", None)


def fake_amdsmi(monkeypatch: pytest.MonkeyPatch, cuda: FakeCuda, **options: Any) -> FakeAmdSmi:
    """Install a `FakeAmdSmi` for `cuda`'s machine as ``amdsmi`` until undone."""
    module = FakeAmdSmi(cuda, **options)
    monkeypatch.setitem(sys.modules, "amdsmi", module)
    _forget_amdsmi_state(monkeypatch)
    return module


def no_amdsmi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import amdsmi`` fail, as where the rocm extra is not installed, until undone."""
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    _forget_amdsmi_state(monkeypatch)
