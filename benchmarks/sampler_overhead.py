"""How much sampling slows the measured code: no metric, memory samplers, an energy metric.

Two workloads, a pure-Python loop and a loop of float32 torch matmuls, each run under these
conditions: no metric (``none``); the CPU metric at the default interval, sampled by the background
thread (``thread 10ms``); the CPU metric sampled by the helper process at 1 ms (``process 1ms``);
and an energy metric reading CPU power every 10 ms on the same thread (``energy 10ms``: five times
the ticks ``--hw-energy`` makes, every 50 ms, so an upper bound of what it adds to a test; over a
fake RAPL tree of the kernel's files, since this VM has none). Only the workload is timed: the
metric is started before the clock starts and stopped after it ends (start+stop cost is shown in its
own column). Every repetition runs each workload under every condition, in a rotated order and then
its mirror image (A B C C B A), so drift and warm-up hit every condition alike; the slowdown is the
median, over both halves of every repetition, of the ratio to ``none`` in the same half, with a 95%
confidence interval. Runs are short and many (0.05 s, 100 repetitions: 200 ratios a condition)
because the speed of a shared VM wanders by ±5% from run to run: only many paired ratios resolve a
1% slowdown. The host's stolen time only ever slows a run, and on our VM it slows runs with no
second thread (``none``) more than others, which biases the paired median in the sampler's favour;
so the table also gives the ``quiet`` ratio, of the 10th percentiles of the run times, and a target
is met only when both meet it.
The helper process is started before timing begins and shut down at the end. The sampler thread
is stopped before each run without a metric (it idles on for seconds after a metric stops, and
would tax the baseline), and every run starts the clock 2 ms after its metric (or none) started,
once a new sampler thread runs. ``idle thread`` is a thread that wakes every 10 ms and does
nothing: the floor of any sampler that runs Python in a thread.

Run from the repository root::

    .venv/bin/python benchmarks/sampler_overhead.py              # 100 repetitions, 0.05 s runs
    .venv/bin/python benchmarks/sampler_overhead.py --threads 2  # torch on both cores
    .venv/bin/python benchmarks/sampler_overhead.py --quick      # smoke test, a few seconds
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from _stats import median_ci, quiet_time

from pytest_hwbench.hardware import _rapl
from pytest_hwbench.metrics.energy import EnergyMetric, EnergyMetricFactory
from pytest_hwbench.metrics.memory.base import MemoryMetric
from pytest_hwbench.metrics.memory.factory import MemoryMetricFactory
from pytest_hwbench.metrics.memory.process_sampler import (
    get_process_sampler,
    shutdown_process_samplers,
)
from pytest_hwbench.metrics.sampler import DEFAULT_INTERVAL_S, shutdown_sampler
from pytest_hwbench.testing import FakePowercap
from pytest_hwbench.units import parse_duration

# torch warns at import when numpy is absent; the matmuls here do not need numpy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

Workload = Callable[[int], object]
MetricMaker = Callable[[], "MemoryMetric | IdleWaker | EnergySampling | None"]

PROCESS_INTERVAL = "1ms"
#: Untimed pause between starting a metric and starting the clock.
SETTLE_S = 0.002
#: (workload, condition) -> the slowdown ratio we promise to stay under.
TARGETS: dict[tuple[str, str], float] = {
    ("python loop", "thread 10ms"): 1.01,
    ("torch matmul", "process 1ms"): 1.03,
    ("python loop", "energy 10ms"): 1.01,
}


@dataclass(frozen=True)
class Condition:
    """How a workload is measured: `make` returns an unstarted metric, or None for no metric."""

    name: str
    make: MetricMaker


@dataclass
class Runs:
    """The repetitions of one workload under one condition."""

    seconds: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    start_stop_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Timed:
    """One timed run: the workload's seconds and, when measured, what the metric saw."""

    seconds: float
    samples_per_s: float | None
    start_stop_s: float | None


