"""What pytest-hwbench costs a test run: installed but unused, and profiling every test.

Generates a suite of N trivial tests (default 2,000) in a temporary directory and runs pytest on
it in subprocesses, the variants side by side, interleaved with the order rotated (and mirrored
every other round), repeated (default 15 times), timing each subprocess's wall clock (nothing
subtracted):

1. ``plain``: pytest with our plugin disabled (``-p no:hwbench``);
2. ``unused``: our plugin installed, no hwbench option given;
3. ``floor`` (Linux): our plugin disabled, a minimal plugin that reads /proc/self/statm before
   and after each test's call in a hook wrapper, and nothing else: what any per-test RSS
   measurement costs at least, measured beside ours on the same machine in the same run;
4. ``profile-all``: ``--hw-profile-all`` (the exact CPU peak of every test; with no report to
   show timelines, an RSS peak probe rather than a sampled metric);
   ``+report``: the same with ``--hw-report`` (a stretch of start, exact peak and end per
   test, a report entry for each, and the report written);
   ``+baseline``: profile-all with a memory limit on one test in ten, so that it asks to be
   measured and gets the clean baseline first (a full garbage collection, a heap trim), which
   tests measured only because of profile-all skip; its cost is given per test that asks;
5. ``memray``: ``--memray`` with our plugin disabled, when pytest-memray is importable;
6. ``monitor``: pytest-monitor (on by default once installed) with our plugin disabled, when it
   is importable. Being on by default, it is blocked (``-p no:monitor``) in every other variant.

Every variant runs with ``-q -p no:cacheprovider -p no:xdist`` and the environment as it is
(other installed plugins load in all variants alike), except that bytecode is cached in a
temporary ``PYTHONPYCACHEPREFIX`` as for any installed package, even under
PYTHONDONTWRITEBYTECODE (``--no-pyc-cache`` keeps the environment's setting). The table gives
the median wall seconds, the added microseconds per test and the ratio against ``plain`` (medians
over repetitions of the difference and ratio within a repetition). A separate, untimed run per
variant, with a conftest added for it alone, reports whether torch was imported in the pytest
process; it doubles as warm-up.

Whole runs on a shared VM differ by tens of percent, which is tens of µs a test. So the script
then measures the per-test part alone, within one run (``--ab-runs``, 5 by default): a run of
``--hw-profile-all`` in which a generated conftest leaves every odd test unprofiled and times
each test's whole protocol; the difference of the two halves' medians is what profiling adds to
a test, with the host's noise falling on both halves alike. The floor gets the same treatment
(its two preads around even tests only). This leaves out what a run pays once and the call
hook's presence; the whole-run table is the verdict.

Run from the repository root::

    .venv/bin/python benchmarks/plugin_overhead.py                     # 2,000 tests, 15 repetitions
    .venv/bin/python benchmarks/plugin_overhead.py --tests 5000 --repeats 9
    .venv/bin/python benchmarks/plugin_overhead.py --instructions      # + valgrind counts
    .venv/bin/python benchmarks/plugin_overhead.py --only profile-all --ab-runs 9
    .venv/bin/python benchmarks/plugin_overhead.py --quick             # smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _stats import median_ci

TESTS_PER_FILE = 100
COMMON_ARGS = ("-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:xdist.looponfail")
HEAVY_MODULES = ("torch", "psutil", "numpy", "pynvml")
CHECK_ENV = "HWBENCH_OVERHEAD_IMPORT_CHECK"
#: Written only for the import-check runs, so it costs the timed runs nothing.
CHECK_CONFTEST = f"""\
import os
import sys

HEAVY = {HEAVY_MODULES!r}


def pytest_unconfigure(config):
    # The last hook of a run: anything imported by then was imported by this pytest process.
    path = os.environ.get({CHECK_ENV!r})
    if path:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(",".join(m for m in HEAVY if m in sys.modules))
"""
FLOOR_MODULE = "hwbench_overhead_floor"
#: The floor variant's plugin, importable from the suite's directory (``python -m`` puts the
#: working directory on sys.path).
FLOOR_PLUGIN = """\
import os

import pytest

_STATM = os.open("/proc/self/statm", os.O_RDONLY)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = os.pread(_STATM, 128, 0)
    try:
        return (yield)
    finally:
        after = os.pread(_STATM, 128, 0)
