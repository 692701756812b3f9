"""What profiling and a report cost a real torch library's test suite, run as its users run it.

The suite: linear_operator 0.6's tests (4,905 tests, CPU, numerical linear algebra on small
tensors; the sdist from PyPI ships them), in a virtual environment of their own with torch
2.13.0, linear_operator 0.6 and this checkout installed. Three variants, interleaved round by
round with the order rotated (and mirrored every other round), so a busy host slows all alike:

- ``plain``: ``-p no:hwbench``, as if the plugin were not installed;
- ``profile-all``: ``--hw-profile-all``;
- ``+report``: ``--hw-profile-all --hw-report=...``, the plugin's CI command.

Prints each variant's median wall time, and its ratio to plain: the median of the per-round
ratios, with a distribution-free 95% confidence interval of that median and the ratios' range,
and the ``quiet`` ratio (of the 10th percentiles of the run times: a shared VM's stolen time only
ever slows a run, so the fast runs show what a quiet machine would). A whole run of this suite
wanders by ±5-10% from one run to the next on a 2-core VM, so a 1% effect needs many rounds:
give 12 or more. The target: ``+report`` at most 1.03x plain, on the median and the quiet ratio.

Bytecode is cached (in ``WORKDIR/pycache``, through ``PYTHONPYCACHEPREFIX``, with
``PYTHONDONTWRITEBYTECODE`` unset for the runs) and warmed by one untimed run of each variant, as
for any package pip installed: else the checkout, installed editable, would be compiled from
source in every run, a cost (~0.2 s a run here) no user pays.

Whole runs cannot resolve 1% on such a machine; instructions can. ``--instructions PATH...``
runs each variant once on those of the suite's tests under valgrind (cachegrind, torch on one
thread, the hash seed fixed: the same run counts the same to ~0.01%), in parallel, and prints
each variant's count and what it adds to plain. Two counts, on few tests and on many, tell what
a run pays once from what each test adds. Valgrind slows everything ~50x, so that every test
outlives the default 10 ms sampling interval: add ``--hw-interval=1s`` (``--extra``) to sample
as often, relative to the tests, as 10-20 ms does natively.

    .venv/bin/python benchmarks/real_suite.py --setup      # once: the venv and the suite (~1 min)
    .venv/bin/python benchmarks/real_suite.py --rounds 12  # ~3 x 12 whole runs of the suite
    .venv/bin/python benchmarks/real_suite.py --instructions \
        test/operators/test_diag_linear_operator.py --extra=--hw-interval=1s   # ~5 min
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _stats import median_ci, quiet_time

ROOT = Path(__file__).resolve().parents[1]
#: The suite, pinned: its sdist carries the tests, its wheel does not.
PACKAGE = "linear_operator==0.6"
SDIST = "linear_operator-0.6"
TORCH = "torch==2.13.0"
REPORT_MAX_RATIO = 1.03

VARIANTS = {
    "plain": ["-p", "no:hwbench"],
    "profile-all": ["--hw-profile-all"],
    "+report": ["--hw-profile-all", "--hw-report={report}"],
}


def setup(workdir: Path) -> None:
    """Create the suite's virtual environment and unpack its tests (needs the package index)."""
    venv = workdir / "venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH], check=True)  # first: the package's range must not pull another
    subprocess.run([*pip, PACKAGE, "-e", str(ROOT)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "download", "-q", PACKAGE,
             "--no-binary", ":all:", "--no-deps", "-d", tmp],
            check=True,
        )  # fmt: skip
        (archive,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(workdir, filter="data")
    print(f"suite ready in {workdir / SDIST}")


def _own_ini(suite: Path) -> None:
    """Give the suite an ini of its own: pytest then looks no further up (where this checkout's
    pyproject.toml would make every warning an error, if the suite lies inside it)."""
    ini = suite / "pytest.ini"
    if not ini.exists():
        ini.write_text("[pytest]\n")


def suite_env(workdir: Path) -> dict[str, str]:
    """The runs' environment: ours, with bytecode written to and read from a cache of the
    benchmark's own (see the module's docstring)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def pytest_command(
    workdir: Path, variant: str, report: Path, paths: Sequence[str] = ("test",)
) -> list[str]:
    """The suite's pytest command line for `variant` on `paths` (the whole suite by default)."""
    args = [a.format(report=report) for a in VARIANTS[variant]]
    return [str(workdir / "venv" / "bin" / "python"), "-m", "pytest", "-q", "-p",
            "no:cacheprovider", *paths, *args]  # fmt: skip


def run_passing(workdir: Path, variant: str, command: list[str]) -> str:
    """Run `command` in the suite's directory; the last line pytest printed. The run must pass."""
    _own_ini(workdir / SDIST)
    done = subprocess.run(
        command, cwd=workdir / SDIST, env=suite_env(workdir), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def run(workdir: Path, variant: str, report: Path) -> tuple[float, float]:
    """One run of the whole suite: its wall time and its CPU time (user + system), in seconds.

    The suite must pass. CPU time leaves out the time a shared VM's host took the CPU away
    (steal), which only ever lengthens the wall clock: it wanders less from run to run.
    """
    command = pytest_command(workdir, variant, report)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run_passing(workdir, variant, command)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, cpu


def count_instructions(workdir: Path, variant: str, paths: list[str], extra: list[str]) -> int:
    """Instructions the pytest process executes on `paths` under `variant`, counted by valgrind.

    Only pytest's own process: a child forked from it starts with a copy of its counters.
    """
    report = workdir / f"hw-report-{variant.strip('+')}-counted.json"
    extra = extra if variant != "plain" else []
    env = {**suite_env(workdir), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        *pytest_command(workdir, variant, report, paths), *extra,
    ]  # fmt: skip
    with subprocess.Popen(
        command, cwd=workdir / SDIST, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # fmt: skip
        stdout, stderr = proc.communicate()
    counts = {
        int(pid): int(count.replace(",", ""))
        for pid, count in re.findall(r"==(\d+)== I\s+refs:\s+([\d,]+)", stderr)
    }
    if proc.returncode != 0 or proc.pid not in counts:
        raise SystemExit(f"{variant} under valgrind failed:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return counts[proc.pid]


def print_instructions(workdir: Path, paths: list[str], extra: list[str]) -> None:
    """Count every variant's instructions on `paths` (in parallel) and print what each adds."""
    from concurrent.futures import ThreadPoolExecutor

    names = list(VARIANTS)
    report = workdir / "hw-report.json"
    for name in names:  # untimed, natively: fills the bytecode cache, shows that the tests pass
        tests = run_passing(workdir, name, pytest_command(workdir, name, report, paths))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = pool.map(lambda name: count_instructions(workdir, name, paths, extra), names)
        counted = dict(zip(names, counts, strict=True))
    print(f"\n{PACKAGE}: {' '.join(paths)} ({tests}); instructions, valgrind, torch on one thread")
    if extra:
        print(f"profiled variants also given: {' '.join(extra)}")
    header = f"{'variant':<12} {'instructions':>16} {'added':>14} {'vs plain':>9}"
    print(f"{header}\n{'-' * len(header)}")
    base = counted["plain"]
    for name in names:
        added = "-" if name == "plain" else f"{counted[name] - base:+,}"
        print(f"{name:<12} {counted[name]:>16,} {added:>14} {counted[name] / base:>8.4f}x")


def _table(clock: str, names: list[str], times: dict[str, list[float]]) -> None:
    """Each variant's median time on `clock`, its ratio to plain, and the ratio's spread."""
    header = (
        f"{'variant':<12} {'median s':>9} {'vs plain':>9} {'95% CI':>17} {'range':>17} "
        f"{'quiet':>8}  target"
    )
    print(f"\n{clock} time:\n{header}\n{'-' * len(header)}")
    for name in names:
        ratios = [t / p for t, p in zip(times[name], times["plain"], strict=True)]
        ratio = statistics.median(ratios)
        quiet = quiet_time(times[name]) / quiet_time(times["plain"])
        target = ""
        if name == "+report":
            verdict = "ok" if max(ratio, quiet) <= REPORT_MAX_RATIO else "MISSED"
            target = f"<= {REPORT_MAX_RATIO:.2f}x: {verdict}"
        interval = median_ci(ratios)
        shown_ci = (
            "-"
            if name == "plain" or interval is None
            else (f"[{interval[0]:.3f}, {interval[1]:.3f}]")
        )
        shown_range = "-" if name == "plain" else f"{min(ratios):.3f}-{max(ratios):.3f}x"
        print(
            f"{name:<12} {statistics.median(times[name]):>9.2f} {ratio:>8.3f}x "
            f"{shown_ci:>17} {shown_range:>17} {quiet:>7.3f}x  {target}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".real-suite")
    parser.add_argument("--setup", action="store_true", help="make the venv and unpack the suite")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--instructions",
        nargs="+",
        metavar="PATH",
        help="count instructions under valgrind on these of the suite's tests, instead of timing",
    )
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        help="an extra pytest argument for the profiled variants of --instructions (repeatable)",
    )
    options = parser.parse_args()
    workdir = options.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if options.setup:
        setup(workdir)
        return 0
    if not (workdir / SDIST / "test").is_dir():
        print(f"no suite in {workdir}: run with --setup first (needs the package index)")
        return 2
    if options.instructions:
        print_instructions(workdir, options.instructions, options.extra)
        return 0
    names = list(VARIANTS)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu_times: dict[str, list[float]] = {name: [] for name in names}
    report = workdir / "hw-report.json"
    for name in names:  # untimed: fills the bytecode cache (and shows that the suite passes)
        run(workdir, name, report)
    for round_index in range(options.rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        if round_index % 2:
            order.reverse()
        for name in order:
            wall, cpu = run(workdir, name, report)
            times[name].append(wall)
            cpu_times[name].append(cpu)
        shown = ", ".join(f"{name} {times[name][-1]:.1f}s" for name in order)
        print(f"  round {round_index + 1}/{options.rounds}: {shown}", flush=True)
    print(f"\n{PACKAGE} tests, {options.rounds} interleaved rounds")
    _table("wall", names, times)
    _table("CPU (user + system)", names, cpu_times)
    size = report.stat().st_size if report.exists() else 0
    print(f"\nreport: {size / 2**20:.1f} MiB for the suite's tests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
