"""What markers ask for, once parsed: a platform requirement, a memory or an energy limit.

Apart from the markers' table (`marks`), which pytest loads in every run for the help lines:
these load with the first marker parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pytest_hwbench.units import format_bytes

if TYPE_CHECKING:
    from pytest_hwbench.hardware.base import Capability, HardwareBackend

__all__ = ["DistributedSpec", "EnergyLimit", "HardwareRequirement", "MemoryLimit"]

#: Ranks on the host when ``world_size="auto"``.
HOST_AUTO_WORLD_SIZE = 2


@dataclass(frozen=True)
class HardwareRequirement:
    """What ``@pytest.mark.hardware(...)`` asks of a platform."""

    platforms: tuple[str, ...]
    requires: frozenset[Capability] = frozenset()
    min_memory_bytes: int | None = None
    min_count: int = 1
    #: The dtypes hw_dtype runs the test in (canonical names); empty: the run's default.
    dtypes: tuple[str, ...] = ()

    def unmet_reason(self, backend: HardwareBackend) -> str | None:
        """Why `backend` cannot run the test ("cuda: torch was built without CUDA"), or None."""
        name = backend.name
        if not backend.is_available():
            return f"{name}: {backend.unavailable_reason()}"
        count = backend.device_count()
        if count < self.min_count:
            return f"{name}: needs {self.min_count} devices, {count} visible"
        try:
            caps = backend.capabilities(0)
            total = backend.properties(0).total_memory_bytes
        except Exception as exc:
            return f"{name}: could not query the device ({type(exc).__name__}: {exc})"
        missing = sorted(c.value for c in self.requires - caps)
        if missing:
            return f"{name}: lacks {', '.join(missing)}"
        if self.min_memory_bytes is not None and total < self.min_memory_bytes:
            return (
                f"{name}: needs {format_bytes(self.min_memory_bytes)} of device memory, "
                f"has {format_bytes(total)}"
            )
        return None


@dataclass(frozen=True)
class DistributedSpec:
    """What ``@pytest.mark.distributed(...)`` asks: how many ranks, for how long at most."""

    #: None: "auto", one rank per visible device of the test's platform (2 on the host).
    world_size: int | None = 2
    #: None: ini hw_distributed_timeout.
    timeout_s: float | None = None

    def world_size_on(self, backend: HardwareBackend) -> int:
        """The number of ranks on `backend`'s platform."""
        if self.world_size is not None:
            return self.world_size
        if backend.is_host:
            return HOST_AUTO_WORLD_SIZE
        return max(1, backend.device_count()) if backend.is_available() else 1

    def unmet_reason(self, backend: HardwareBackend) -> str | None:
        """Why `backend`'s platform cannot hold the ranks (a device each off the host), or None."""
        if backend.communication_backend is None:
            return f"{backend.name}: torch.distributed has no backend for its devices"
        if backend.is_host or not backend.is_available():
            return None
        ranks, count = self.world_size_on(backend), backend.device_count()
        if count < ranks:
            return f"{backend.name}: needs {ranks} devices for {ranks} ranks, {count} visible"
        return None


@dataclass(frozen=True)
class MemoryLimit:
    """A byte limit on peak growth, for every platform or per platform."""

    default_bytes: int | None = None
    per_platform: Mapping[str, int] = field(default_factory=dict)
    source: str = ""

    def for_platform(self, platform: str) -> int | None:
        """The limit that applies on `platform`, or None."""
        return self.per_platform.get(platform, self.default_bytes)


@dataclass(frozen=True)
class EnergyLimit:
    """A limit in joules on a test's energy, for every platform or per platform."""

    default_joules: float | None = None
    per_platform: Mapping[str, float] = field(default_factory=dict)
    source: str = ""

    def for_platform(self, platform: str) -> float | None:
        """The limit that applies on `platform`, or None."""
        return self.per_platform.get(platform, self.default_joules)