"""
#: The +baseline variant's plugin: every ASKED_EVERY-th test gets a memory limit far above any
#: use, so it asks to be measured and pays the clean baseline a test that asks pays
#: (docs/memory.md, "Numbers that do not depend on order"): a full garbage collection and a
#: heap trim before it. One in ten, not all: at tens of ms a test, all would take minutes a run.
ASKED_MODULE = "hwbench_overhead_asked"
ASKED_EVERY = 10
ASKED_PLUGIN = f"""\
import pytest


def pytest_collection_modifyitems(items):
    for item in items[::{ASKED_EVERY}]:
        item.add_marker(pytest.mark.memory_limit(cpu="1GiB"))
"""
AB_ENV = "HWBENCH_OVERHEAD_AB_OUT"
#: Written only for the within-run A/B runs: even tests are measured, odd ones are not, and each
#: test's whole protocol (setup, call, teardown, reports) is timed. What the measuring costs a
#: test is then the difference of the two halves' medians, taken test by test in one process, so
#: the host's noise, which swamps a few µs between whole runs, falls on both halves alike.
#: `{measure}` is what makes a test measured or not.
AB_CONFTEST = """\
import json
import os
import time

import pytest

{measure}

_durations = ([], [])
_index = [0]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    half = _index[0] % 2
    _index[0] += 1
    if half:
        leave_unmeasured(item)
    t0 = time.perf_counter_ns()
    try:
        return (yield)
    finally:
        _durations[half].append(time.perf_counter_ns() - t0)


def pytest_unconfigure(config):
    with open(os.environ[{ab_env!r}], "w", encoding="ascii") as fh:
        json.dump({{"measured": _durations[0], "unmeasured": _durations[1]}}, fh)
"""
#: profile-all's half-and-half: an odd test gets the plan of a test that profile-all does not
#: measure. Private API: this measures the plugin's internals, and the smoke test keeps it working.
AB_PROFILE_ALL = """\
from pytest_hwbench.plugin.planning import PLAN_KEY, TestPlan


def leave_unmeasured(item):
    item.stash[PLAN_KEY] = TestPlan("cpu")
"""
#: The floor's half-and-half: two statm preads around an even test's call, as the floor plugin.
AB_FLOOR = """\
_STATM = os.open("/proc/self/statm", os.O_RDONLY)


def leave_unmeasured(item):
    item.hwbench_ab_unmeasured = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if getattr(item, "hwbench_ab_unmeasured", False):
        return (yield)
    before = os.pread(_STATM, 128, 0)
    try:
        return (yield)
    finally:
        after = os.pread(_STATM, 128, 0)
"""
#: Tests left out at the start of each A/B run: the first tests pay for imports and warm-up.
AB_WARMUP_TESTS = 50

#: Ratio ceiling of the unused plugin, and added microseconds per test under --hw-profile-all.
UNUSED_MAX_RATIO = 1.01
PROFILE_ALL_MAX_US = 30.0
#: What a report may add over profile-all: this much a test, plus REPORT_FIXED_MS once a run.
REPORT_MAX_US = 50.0
REPORT_FIXED_MS = 100.0


def median_over(ours: list[float], base: list[float]) -> float:
    """The median, over repetitions, of how much longer a variant took than `base` in each."""
    return statistics.median(a - b for a, b in zip(ours, base, strict=True))


def report_limit_us(n_tests: int) -> float:
    """The +report target over profile-all, per test of a run of `n_tests`."""
    return REPORT_MAX_US + REPORT_FIXED_MS * 1e3 / n_tests


@dataclass(frozen=True)
class Variant:
    """One way of running the suite: a name and the extra pytest arguments."""

    name: str
    args: tuple[str, ...]
    description: str
    #: Another project's plugin: when its run fails, it is reported and left out, not fatal.
    competitor: bool = False


@dataclass
class Runs:
    """One variant's timed repetitions, and its differences from ``plain`` in each."""

    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    added_s: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def write_suite(root: Path, n_tests: int) -> None:
    """`n_tests` trivial test functions in files of `TESTS_PER_FILE`, with an empty pytest.ini."""
    # An ini file makes the temp dir the rootdir: no config above it is picked up.
    (root / "pytest.ini").write_text("[pytest]\n", encoding="ascii")
    for start in range(0, n_tests, TESTS_PER_FILE):
        body = "".join(
            f"def test_{i:06d}():\n    assert {i} + 1 > {i}\n\n\n"
            for i in range(start, min(start + TESTS_PER_FILE, n_tests))
        )
        (root / f"test_gen_{start // TESTS_PER_FILE:04d}.py").write_text(body, encoding="ascii")
    (root / f"{FLOOR_MODULE}.py").write_text(FLOOR_PLUGIN, encoding="ascii")
    (root / f"{ASKED_MODULE}.py").write_text(ASKED_PLUGIN, encoding="ascii")


