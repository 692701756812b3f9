"""Reading and checking our markers: ``hardware``, ``memory_limit`` and ``memory_leak_limit``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench.units import SizeError, format_bytes, parse_size

if TYPE_CHECKING:
    # Imported where a hardware marker is parsed: the session loads this module in runs that
    # only profile memory and never ask about hardware.
    from pytest_hwbench.hardware.base import Capability, HardwareBackend
    from pytest_hwbench.hardware.registry import HardwareRegistry

__all__ = [
    "HardwareRequirement",
    "MarkerError",
    "MemoryLimit",
    "parse_hardware_marker",
    "parse_memory_limit",
]


class MarkerError(ValueError):
    """A marker with bad arguments; the message names the bad value and the valid choices."""


@dataclass(frozen=True)
class HardwareRequirement:
    """What ``@pytest.mark.hardware(...)`` asks of a platform."""

    platforms: tuple[str, ...]
    requires: frozenset[Capability] = frozenset()
    min_memory_bytes: int | None = None
    min_count: int = 1

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


def _marker_error(marker: str, message: str) -> MarkerError:
    return MarkerError(f"@pytest.mark.{marker}: {message}")


def parse_hardware_marker(mark: pytest.Mark, registry: HardwareRegistry) -> HardwareRequirement:
    """Validate a ``hardware`` marker; unknown platforms, capabilities or sizes raise."""
    unknown_kwargs = set(mark.kwargs) - {"requires", "min_memory", "min_count"}
    if unknown_kwargs:
        raise _marker_error(
            "hardware",
            f"unknown argument(s) {', '.join(sorted(unknown_kwargs))}; "
            "valid: requires, min_memory, min_count",
        )
    names: list[str] = []
    for raw in mark.args:
        if not isinstance(raw, str):
            raise _marker_error("hardware", f"platform names must be strings, got {raw!r}")
        name = raw.strip().lower()
        if name not in registry:
            raise _marker_error(
                "hardware",
                f"unknown platform {raw!r}; registered platforms: {', '.join(registry.names())}",
            )
        names.append(name)
    if not names:
        raise _marker_error(
            "hardware", f"name at least one platform ({', '.join(registry.names())})"
        )
    requires_arg = mark.kwargs.get("requires", ())
    from pytest_hwbench.hardware.base import Capability, UnknownCapabilityError

    if isinstance(requires_arg, (str, Capability)):
        requires_arg = (requires_arg,)
    try:
        requires = Capability.parse_all(requires_arg)
    except UnknownCapabilityError as exc:
        raise _marker_error("hardware", str(exc)) from None
    min_memory = mark.kwargs.get("min_memory")
    try:
        min_memory_bytes = None if min_memory is None else parse_size(min_memory)
    except SizeError as exc:
        raise _marker_error("hardware", f"min_memory: {exc}") from None
    min_count = mark.kwargs.get("min_count", 1)
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        raise _marker_error("hardware", f"min_count must be an int >= 1, got {min_count!r}")
    return HardwareRequirement(tuple(dict.fromkeys(names)), requires, min_memory_bytes, min_count)


@dataclass(frozen=True)
class MemoryLimit:
    """A byte limit on peak growth, for every platform or per platform."""

    default_bytes: int | None = None
    per_platform: Mapping[str, int] = field(default_factory=dict)
    source: str = ""

    def for_platform(self, platform: str) -> int | None:
        """The limit that applies on `platform`, or None."""
        return self.per_platform.get(platform, self.default_bytes)


def parse_memory_limit(
    mark_name: str, args: Iterable[Any], kwargs: Mapping[str, Any], registry: HardwareRegistry
) -> MemoryLimit:
    """Validate ``memory_limit("2GiB")`` / ``memory_limit(cuda="2GiB", cpu="500MiB")``."""
    args = tuple(args)
    if len(args) > 1:
        raise _marker_error(mark_name, f"takes one size for every platform, got {len(args)}")
    try:
        default = parse_size(args[0]) if args else None
        per_platform: dict[str, int] = {}
        for platform, size in kwargs.items():
            if platform not in registry:
                raise _marker_error(
                    mark_name,
                    f"unknown platform {platform!r}; registered platforms: "
                    f"{', '.join(registry.names())}",
                )
            per_platform[platform] = parse_size(size)
    except SizeError as exc:
        raise _marker_error(mark_name, str(exc)) from None
    if default is None and not per_platform:
        raise _marker_error(mark_name, 'give a size, e.g. ("2GiB") or (cuda="2GiB")')
    return MemoryLimit(default, per_platform, source=f"@pytest.mark.{mark_name}")