class IdleWaker:
    """A thread that wakes every 10 ms and does nothing: the floor of any GIL-bound sampler.

    Each wake-up needs the GIL, which the measured Python code must hand over; what this costs
    is what a sampler thread costs before it reads anything.
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wakes = 0
        self._t0 = 0.0

    def start(self) -> IdleWaker:
        self._stop.clear()
        self._wakes = 0
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._wakes += 1

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return {"duration_s": time.perf_counter() - self._t0, "samples": self._wakes}


class EnergySampling:
    """An `EnergyMetric` sampling power as `--hw-energy` runs one around a test."""

    def __init__(self) -> None:
        base = EnergyMetricFactory.create("cpu")
        self.metric = EnergyMetric(
            base.device,
            backend=base.backend,
            index=0,
            counters=base.counters,
            interval_s=DEFAULT_INTERVAL_S,  # 5x the plugin's power ticks: an upper bound
        )

    def start(self) -> EnergySampling:
        self.metric.start()
        return self

    def stop(self) -> dict[str, float]:
        results = self.metric.stop().get_metrics()
        timeline = self.metric.get_power_timeline()
        return {
            "duration_s": results["duration_s"],
            "samples": len(timeline["t"]) if timeline else 0,
        }


CONDITIONS = (
    Condition("none", lambda: None),
    Condition("idle thread", IdleWaker),
    Condition("thread 10ms", lambda: MemoryMetricFactory.create("cpu")),
    Condition(
        "process 1ms",
        lambda: MemoryMetricFactory.create("cpu", sampler="process", interval=PROCESS_INTERVAL),
    ),
    Condition("energy 10ms", EnergySampling),
)


def python_loop(n: int) -> object:
    """Pure-Python arithmetic: holds the GIL throughout, like tokenizers or data munging."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def make_matmul_loop(size: int) -> Workload:
    """`n` float32 `size`x`size` matmuls into a preallocated output (no allocation per step)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)

    def matmul_loop(n: int) -> object:
        for _ in range(n):
            torch.mm(a, b, out=out)
        return out

    return matmul_loop


def calibrate(work: Workload, target_s: float, start_n: int) -> int:
    """The iteration count that makes `work` take about `target_s` seconds here."""
    n = start_n
    for _ in range(20):
        t0 = time.perf_counter()
        work(n)
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s / 4:
            break
        n *= 4
    # A second, longer measurement: the first one includes warm-up.
    scaled = max(1, round(n * target_s / max(elapsed, 1e-9)))
    t0 = time.perf_counter()
    work(scaled)
    elapsed = time.perf_counter() - t0
    return max(1, round(scaled * target_s / max(elapsed, 1e-9)))


def time_once(work: Workload, n: int, condition: Condition) -> Timed:
    """Run `work(n)` once under `condition`; only the workload itself is on the clock."""
    metric = condition.make()
    if not isinstance(metric, (MemoryMetric, EnergySampling)):
        # The sampler thread idles on for seconds after a metric stops, waking every interval:
        # left running, it would tax the baseline and the idle waker like a running metric.
        shutdown_sampler()
    gc.collect()
    if metric is None:
        time.sleep(SETTLE_S)  # as under every other condition
        t0 = time.perf_counter()
        work(n)
        return Timed(time.perf_counter() - t0, None, None)
    s0 = time.perf_counter()
    metric.start()
    s1 = time.perf_counter()
    time.sleep(SETTLE_S)  # a sampler thread started just now gets going before the clock does
    t0 = time.perf_counter()
    work(n)
    t1 = time.perf_counter()
    metrics = metric.stop()
    s2 = time.perf_counter()
    duration = metrics["duration_s"]
    rate = metrics["samples"] / duration if duration > 0 else 0.0
    return Timed(t1 - t0, rate, (s1 - s0) + (s2 - t1))


def warm_up(workloads: dict[str, tuple[Workload, int]]) -> None:
    """Start the sampler thread and the helper process, and run each workload once, untimed."""
    get_process_sampler(parse_duration(PROCESS_INTERVAL))
    for work, n in workloads.values():
        for condition in CONDITIONS:
            time_once(work, max(1, n // 10), condition)


def measure(
    workloads: dict[str, tuple[Workload, int]], repeats: int
) -> dict[tuple[str, str], Runs]:
    """Every workload under every condition, `repeats` times, interleaved and rotated.

    Within a repetition the conditions run in a rotated order and then in its mirror image
    (A B C C B A); each half gives every condition a ratio to ``none`` of the same half, so a
    burst of load from elsewhere spoils one ratio, which the median then ignores.
    """
    results = {(w, c.name): Runs() for w in workloads for c in CONDITIONS}
    names = list(workloads)
    for rep in range(repeats):
        shift = rep % len(CONDITIONS)
        order = CONDITIONS[shift:] + CONDITIONS[:shift]
        wshift = rep % len(names)
        for workload in names[wshift:] + names[:wshift]:
            work, n = workloads[workload]
            for half in (order, order[::-1]):
                timed = {c.name: time_once(work, n, c) for c in half}
                base = timed["none"].seconds
                for name, run in timed.items():
                    runs = results[(workload, name)]
                    runs.seconds.append(run.seconds)
                    runs.ratios.append(run.seconds / base)
                    if run.samples_per_s is not None:
                        runs.samples_per_s.append(run.samples_per_s)
                    if run.start_stop_s is not None:
                        runs.start_stop_s.append(run.start_stop_s)
    return results


def spread(ratios: list[float]) -> str:
    """The interquartile range of the ratios: how far apart repetitions disagree."""
    if len(ratios) < 2:
        return "-"
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{q3 - q1:.4f}"


def load_average() -> str:
    """The 1-minute load average, to tell a quiet machine from a busy one."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def print_table(
    workloads: dict[str, tuple[Workload, int]],
    results: dict[tuple[str, str], Runs],
    quick: bool,
) -> int:
    """Print the table; returns how many targets were missed."""
    header = (
        f"{'workload':<14} {'condition':<12} {'median s':>9} {'slowdown':>9} "
        f"{'95% CI':>17} {'IQR':>7} {'quiet':>7} {'samples/s':>10} {'start+stop ms':>14}  target"
    )
    print(header)
    print("-" * len(header))
    missed = 0
    for workload in workloads:
        for condition in CONDITIONS:
            runs = results[(workload, condition.name)]
            ratio = statistics.median(runs.ratios)
            interval = median_ci(runs.ratios) if condition.name != "none" else None
            shown_ci = "-" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"
            rate = f"{statistics.median(runs.samples_per_s):.0f}" if runs.samples_per_s else "-"
            start_stop = (
                f"{statistics.median(runs.start_stop_s) * 1e3:.2f}" if runs.start_stop_s else "-"
            )
            quiet = quiet_time(runs.seconds) / quiet_time(results[(workload, "none")].seconds)
            target = TARGETS.get((workload, condition.name))
            verdict = ""
            if target is not None:
                # Both estimates must meet it: each is biased where the other is not.
                ok = max(ratio, quiet) <= target
                missed += not ok
                said = "(no verdict: --quick)" if quick else ("ok" if ok else "MISSED")
                verdict = f"<= {target:.2f}x {said}"
            print(
                f"{workload:<14} {condition.name:<12} {statistics.median(runs.seconds):>9.4f} "
                f"{ratio:>8.4f}x {shown_ci:>17} {spread(runs.ratios):>7} {quiet:>6.4f}x "
                f"{rate:>10} {start_stop:>14}  {verdict}"
            )
    return missed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default 100)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (default 1: a core spare)"
    )
    parser.add_argument("--size", type=int, default=256, help="matmul side length (default 256)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="target seconds per run (default 0.05)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 short repetitions: a smoke test, not a measurement"
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 100
    if args.seconds is None:
        args.seconds = 0.03 if args.quick else 0.05
    if args.repeats < 1 or args.seconds <= 0 or args.threads < 1 or args.size < 1:
        parser.error("--repeats, --threads, --size and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    matmul_loop = make_matmul_loop(args.size)
    workloads: dict[str, tuple[Workload, int]] = {
        "python loop": (python_loop, calibrate(python_loop, args.seconds, 10_000)),
        "torch matmul": (matmul_loop, calibrate(matmul_loop, args.seconds, 4)),
    }
    print(
        f"sampler overhead: python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} thread(s)), {os.cpu_count()} cores, {sys.platform}; "
        f"{args.repeats} repetitions of ~{args.seconds:g} s, conditions interleaved"
    )
    print(
        f"workloads: python loop n={workloads['python loop'][1]}, "
        f"torch matmul {args.size}x{args.size} float32 x{workloads['torch matmul'][1]}; "
        f"default interval {DEFAULT_INTERVAL_S * 1e3:g} ms"
    )
    load_before = load_average()
    powercap = tempfile.TemporaryDirectory(prefix="hwbench-powercap-")
    FakePowercap(powercap.name, packages=1, dram=True)
    _rapl.POWERCAP_ROOT = powercap.name  # the energy metric reads the fake's files
    try:
        warm_up(workloads)
        results = measure(workloads, args.repeats)
    finally:
        shutdown_process_samplers()
        shutdown_sampler()
        powercap.cleanup()
    print()
    missed = print_table(workloads, results, args.quick)
    print()
    print(
        "slowdown: median over repetitions, two per repetition (A B C, then C B A), of "
        "(seconds under condition / seconds with none in the same half); 95% CI: a "
        "distribution-free confidence interval of that median; IQR: the ratios' interquartile "
        "range (noise between runs); quiet: the ratio of the 10th percentiles of the run times "
        "(time stolen by the host only ever adds, so fast runs show what a quiet machine "
        "would); a target is met when both the median and the quiet ratio meet it"
    )
    print(f"1-minute load average: {load_before} before, {load_average()} after")
    if args.quick:
        print("--quick: too few, too short repetitions for the ratios to mean anything")
    elif missed:
        print(f"{missed} target(s) missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
