"""Planning, at collection: which platform each test runs on, whether it can, how it is measured.

A test's `TestPlan` is decided once and kept in its stash; tests that use none of our markers or
fixtures share one plain plan. Marker errors are collection errors naming the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import pytest

from pytest_hwbench.names import (
    DEVICE_FIXTURE,
    DEVICES_FIXTURE,
    DISTRIBUTED_MARKER,
    DTYPE_FIXTURE,
    ENERGY_FIXTURE,
    ENERGY_LIMIT_MARKER,
    HARDWARE_MARKER,
    HOST_PLATFORM,
    HW_BENCHMARK_FIXTURE,
    LEAK_LIMIT_MARKER,
    MEMORY_LIMIT_MARKER,
    PROFILE_FIXTURE,
)
from pytest_hwbench.plugin.marks import (
    MarkerError,
    check_single_marks,
    our_marks,
    parse_distributed_marker,
    parse_energy_limit,
    parse_hardware_marker,
    parse_leak_limit,
    parse_memory_limit,
)
from pytest_hwbench.plugin.requirements import (
    DistributedSpec,
    EnergyLimit,
    HardwareRequirement,
    MemoryLimit,
)

if TYPE_CHECKING:
    from pytest_hwbench.hardware.registry import HardwareRegistry
    from pytest_hwbench.plugin.options import HwbenchOptions

__all__ = ["PLAN_KEY", "PlanNeeds", "Planner", "TestPlan"]

#: The fixtures that give a test a platform or dtype axis (and so its directory's default).
_AXIS_FIXTURES = frozenset({DEVICE_FIXTURE, DTYPE_FIXTURE, DEVICES_FIXTURE})


class TestPlan:
    """What the session does around one test, decided once (at collection) and kept in its stash."""

    __slots__ = (
        "device_count",
        "distributed",
        "dtype",
        "energy_by_hook",
        "energy_limit",
        "leak_tolerance",
        "limit",
        "on_host",
        "platform",
        "profile_by_hook",
        "unmet",
    )
    __test__ = False  # not a test class, despite the name

    def __init__(
        self,
        platform: str,
        *,
        on_host: bool = True,
        unmet: str | None = None,
        profile_by_hook: bool = False,
        limit: MemoryLimit | None = None,
        leak_tolerance: int | None = None,
        energy_by_hook: bool = False,
        energy_limit: EnergyLimit | None = None,
        dtype: str | None = None,
        device_count: int = 1,
        distributed: DistributedSpec | None = None,
    ) -> None:
        #: The registry name of the platform the test runs on.
        self.platform = platform
        #: Whether that platform is the host (its memory is this process's RSS).
        self.on_host = on_host
        #: Why it cannot run there (None when it can).
        self.unmet = unmet
        #: Whether the call wrapper measures it (no memory_profile fixture does).
        self.profile_by_hook = profile_by_hook
        #: The limit on its peak growth (marker, else ini hw_memory_limit).
        self.limit = limit
        #: The allowed growth over the test when leak-checked, else None.
        self.leak_tolerance = leak_tolerance
        #: Whether the energy hook measures its energy (no energy_profile fixture does).
        self.energy_by_hook = energy_by_hook
        #: The limit on the energy its device used during it (marker), else None.
        self.energy_limit = energy_limit
        #: The dtype it computes in (its hw_dtype parameter's canonical name), else None.
        self.dtype = dtype
        #: How many devices of its platform it was granted (its marker's min_count).
        self.device_count = device_count
        #: Its ranks, when it is a distributed test.
        self.distributed = distributed


PLAN_KEY = pytest.StashKey[TestPlan]()


class PlanNeeds(NamedTuple):
    """Which per-test hooks the planned tests need (the session registers only those)."""

    measure: bool
    report: bool
    guard: bool
    #: Whether a runnable host test asks to be measured (memory_profile, a limit, a leak check):
    #: the run then gets a clean heap from its start (`Measurer.hold_heap_thresholds`).
    host_asks: bool = False
    #: Whether a planned test needs the energy hook (an energy limit; --hw-energy needs it anyway).
    energy: bool = False
    #: Whether a runnable test is distributed (its body runs in its ranks).
    distributed: bool = False


class Planner:
    """Turns markers and options into parametrization, plans, skips and deselection."""

    def __init__(self, options: HwbenchOptions, registry: Callable[[], HardwareRegistry]) -> None:
        self.options = options
        self._registry = registry
        self._collected = False  # whether classify_items planned the collected tests
        default_limit = None
        if options.memory_limit_bytes is not None:
            default_limit = MemoryLimit(options.memory_limit_bytes, source="ini hw_memory_limit")
        #: The plan of every test that uses none of our markers or fixtures.
        self.plain_plan = TestPlan(
            HOST_PLATFORM,
            profile_by_hook=options.profile_all,
            limit=default_limit,
            leak_tolerance=options.leak_tolerance_bytes if options.leak_check else None,
            energy_by_hook=options.energy,
        )

    def _requirement(self, mark: pytest.Mark | None) -> HardwareRequirement | None:
        return None if mark is None else parse_hardware_marker(mark, self._registry)

    @staticmethod
    def hardware_mark(
        node: pytest.Item, marks: dict[str, pytest.Mark] | None = None
    ) -> pytest.Mark | None:
        """`node`'s hardware marker: its own (or its class's, module's), else its directory's.

        A directory's comes from the ``pytest_hwbench_default_hardware`` hook of the
        conftest.py files above the test (pytest calls those of its path only).
        """
        mark = (our_marks(node) if marks is None else marks).get(HARDWARE_MARKER)
        if mark is not None:
            return mark
        if _AXIS_FIXTURES.isdisjoint(getattr(node, "fixturenames", ())):
            return None  # the directory's axes are for tests that take one: the rest run as ever
        given = node.ihook.pytest_hwbench_default_hardware(definition=node)
        if given is None:
            return None
        given = getattr(given, "mark", given)  # pytest.mark.hardware(...) is a MarkDecorator
        if not isinstance(given, pytest.Mark) or given.name != HARDWARE_MARKER:
            raise MarkerError(
                f"pytest_hwbench_default_hardware must return pytest.mark.hardware(...) or "
                f"None, got {given!r}"
            )
        return given

    def _memory_limit(self, mark: pytest.Mark | None) -> MemoryLimit | None:
        """The limit on peak growth: the marker's, else ini ``hw_memory_limit``."""
        if mark is not None:
            return parse_memory_limit(mark, self._registry)
        return self.plain_plan.limit

    def _leak_tolerance(self, mark: pytest.Mark | None) -> int | None:
        """Allowed growth over a test (marker or --hw-leak-check), or None when not checked."""
        if mark is not None:
            return parse_leak_limit(mark, self._registry)
        return self.plain_plan.leak_tolerance

    def _distributed(self, mark: pytest.Mark | None) -> DistributedSpec | None:
        """The ranks a distributed test asks for, or None."""
        return None if mark is None else parse_distributed_marker(mark, self._registry)

    def _energy_limit(self, mark: pytest.Mark | None) -> EnergyLimit | None:
        """The limit on a test's energy (its marker's), or None."""
        return None if mark is None else parse_energy_limit(mark, self._registry)

    def generate_tests(self, metafunc: pytest.Metafunc, *, late: bool = False) -> None:
        """Validate our markers (bad ones are collection errors); parametrize the axes.

        hw_device gets the platforms (the marker's, else --hw-devices', else every available
        one), hw_dtype the dtypes (the marker's, else --hw-dtypes', else float32), as one
        parametrization: ids ``[cuda-bfloat16]``. Called twice, early and `late` (after
        pytest's own parametrize markers); ini hw_axis_position says which one parametrizes.
        """
        definition = metafunc.definition
        fixtures = metafunc.fixturenames
        wants_device, wants_dtype = DEVICE_FIXTURE in fixtures, DTYPE_FIXTURE in fixtures
        if late and not (wants_device or wants_dtype):
            return
        try:
            marks = our_marks(definition)
            if not late:
                check_single_marks(definition)
                self._memory_limit(marks.get(MEMORY_LIMIT_MARKER))
                self._leak_tolerance(marks.get(LEAK_LIMIT_MARKER))
                self._energy_limit(marks.get(ENERGY_LIMIT_MARKER))
                self._distributed(marks.get(DISTRIBUTED_MARKER))
            declared = marks.get(HARDWARE_MARKER)
            requirement = self._requirement(self.hardware_mark(definition, marks))
        except MarkerError as exc:
            raise pytest.Collector.CollectError(f"{definition.nodeid}: {exc}") from None
        if not wants_dtype and any(
            mark.name == HARDWARE_MARKER and mark.kwargs.get("dtypes")
            for mark in definition.own_markers
        ):  # a module's, a class's or a directory's dtypes are for those of its tests that take it
            raise pytest.Collector.CollectError(
                f"{definition.nodeid}: hardware(dtypes=...) runs the test once per dtype: "
                f"take the {DTYPE_FIXTURE} fixture as an argument"
            )
        if (self.options.axis_position == "last") != late or not (wants_device or wants_dtype):
            return
        # A test's own marker (or its class's, module's) says what it supports: the command line
        # selects among those. A directory's default (the hook) is a default: it replaces it.
        options = self.options
        platforms: list[str] = []
        if wants_device:
            if declared is not None and requirement is not None:
                platforms = list(requirement.platforms)
            elif options.devices is not None:
                platforms = list(options.devices)
            elif requirement is not None:
                platforms = list(requirement.platforms)
            else:
                platforms = self._registry().available()
        dtypes: list[str] = []
        if wants_dtype:
            if declared is not None and requirement is not None and requirement.dtypes:
                dtypes = list(requirement.dtypes)
            elif options.dtypes is not None:
                dtypes = list(options.dtypes)
            elif requirement is not None and requirement.dtypes:
                dtypes = list(requirement.dtypes)
            else:
                dtypes = ["float32"]
        if not wants_dtype:
            metafunc.parametrize(
                DEVICE_FIXTURE, platforms, ids=platforms, indirect=True, scope="function"
            )
        elif not wants_device:
            metafunc.parametrize(DTYPE_FIXTURE, dtypes, ids=dtypes, indirect=True, scope="function")
        else:
            pairs = [(p, d) for p in platforms for d in dtypes]
            metafunc.parametrize(
                (DEVICE_FIXTURE, DTYPE_FIXTURE),
                pairs,
                ids=[f"{p}-{d}" for p, d in pairs],
                indirect=True,
                scope="function",
            )

    def _unselected(self, item: pytest.Item) -> bool:
        """Whether --hw-devices or --hw-dtypes leaves out the platform or dtype `item` has."""
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            return False
        params = callspec.params
        devices, dtypes = self.options.devices, self.options.dtypes
        if (
            devices is not None
            and DEVICE_FIXTURE in params
            and params[DEVICE_FIXTURE] not in devices
        ):
            return True
        return (
            dtypes is not None and DTYPE_FIXTURE in params and params[DTYPE_FIXTURE] not in dtypes
        )

    def _unmet_reason(
        self, item: pytest.Item, requirement: HardwareRequirement | None
    ) -> tuple[str, str | None]:
        """The platform `item` runs on, and why it cannot (None when it can)."""
        registry = self._registry()
        callspec = getattr(item, "callspec", None)
        dtype = None
        if callspec is not None and DTYPE_FIXTURE in callspec.params:
            dtype = str(callspec.params[DTYPE_FIXTURE])
        if callspec is not None and DEVICE_FIXTURE in callspec.params:
            name = str(callspec.params[DEVICE_FIXTURE])
            backend = registry.get(name)
            if requirement is not None:
                reason = requirement.unmet_reason(backend)
            elif not backend.is_available():
                reason = f"{name}: {backend.unavailable_reason()}"
            else:
                reason = None
            if reason is None and dtype is not None:
                reason = backend.dtype_unmet_reason(dtype)
            return name, reason
        if requirement is None:
            host = registry.get(HOST_PLATFORM)
            return HOST_PLATFORM, None if dtype is None else host.dtype_unmet_reason(dtype)
        reasons = []
        for name in requirement.platforms:
            backend = registry.get(name)
            reason = requirement.unmet_reason(backend)
            if reason is None and dtype is not None:
                reason = backend.dtype_unmet_reason(dtype)
            if reason is None:
                return name, None
            reasons.append(reason)
        return requirement.platforms[0], "; ".join(reasons)

    def make_plan(self, item: pytest.Item) -> TestPlan:
        """Decide `item`'s platform, whether it can run there, and how it is measured."""
        marks = our_marks(item)
        fixtures = getattr(item, "fixturenames", ())
        if (
            not marks
            and DEVICE_FIXTURE not in fixtures
            and DTYPE_FIXTURE not in fixtures
            and DEVICES_FIXTURE not in fixtures
            and PROFILE_FIXTURE not in fixtures
            and ENERGY_FIXTURE not in fixtures
        ):
            return self.plain_plan
        requirement = self._requirement(self.hardware_mark(item, marks))
        platform, unmet = self._unmet_reason(item, requirement)
        distributed = self._distributed(marks.get(DISTRIBUTED_MARKER))
        if distributed is not None and unmet is None:
            unmet = distributed.unmet_reason(self._registry().get(platform))
        callspec = getattr(item, "callspec", None)
        dtype = callspec.params.get(DTYPE_FIXTURE) if callspec is not None else None
        return TestPlan(
            platform,
            on_host=self._registry().get(platform).is_host,
            unmet=unmet,
            # A distributed test's ranks measure themselves: the driver only waits for them.
            profile_by_hook=PROFILE_FIXTURE not in fixtures
            and distributed is None
            and (self.options.profile_all or MEMORY_LIMIT_MARKER in marks),
            limit=self._memory_limit(marks.get(MEMORY_LIMIT_MARKER)),
            leak_tolerance=self._leak_tolerance(marks.get(LEAK_LIMIT_MARKER)),
            energy_by_hook=ENERGY_FIXTURE not in fixtures
            and (self.options.energy or ENERGY_LIMIT_MARKER in marks),
            energy_limit=self._energy_limit(marks.get(ENERGY_LIMIT_MARKER)),
            dtype=None if dtype is None else str(dtype),
            device_count=requirement.min_count if requirement is not None else 1,
            distributed=distributed,
        )

    def plan(self, item: pytest.Item) -> TestPlan:
        """`item`'s plan, made now if collection did not (a test that asked for us at run time)."""
        stash = item.stash
        # `in`, not stash.get(): a miss, every plain test's case, raises KeyError inside get().
        if PLAN_KEY in stash:
            return stash[PLAN_KEY]
        if self._collected:  # collection planned every test of ours: this one is plain
            return self.plain_plan
        plan = stash[PLAN_KEY] = self.make_plan(item)
        return plan

    def platform_of(self, item: pytest.Item) -> str:
        """The registry name of the platform `item` runs on."""
        return self.plan(item).platform

    def _collected_plan(self, item: pytest.Item) -> TestPlan:
        """`make_plan`, with a marker made bad after collection (by a hook) a usage error."""
        try:
            return self.make_plan(item)
        except MarkerError as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None

    def classify_items(
        self, config: pytest.Config, items: list[pytest.Item], ours: list[pytest.Item]
    ) -> PlanNeeds:
        """Plan every test (`ours` use our markers or fixtures); skip or deselect the unrunnable.

        Called after every other plugin's ``pytest_collection_modifyitems``.
        """
        self._collected = True
        guard = False
        unrunnable: set[pytest.Item] = set()
        host_asks = False
        energy = self.options.energy
        distributed = False
        for item in ours:
            if self._unselected(item):
                unrunnable.add(item)  # the user asked for a subset: the rest is deselected
                continue
            plan = item.stash[PLAN_KEY] = self._collected_plan(item)
            guard = guard or plan.leak_tolerance is not None
            energy = energy or plan.energy_by_hook or plan.energy_limit is not None
            if plan.unmet is None:
                distributed = distributed or plan.distributed is not None
                host_asks = host_asks or (
                    plan.on_host
                    and (
                        PROFILE_FIXTURE in getattr(item, "fixturenames", ())
                        or plan.limit is not None
                        or plan.leak_tolerance is not None
                    )
                )
                continue
            if self.options.unavailable == "deselect":
                unrunnable.add(item)
            elif self.options.unavailable == "skip":
                # A skip mark, not pytest.skip() in a hook: -rs then points at the test.
                item.add_marker(pytest.mark.skip(reason=plan.unmet))
            else:
                guard = True  # fails the test at setup
        if unrunnable:
            config.hook.pytest_deselected(items=[i for i in items if i in unrunnable])
            items[:] = [i for i in items if i not in unrunnable]
        benchmarked = any(HW_BENCHMARK_FIXTURE in getattr(i, "fixturenames", ()) for i in ours)
        # Benchmark timings travel in the entries: a benchmarked run gathers them.
        host_asks = host_asks or self.options.leak_check
        return PlanNeeds(
            measure=bool(ours),
            report=benchmarked,
            guard=guard,
            host_asks=host_asks,
            energy=energy,
            distributed=distributed,
        )