def plugin_importable(module: str) -> bool:
    """Whether `module` can be imported by the pytest subprocesses (same interpreter and path)."""
    return importlib.util.find_spec(module) is not None


def build_variants() -> tuple[list[Variant], list[str]]:
    """The variants to time, and lines explaining the ones left out."""
    has_memray = plugin_importable("pytest_memray")
    has_monitor = plugin_importable("pytest_monitor")
    no_monitor = ("-p", "no:monitor") if has_monitor else ()
    variants = [
        Variant("plain", ("-p", "no:hwbench", *no_monitor), "pytest, hwbench disabled"),
        Variant("unused", no_monitor, "hwbench installed, no option"),
    ]
    notes = []
    if sys.platform.startswith("linux"):
        variants.append(
            Variant(
                "floor",
                ("-p", "no:hwbench", "-p", FLOOR_MODULE, *no_monitor),
                "hwbench disabled, two statm preads in a hook wrapper per test",
            )
        )
    else:
        notes.append("floor: skipped, it reads /proc/self/statm (Linux only)")
    variants += [
        Variant("profile-all", ("--hw-profile-all", *no_monitor), "--hw-profile-all (CPU)"),
        Variant(
            "+report",
            ("--hw-profile-all", "--hw-report=.hw-report.json", *no_monitor),
            "--hw-profile-all with --hw-report (a timeline per test, a report written)",
        ),
        Variant(
            "+baseline",
            ("--hw-profile-all", "-p", ASKED_MODULE, *no_monitor),
            f"--hw-profile-all, one test in {ASKED_EVERY} with a memory limit: it asks to be "
            "measured and gets the clean baseline first (a full garbage collection, a heap trim)",
        ),
    ]
    if has_memray:
        variants.append(
            Variant(
                "memray",
                ("--memray", "-p", "no:hwbench", *no_monitor),
                "pytest-memray",
                competitor=True,
            )
        )
    else:
        notes.append("memray: skipped, pytest-memray is not installed")
    if has_monitor:
        variants.append(
            Variant("monitor", ("-p", "no:hwbench"), "pytest-monitor (default on)", competitor=True)
        )
    else:
        notes.append("monitor: skipped, pytest-monitor is not installed")
    return variants, notes


def subprocess_env(pycache: Path | None) -> tuple[dict[str, str], list[str]]:
    """The caller's environment, minus what would keep our entry point from loading.

    With `pycache`, bytecode is written there and reused (as for any installed package), even
    where PYTHONDONTWRITEBYTECODE is set: else an editable install is compiled in every run.
    """
    env = dict(os.environ)
    notes = []
    if env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None) is not None:
        notes.append("PYTEST_DISABLE_PLUGIN_AUTOLOAD was set: unset for the runs")
    if pycache is not None:
        if env.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
            notes.append("PYTHONDONTWRITEBYTECODE was set: unset here (--no-pyc-cache keeps it)")
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        notes.append("bytecode cached in a temporary PYTHONPYCACHEPREFIX, warmed before timing")
    elif env.get("PYTHONDONTWRITEBYTECODE"):
        notes.append("PYTHONDONTWRITEBYTECODE is set: uncached modules compile in every run")
    return env, notes


class SuiteFailedError(RuntimeError):
    """A run of the trivial suite that did not end with every test passed."""

    def __init__(self, variant: Variant, returncode: int, stdout: str, stderr: str) -> None:
        lines = [line for line in (stdout + "\n" + stderr).splitlines() if line.strip()]
        first_error = next((line for line in lines if line.startswith("E ")), None)
        self.summary = f"exit {returncode}: {lines[-1] if lines else 'no output'}" + (
            f" ({first_error[1:].strip()})" if first_error else ""
        )
        super().__init__(
            f"variant {variant.name} did not pass every test ({self.summary}):\n"
            f"{stdout[-2000:]}\n{stderr[-2000:]}"
        )


