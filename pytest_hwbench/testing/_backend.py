"""A configurable stand-in backend, and a way to make it the process-wide registry's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from pytest_hwbench.hardware import registry as registry_module
from pytest_hwbench.hardware.base import Capability, Detection, DeviceProperties, HardwareBackend
from pytest_hwbench.hardware.registry import HardwareRegistry

if TYPE_CHECKING:
    import pytest
    import torch

__all__ = ["FakeBackend", "fake_registry"]


class FakeBackend(HardwareBackend):
    """A platform whose presence, devices, properties and capabilities are whatever you say.

    `torch_device_type` must be a type torch knows ("cuda", "xpu", "meta", ...) for
    `initialize()` to build a `torch.device`; it defaults to `name`.
    """

    def __init__(
        self,
        name: str,
        *,
        available: bool = True,
        reason: str | None = None,
        device_count: int = 1,
        total_memory_bytes: int = 16 * 2**30,
        capabilities: Iterable[str | Capability] = (),
        vendor: str = "Fake",
        device_name: str | None = None,
        torch_device_type: str | None = None,
        fallbacks: Iterable[str] = ("cpu",),
        extra: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        # Per-instance identity: each fake is its own platform.
        self.name = name  # type: ignore[misc]
        self.torch_device_type = torch_device_type or name  # type: ignore[misc]
        self.fallbacks = tuple(fallbacks)  # type: ignore[misc]
        self.description = f"fake {name} backend for tests"  # type: ignore[misc]
        self._available = available
        self._reason = reason or f"fake {name} configured as absent"
        self._count = device_count
        self._total_memory = total_memory_bytes
        self._caps = Capability.parse_all(capabilities)
        self._vendor = vendor
        self._device_name = device_name or f"Fake {name.upper()} device"
        self._extra = dict(extra or {})
        #: Every `synchronize` call's argument, in order.
        self.synchronize_calls: list[torch.device | int | None] = []

    def detect(self) -> Detection:
        """Present with the configured device count, or absent with the configured reason."""
        if not self._available:
            return Detection.absent(self._reason)
        return Detection(available=True, device_count=self._count)

    def synchronize(self, device: torch.device | int | None = None) -> None:
        """Record the call (fakes have no queued work)."""
        self.synchronize_calls.append(device)

    def _query_properties(self, index: int) -> DeviceProperties:
        return DeviceProperties(
            backend=self.name,
            index=index,
            name=self._device_name,
            vendor=self._vendor,
            total_memory_bytes=self._total_memory,
            extra=self._extra,
        )

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        return self._caps


def fake_registry(
    monkeypatch: pytest.MonkeyPatch, *backends: HardwareBackend, builtins: bool = True
) -> HardwareRegistry:
    """Install a fresh process-wide registry (built-ins unless told not to, then `backends`).

    The previous registry comes back when `monkeypatch` undoes its changes.
    """
    registry = HardwareRegistry()
    if builtins:
        registry.register_builtins()
    for backend in backends:
        registry.register(backend, override=True)
    monkeypatch.setattr(registry_module.DEFAULT, "value", registry)
    return registry
