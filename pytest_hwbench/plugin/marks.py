"""Our markers: one table of parsers (``MARKERS``), each parser's docstring its help line.

A parser checks a marker's arguments (bad ones raise `MarkerError` naming the value and the valid
choices) and returns what the marker asks for. pytest loads this module in every run, for the
help lines: hardware is imported only where a marker names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from pytest_hwbench.names import (
    DISTRIBUTED_MARKER,
    ENERGY_LIMIT_MARKER,
    HARDWARE_MARKER,
    LEAK_LIMIT_MARKER,
    MEMORY_LIMIT_MARKER,
    OUR_FIXTURES,
    OUR_MARKERS,
)

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.plugin.requirements import EnergyLimit, HardwareRequirement, MemoryLimit

__all__ = [
    "MARKERS",
    "MarkerError",
    "carries_our_markers",
    "check_single_marks",
    "is_ours",
    "marker_help_lines",
    "our_marks",
    "parse_energy_limit",
    "parse_hardware_marker",
    "parse_leak_limit",
    "parse_memory_limit",
]

T = TypeVar("T")

#: What a parser gets besides the mark: the run's registry, built only when a parser calls it.
RegistryGetter = Callable[[], "HardwareRegistry"]


class MarkerError(ValueError):
    """A marker with bad arguments; the message names the bad value and the valid choices."""


def _marker_error(marker: str, message: str) -> MarkerError:
    return MarkerError(f"@pytest.mark.{marker}: {message}")


def parse_hardware_marker(mark: pytest.Mark, registry: RegistryGetter) -> HardwareRequirement:
    """``hardware(*names, requires=(), min_memory=None, min_count=1, dtypes=())``.

    Run only where one of the named platforms is available and meets the requirements
    (capabilities such as 'bf16', device memory such as '16GiB', device count); with the
    hw_device fixture, run once per platform, and with hw_dtype once per dtype of `dtypes`
    (torch's names: 'float32', 'bfloat16'; or the torch.dtype objects).
    """
    # What parsing needs loads here, not with this module (pytest loads it in every run).
    from pytest_hwbench.plugin.requirements import HardwareRequirement
    from pytest_hwbench.units import SizeError, parse_size

    known = registry()
    unknown_kwargs = set(mark.kwargs) - {"requires", "min_memory", "min_count", "dtypes"}
    if unknown_kwargs:
        raise _marker_error(
            HARDWARE_MARKER,
            f"unknown argument(s) {', '.join(sorted(unknown_kwargs))}; "
            "valid: requires, min_memory, min_count, dtypes",
        )
    names: list[str] = []
    for raw in mark.args:
        if not isinstance(raw, str):
            raise _marker_error(HARDWARE_MARKER, f"platform names must be strings, got {raw!r}")
        name = raw.strip().lower()
        if not known.knows(name):
            raise _marker_error(
                HARDWARE_MARKER,
                f"unknown platform {raw!r}; registered platforms: {', '.join(known.names())}"
                + known.close_match_hint(name),
            )
        names.append(name)
    if not names:
        raise _marker_error(
            HARDWARE_MARKER, f"name at least one platform ({', '.join(known.names())})"
        )
    requires_arg = mark.kwargs.get("requires", ())
    from pytest_hwbench.hardware.base import Capability, UnknownCapabilityError

    if isinstance(requires_arg, (str, Capability)):
        requires_arg = (requires_arg,)
    if not isinstance(requires_arg, (list, tuple, set, frozenset)) or not all(
        isinstance(r, (str, Capability)) for r in requires_arg
    ):
        raise _marker_error(
            HARDWARE_MARKER,
            f"requires must be a capability name or a sequence of them, got {requires_arg!r}; "
            f"valid capabilities: {', '.join(c.value for c in Capability)}",
        )
    try:
        requires = Capability.parse_all(requires_arg)
    except UnknownCapabilityError as exc:
        raise _marker_error(HARDWARE_MARKER, str(exc)) from None
    min_memory = mark.kwargs.get("min_memory")
    try:
        min_memory_bytes = None if min_memory is None else parse_size(min_memory)
    except SizeError as exc:
        raise _marker_error(HARDWARE_MARKER, f"min_memory: {exc}") from None
    min_count = mark.kwargs.get("min_count", 1)
    if not isinstance(min_count, int) or isinstance(min_count, bool) or min_count < 1:
        raise _marker_error(HARDWARE_MARKER, f"min_count must be an int >= 1, got {min_count!r}")
    dtypes = _parse_dtypes(mark.kwargs.get("dtypes", ()))
    return HardwareRequirement(
        tuple(dict.fromkeys(names)), requires, min_memory_bytes, min_count, dtypes
    )


def _parse_dtypes(value: object) -> tuple[str, ...]:
    """The marker's ``dtypes=``: one dtype or a sequence, by name or as torch.dtype objects."""
    from pytest_hwbench.hardware.dtypes import DTYPE_NAMES, UnknownDtypeError, canonical_dtype

    items = value if isinstance(value, (list, tuple, set, frozenset)) else (value,)
    if isinstance(value, (list, tuple)) and not value:
        return ()
    try:
        names = tuple(dict.fromkeys(canonical_dtype(item) for item in items))
    except UnknownDtypeError as exc:
        raise _marker_error(HARDWARE_MARKER, f"dtypes: {exc}") from None
    if not names:
        raise _marker_error(HARDWARE_MARKER, f"dtypes: name one ({', '.join(DTYPE_NAMES)})")
    return names


def _per_platform_values(
    mark: pytest.Mark,
    registry: RegistryGetter,
    parse: Callable[[Any], T],
    noun: str,
    missing: str,
) -> tuple[T | None, dict[str, T]]:
    """A limit marker's one value for every platform and its per-platform values, parsed.

    ``marker(value)``, ``marker(cuda=value, cpu=value)`` or both; `parse` reads a value (a
    `SizeError` names what it expected), `noun` names one, and `missing` says what to write
    when the marker gives none. Platform names must be registered, exactly.
    """
    from pytest_hwbench.units import SizeError

    name = mark.name
    args = tuple(mark.args)
    if len(args) > 1:
        raise _marker_error(name, f"takes one {noun} for every platform, got {len(args)}")
    try:
        default = parse(args[0]) if args else None
        per_platform: dict[str, T] = {}
        if mark.kwargs:
            known = registry()
            for platform, value in mark.kwargs.items():
                # Exact: "CPU" would never apply.
                if platform != platform.strip().lower() or not known.knows(platform):
                    raise _marker_error(
                        name,
                        f"unknown platform {platform!r}; registered platforms: "
                        f"{', '.join(known.names())}" + known.close_match_hint(platform),
                    )
                per_platform[platform] = parse(value)
    except SizeError as exc:
        raise _marker_error(name, str(exc)) from None
    if default is None and not per_platform:
        raise _marker_error(name, missing)
    return default, per_platform


def parse_memory_limit(mark: pytest.Mark, registry: RegistryGetter) -> MemoryLimit:
    """``memory_limit(size=None, **per_platform)``.

    Fail the test when its peak memory growth exceeds size ('2GiB', '500MB', bytes), or per
    platform: memory_limit(cuda='2GiB', cpu='500MiB').
    """
    from pytest_hwbench.plugin.requirements import MemoryLimit
    from pytest_hwbench.units import parse_size

    default, per_platform = _per_platform_values(
        mark, registry, parse_size, "size", 'give a size, e.g. ("2GiB") or (cuda="2GiB")'
    )
    return MemoryLimit(default, per_platform, source=f"@pytest.mark.{mark.name}")


def parse_leak_limit(mark: pytest.Mark, registry: RegistryGetter) -> int:
    """``memory_leak_limit(size)``.

    Fail the test when its device memory after teardown exceeds what it held before by more
    than size.
    """
    from pytest_hwbench.units import SizeError, parse_size

    if len(mark.args) != 1 or mark.kwargs:
        raise _marker_error(LEAK_LIMIT_MARKER, "give one size, e.g. memory_leak_limit('1MiB')")
    try:
        return parse_size(mark.args[0])
    except SizeError as exc:
        raise _marker_error(LEAK_LIMIT_MARKER, str(exc)) from None


def parse_energy_limit(mark: pytest.Mark, registry: RegistryGetter) -> EnergyLimit:
    """``energy_limit(joules=None, **per_platform)``.

    Fail the test when the energy its device used during the test exceeds joules (40, '40J',
    '500mJ', '2kJ', '1.5Wh'), or per platform: energy_limit(cuda='2kJ', cpu='300J'); counters
    are device-wide, so other processes on the device count too.
    """
    from pytest_hwbench.plugin.requirements import EnergyLimit
    from pytest_hwbench.units import parse_energy

    default, per_platform = _per_platform_values(
        mark, registry, parse_energy, "energy", "give an energy, e.g. (40), ('2kJ') or (cuda='2kJ')"
    )
    return EnergyLimit(default, per_platform, source=f"@pytest.mark.{mark.name}")


#: Every marker of ours and its parser. A parser's docstring is the marker's help: its summary
#: line the usage, its next paragraph what the marker does.
def parse_distributed_marker(mark: pytest.Mark, registry: RegistryGetter) -> Any:
    """``distributed(world_size=2, timeout=None)``.

    Run the test in world_size processes (an int, or "auto": one per visible device of its
    platform, 2 on the CPU) with torch.distributed initialized (gloo on CPU, nccl on CUDA with a
    device per rank); hw_rank, hw_world_size and hw_device are each rank's own. A rank that
    fails fails the test, naming it; ranks still running after timeout (seconds or '90s'; ini
    hw_distributed_timeout, default 300s) are killed and their stacks shown.
    """
    from pytest_hwbench.plugin.requirements import DistributedSpec
    from pytest_hwbench.units import parse_duration

    del registry  # the platform is the test's own: nothing to look up here
    unknown = set(mark.kwargs) - {"world_size", "timeout"}
    if unknown or len(mark.args) > 1:
        raise _marker_error(
            DISTRIBUTED_MARKER,
            f"unknown argument(s) {', '.join(sorted(unknown)) or repr(mark.args[1:])}; "
            "valid: world_size, timeout",
        )
    size = mark.kwargs.get("world_size", mark.args[0] if mark.args else 2)
    if size == "auto":
        world_size = None
    elif isinstance(size, int) and not isinstance(size, bool) and size >= 1:
        world_size = size
    else:
        raise _marker_error(
            DISTRIBUTED_MARKER, f"world_size must be an int >= 1 or 'auto', got {size!r}"
        )
    timeout = mark.kwargs.get("timeout")
    try:
        timeout_s = None if timeout is None else parse_duration(timeout)
    except ValueError as exc:
        raise _marker_error(DISTRIBUTED_MARKER, f"timeout: {exc}") from None
    if timeout_s is not None and timeout_s <= 0:
        raise _marker_error(DISTRIBUTED_MARKER, f"timeout must be positive, got {timeout!r}")
    return DistributedSpec(world_size, timeout_s)


MARKERS: Mapping[str, Callable[[pytest.Mark, RegistryGetter], Any]] = {
    HARDWARE_MARKER: parse_hardware_marker,
    MEMORY_LIMIT_MARKER: parse_memory_limit,
    LEAK_LIMIT_MARKER: parse_leak_limit,
    ENERGY_LIMIT_MARKER: parse_energy_limit,
    DISTRIBUTED_MARKER: parse_distributed_marker,
}


def marker_help_lines() -> list[str]:
    """The ``markers`` ini lines that `pytest --markers` shows, one a marker, from `MARKERS`."""
    lines = []
    for name, parser in MARKERS.items():
        usage, _, rest = (parser.__doc__ or name).partition("\n\n")
        description = " ".join(rest.split()).removesuffix(".")
        lines.append(f"{usage.strip().strip('`.')}: {description[:1].lower()}{description[1:]}")
    return lines


def check_single_marks(node: pytest.Item | pytest.Collector) -> None:
    """Refuse two marks of one kind of ours on one function (pytest would use one silently)."""
    seen: set[str] = set()
    for mark in node.own_markers:
        if mark.name in OUR_MARKERS:
            if mark.name in seen:
                raise _marker_error(
                    mark.name, f"given twice on {node.name}; give one (the two would not combine)"
                )
            seen.add(mark.name)


def our_marks(node: pytest.Item | pytest.Collector) -> dict[str, pytest.Mark]:
    """The closest of each of our markers on `node` (its own, its class's, its module's)."""
    marks: dict[str, pytest.Mark] = {}
    for mark in node.iter_markers():
        if mark.name in OUR_MARKERS:
            marks.setdefault(mark.name, mark)
    return marks


def uses_our_markers(node: pytest.Item | pytest.Collector) -> bool:
    """Whether `node` or a parent carries one of our markers."""
    return any(mark.name in OUR_MARKERS for mark in node.iter_markers())


def carries_our_markers(node: pytest.Item, parents: dict[int, tuple[object, bool]]) -> bool:
    """`uses_our_markers`, with each parent's answer kept in `parents`.

    pytest asks this of every test in every run: ``iter_markers`` walks the whole node chain
    per call, while the tests of one module or class share every parent's answer.
    """
    for mark in node.own_markers:
        if mark.name in OUR_MARKERS:
            return True
    parent = node.parent
    if parent is None:
        return False
    # By id (hashing a node runs Python code), holding the node so that its id is not reused.
    known = parents.get(id(parent))
    if known is None:
        known = parents[id(parent)] = (parent, uses_our_markers(parent))
    return known[1]


def is_ours(item: pytest.Item, parents: dict[int, tuple[object, bool]] | None = None) -> bool:
    """Whether `item` uses one of our fixtures or markers (its run needs the session)."""
    if not OUR_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
        return True
    return carries_our_markers(item, {} if parents is None else parents)