def run_pytest(
    root: Path, variant: Variant, env: dict[str, str], n_tests: int
) -> tuple[float, float]:
    """Run the suite once under `variant`; wall and CPU seconds of the pytest process."""
    # pytest-monitor appends to a database in the working directory: start each run afresh.
    (root / ".pymon").unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", *COMMON_ARGS, *variant.args]
    cpu_before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    cpu_after = os.times()
    cpu = (cpu_after.children_user - cpu_before.children_user) + (
        cpu_after.children_system - cpu_before.children_system
    )
    if proc.returncode != 0 or not re.search(rf"\b{n_tests} passed\b", proc.stdout):
        raise SuiteFailedError(variant, proc.returncode, proc.stdout, proc.stderr)
    return wall, cpu


def check_imports(
    root: Path, variants: list[Variant], env: dict[str, str], n_tests: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Per variant, the heavy modules its pytest process had imported by the end (untimed).

    Also returns, per competitor whose run failed here, why: those are not timed.
    """
    conftest = root / "conftest.py"
    conftest.write_text(CHECK_CONFTEST, encoding="ascii")
    found: dict[str, str] = {}
    failed: dict[str, str] = {}
    try:
        for variant in variants:
            out = root / f".imports-{variant.name}.txt"
            try:
                run_pytest(root, variant, {**env, CHECK_ENV: str(out)}, n_tests)
            except SuiteFailedError as exc:
                if not variant.competitor:
                    raise
                failed[variant.name] = exc.summary
                continue
            found[variant.name] = out.read_text(encoding="ascii")
            out.unlink()
    finally:
        conftest.unlink()
    return found, failed


def measure(
    root: Path, variants: list[Variant], env: dict[str, str], n_tests: int, repeats: int
) -> dict[str, Runs]:
    """Time every variant `repeats` times, interleaved: the order rotated each repetition, and
    mirrored every other round of rotations, so that no variant always runs after the same one."""
    results = {v.name: Runs() for v in variants}
    for rep in range(repeats):
        shift = rep % len(variants)
        order = variants[shift:] + variants[:shift]
        if (rep // len(variants)) % 2:
            order.reverse()
        timed = {v.name: run_pytest(root, v, env, n_tests) for v in order}
        base = timed["plain"][0]
        for name, (wall, cpu) in timed.items():
            runs = results[name]
            runs.seconds.append(wall)
            runs.cpu_seconds.append(cpu)
            runs.added_s.append(wall - base)
            runs.ratios.append(wall / base)
        print(
            f"  repetition {rep + 1}/{repeats}: "
            + ", ".join(f"{name} {wall:.3f}s" for name, (wall, _) in timed.items()),
            flush=True,
        )
    return results


def measure_within_runs(
    root: Path, variants: list[Variant], env: dict[str, str], n_tests: int, runs: int
) -> dict[str, list[tuple[float, float]]]:
    """Per A/B kind (profile-all, floor), once per run: what measuring adds to a test, and what
    an unmeasured test takes (µs; the second shows how busy the host was)."""
    by_name = {v.name: v for v in variants}
    kinds = {"profile-all": (AB_PROFILE_ALL, by_name["profile-all"].args)}
    if "floor" in by_name:
        kinds["floor"] = (AB_FLOOR, by_name["plain"].args)  # the conftest does the floor's reads
    warmup = min(AB_WARMUP_TESTS, n_tests // 4)
    added: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    conftest = root / "conftest.py"
    out = root / ".ab-durations.json"
    try:
        for run in range(runs):
            for kind, (measure, args) in kinds.items():
                conftest.write_text(
                    AB_CONFTEST.format(measure=measure, ab_env=AB_ENV), encoding="ascii"
                )
                run_pytest(
                    root, Variant(f"{kind} A/B", args, ""), {**env, AB_ENV: str(out)}, n_tests
                )
                halves = json.loads(out.read_text(encoding="ascii"))
                unmeasured_ns = statistics.median(halves["unmeasured"][warmup:])
                measured_ns = statistics.median(halves["measured"][warmup:])
                added[kind].append(((measured_ns - unmeasured_ns) / 1e3, unmeasured_ns / 1e3))
            print(
                f"  A/B run {run + 1}/{runs}: "
                + ", ".join(
                    f"{kind} {us[-1][0]:+.1f} µs (of {us[-1][1]:.0f})" for kind, us in added.items()
                ),
                flush=True,
            )
    finally:
        conftest.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    return added


def print_within_runs(added: dict[str, list[tuple[float, float]]]) -> None:
    """The A/B figures: medians over runs, and the runs' range."""
    print(
        "\nwithin one run, test by test (even tests measured, odd ones not; each test's whole "
        "protocol timed):"
    )
    for kind, runs in added.items():
        values = [us for us, _ in runs]
        unmeasured = statistics.median(base for _, base in runs)
        relative = statistics.median(us / base for us, base in runs)
        print(
            f"  {kind:<12} adds {statistics.median(values):+.1f} µs/test "
            f"(runs: {min(values):+.1f} to {max(values):+.1f}); an unmeasured test takes "
            f"{unmeasured:.0f} µs, so {relative:+.1%}"
        )
    if "floor" in added:
        over = [
            ours - floor
            for (ours, _), (floor, _) in zip(added["profile-all"], added["floor"], strict=True)
        ]
        print(f"  profile-all over floor: {statistics.median(over):+.1f} µs/test")
    print(
        "  what measuring costs each test; not what a run pays once (imports, the session, the "
        "summary) nor the call hook's presence, which both halves share. A busy host slows "
        "every test, measured or not, and these µs with it"
    )


def count_instructions(root: Path, variant: Variant, env: dict[str, str]) -> int:
    """Instructions the pytest process executes, counted by valgrind (callgrind).

    Deterministic where wall time on a shared machine is not: the same run counts the same
    within ~0.1% (hash seed fixed), so small overheads show through the noise.
    """
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "pytest",
        *COMMON_ARGS,
        *variant.args,
    ]
    with subprocess.Popen(
        command,
        cwd=root,
        env={**env, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        _, stderr = proc.communicate()
    # Only pytest's own count: a child forked from it (a subprocess call) starts with a copy of
    # the parent's counters and would count the parent's instructions before the fork twice.
    counts = {int(pid): int(n) for pid, n in re.findall(r"==(\d+)== Collected : (\d+)", stderr)}
    if proc.returncode != 0 or proc.pid not in counts:
        raise RuntimeError(f"valgrind run of {variant.name} failed:\n{stderr[-2000:]}")
    return counts[proc.pid]


def print_instructions(
    root: Path,
    variants: list[Variant],
    env: dict[str, str],
    n_tests: int,
    plain_seconds: float,
) -> None:
    """One valgrind run per variant, in parallel: instructions added per test, and ratios."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counted = dict(
            zip(
                [v.name for v in variants],
                pool.map(lambda v: count_instructions(root, v, env), variants),
                strict=True,
            )
        )
    base = counted["plain"]
    # Instructions -> time at plain's pace (its median wall time over its instructions): an
    # estimate, exact only if our code runs at pytest's instructions per second.
    seconds_per_instruction = plain_seconds / base
    header = (
        f"{'variant':<12} {'instructions':>15} {'added/test':>11} {'vs plain':>9} "
        f"{'≈µs/test':>9}  target"
    )
    print(header)
    print("-" * len(header))
    for variant in variants:
        count = counted[variant.name]
        added = (count - base) / n_tests
        ratio = count / base
        approx_us = added * seconds_per_instruction * 1e6
        target = ""
        if variant.name == "unused":
            target = (
                f"<= {UNUSED_MAX_RATIO:.2f}x: {'ok' if ratio <= UNUSED_MAX_RATIO else 'MISSED'}"
            )
        elif variant.name == "profile-all":
            ok = approx_us <= PROFILE_ALL_MAX_US
            target = f"<= {PROFILE_ALL_MAX_US:g} µs/test: {'ok' if ok else 'MISSED'}"
        elif variant.name == "+report" and "profile-all" in counted:
            over_us = (count - counted["profile-all"]) / n_tests * seconds_per_instruction * 1e6
            ok = over_us <= report_limit_us(n_tests)
            target = (
                f"over profile-all {over_us:+.1f} <= {REPORT_MAX_US:g} µs/test + "
                f"{REPORT_FIXED_MS:g} ms: {'ok' if ok else 'MISSED'}"
            )
        shown_added = "-" if variant.name == "plain" else f"{added:+,.0f}"
        shown_us = "-" if variant.name == "plain" else f"{approx_us:+.1f}"
        print(
            f"{variant.name:<12} {count:>15,} {shown_added:>11} {ratio:>8.4f}x "
            f"{shown_us:>9}  {target}"
        )


def load_average() -> str:
    """The 1-minute load average, to tell a quiet machine from a busy one."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def spread(ratios: list[float]) -> str:
    """The interquartile range of the ratios: how far apart repetitions disagree."""
    if len(ratios) < 2:
        return "-"
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{q3 - q1:.4f}"


def verdict(ok: bool, quick: bool) -> str:
    """ "ok" or "MISSED"; no verdict from a --quick run."""
    if quick:
        return "(no verdict: --quick)"
    return "ok" if ok else "MISSED"


def print_table(
    variants: list[Variant],
    results: dict[str, Runs],
    imports: dict[str, str],
    n_tests: int,
    quick: bool,
) -> None:
    header = (
        f"{'variant':<12} {'median s':>9} {'cpu s':>7} {'µs/test added':>14} "
        f"{'95% CI':>17} {'vs plain':>9} {'IQR':>7}  {'heavy imports':<20} target"
    )
    print(header)
    print("-" * len(header))
    for variant in variants:
        runs = results[variant.name]
        added_us = statistics.median(runs.added_s) / n_tests * 1e6
        ratio = statistics.median(runs.ratios)
        heavy = imports.get(variant.name, "") or "none"
        target = ""
        if variant.name == "unused":
            ok = ratio <= UNUSED_MAX_RATIO and "torch" not in heavy.split(",")
            target = f"<= {UNUSED_MAX_RATIO:.2f}x, no torch: {verdict(ok, quick)}"
        elif variant.name == "profile-all":
            ok = added_us <= PROFILE_ALL_MAX_US
            target = f"<= {PROFILE_ALL_MAX_US:g} µs/test: {verdict(ok, quick)}"
        elif variant.name == "+baseline" and "profile-all" in results:
            over_s = median_over(runs.seconds, results["profile-all"].seconds)
            asked = len(range(0, n_tests, ASKED_EVERY))
            target = (
                f"over profile-all {over_s / asked * 1e3:+.2f} ms a test that "
                "asks (the clean baseline; tests measured by profile-all alone skip it)"
            )
        elif variant.name == "+report" and "profile-all" in results:
            base = results["profile-all"]
            over_us = median_over(runs.seconds, base.seconds) / n_tests * 1e6
            over_cpu_us = median_over(runs.cpu_seconds, base.cpu_seconds) / n_tests * 1e6
            ok = over_us <= report_limit_us(n_tests)
            target = (
                f"over profile-all {over_us:+.1f} (CPU {over_cpu_us:+.1f}) <= "
                f"{REPORT_MAX_US:g} µs/test + {REPORT_FIXED_MS:g} ms: {verdict(ok, quick)}"
            )
        added = "-" if variant.name == "plain" else f"{added_us:+.1f}"
        interval = median_ci(runs.added_s)
        shown_ci = (
            "-"
            if variant.name == "plain" or interval is None
            else f"[{interval[0] / n_tests * 1e6:+.1f}, {interval[1] / n_tests * 1e6:+.1f}]"
        )
        print(
            f"{variant.name:<12} {statistics.median(runs.seconds):>9.3f} "
            f"{statistics.median(runs.cpu_seconds):>7.3f} {added:>14} {shown_ci:>17} "
            f"{ratio:>8.4f}x {spread(runs.ratios):>7}  {heavy:<20} {target}"
        )
    if "floor" in results and "profile-all" in results:
        over_floor = [
            ours - floor
            for ours, floor in zip(
                results["profile-all"].seconds, results["floor"].seconds, strict=True
            )
        ]
        interval = median_ci(over_floor)
        shown_ci = (
            ""
            if interval is None
            else f" [{interval[0] / n_tests * 1e6:+.1f}, {interval[1] / n_tests * 1e6:+.1f}]"
        )
        print(
            f"\nprofile-all over floor: "
            f"{statistics.median(over_floor) / n_tests * 1e6:+.1f} µs/test{shown_ci} "
            "(median of the per-repetition difference, 95% CI)"
        )
    unused = imports.get("unused")
    if unused is not None:
        said = "imported" if "torch" in unused.split(",") else "not imported"
        print(f"\ntorch in the pytest process with hwbench installed but unused: {said}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=None, help="tests in the suite (2000)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default 15)")
    parser.add_argument(
        "--quick", action="store_true", help="200 tests, 1 repetition: a smoke test"
    )
    parser.add_argument(
        "--only",
        default=None,
        metavar="NAMES",
        help="comma-separated variants to run (plain always runs), e.g. unused,profile-all",
    )
    parser.add_argument(
        "--ab-runs",
        type=int,
        default=None,
        metavar="N",
        help="runs of the within-run A/B of profile-all and the floor (default 5, 0: none)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each variant's instructions under valgrind (deterministic; slow)",
    )
    parser.add_argument(
        "--no-pyc-cache",
        action="store_true",
        help="keep the environment's bytecode settings instead of caching bytecode in a temp dir",
    )
    args = parser.parse_args(argv)
    if args.tests is None:
        args.tests = 200 if args.quick else 2000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 15
    if args.ab_runs is None:
        args.ab_runs = 1 if args.quick else 5
    if args.tests < 1 or args.repeats < 1 or args.ab_runs < 0:
        parser.error("--tests and --repeats must be positive, --ab-runs not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants, notes = build_variants()
    if args.only is not None:
        wanted = {"plain", *(name.strip() for name in args.only.split(",") if name.strip())}
        unknown = wanted - {v.name for v in variants}
        if unknown:
            raise SystemExit(
                f"--only: unknown variant(s) {', '.join(sorted(unknown))}; "
                f"valid: {', '.join(v.name for v in variants)}"
            )
        variants = [v for v in variants if v.name in wanted]
    print(
        f"plugin overhead: python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{sys.platform}; {args.tests} trivial tests, {args.repeats} repetition(s), "
        "variants interleaved"
    )
    print("common arguments: " + " ".join(COMMON_ARGS))
    for variant in variants:
        print(f"  {variant.name:<12} {variant.description}: {' '.join(variant.args) or '-'}")
    for note in notes:
        print(f"  {note}")
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="hwbench-overhead-") as tmp:
        root = Path(tmp) / "suite"
        root.mkdir()
        write_suite(root, args.tests)
        env, env_notes = subprocess_env(None if args.no_pyc_cache else Path(tmp) / "pycache")
        for note in env_notes:
            print(f"  {note}")
        # The import check doubles as warm-up (page cache, bytecode where it is written).
        imports, failed = check_imports(root, variants, env, args.tests)
        for name, why in failed.items():
            print(f"  {name}: skipped, its run of the suite failed here ({why})")
        variants = [v for v in variants if v.name not in failed]
        results = measure(root, variants, env, args.tests, args.repeats)
        print()
        print_table(variants, results, imports, args.tests, args.quick)
        print(
            "\nµs/test added and vs plain: medians over repetitions of the difference from, and "
            "ratio to, plain in the same repetition (95% CI: a distribution-free confidence "
            "interval of that median; IQR: the ratio's interquartile range); wall time of the "
            "whole pytest process, cpu s: its user+system time; targets are judged on the medians"
        )
        if args.ab_runs and any(v.name == "profile-all" for v in variants):
            print()
            print_within_runs(measure_within_runs(root, variants, env, args.tests, args.ab_runs))
        if args.instructions:
            if shutil.which("valgrind") is None:
                print("\n--instructions: valgrind is not installed; no instruction counts")
            else:
                print("\ninstructions (valgrind callgrind, one run per variant):")
                plain_seconds = statistics.median(results["plain"].seconds)
                print_instructions(root, variants, env, args.tests, plain_seconds)
    print(f"1-minute load average: {load_before} before, {load_average()} after")
    if args.quick:
        print("--quick: too few tests and repetitions for the numbers to mean anything")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
