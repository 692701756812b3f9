"""Whether a test's exact CPU peak growth depends on which tests ran before it.

Runs each suite's tests alone (one process a test), in order, reversed, and in three shuffled
orders (seeds 1-3; node ids given on the command line in that order, as pytest-randomly would
order them), every run with ``--hw-profile-all --hw-report``, and prints each test's peak growth
per order with its spread. A test is stable when every order agrees with its run alone within
max(5%, 2 MiB), and a CPU memory limit 10% above its alone figure (at least 2 MiB above) would
pass in every order. Then two identical in-order runs are compared with ``--fail-on
peak:+10%,+1MiB`` and with ``peak:+10%`` alone, and the crossings counted.

Suites: the example suites (``example_suites/``, CPU only here) and a synthetic suite generated
in a temporary directory: heap and mapped allocations of several sizes, a python object graph,
MLP training steps of three sizes, and a conv, each through ``memory_profile``: what a test
does to ask for a figure it can trust. (Tests measured only because of ``--hw-profile-all`` get
no full garbage collection first, for its cost: see docs/memory.md.)

    .venv/bin/python benchmarks/order_stability.py              # both suites (~4 min)
    .venv/bin/python benchmarks/order_stability.py --suite synthetic
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_hwbench.report.compare import compare_reports  # noqa: E402
from pytest_hwbench.report.model import primary_stats  # noqa: E402
from pytest_hwbench.report.thresholds import parse_threshold  # noqa: E402

MiB = 2**20
TOLERANCE_FRACTION = 0.05
TOLERANCE_BYTES = 2 * MiB
LIMIT_MARGIN = 0.10
SEEDS = (1, 2, 3)

SYNTHETIC = """
import ctypes
import mmap

import pytest
import torch
from torch import nn

_KEPT = []


def _heap_blocks(count, size):
    return [ctypes.create_string_buffer(size) for _ in range(count)]


def test_heap_big(memory_profile):
    ctypes.create_string_buffer(16 * 2**20)  # raises glibc's mmap threshold to 16 MiB
    blocks = []
    for _ in range(96):
        blocks.append(ctypes.create_string_buffer(512 * 1024))
        _KEPT.append(ctypes.create_string_buffer(4096))  # pins: the heap cannot shrink
    del blocks


def test_heap_small(memory_profile):
    del _heap_blocks(24, 512 * 1024)[:]


def test_mapped_64mib(memory_profile):
    data = mmap.mmap(-1, 64 * 2**20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    data.close()


def test_python_objects(memory_profile):
    graph = [{"id": i, "name": str(i) * 4, "links": list(range(8))} for i in range(100_000)]
    assert len(graph) == 100_000


def _mlp_step(width, batch):
    model = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs, targets = torch.ones(batch, width), torch.zeros(batch, dtype=torch.long)
    nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()


def test_mlp_step_small(memory_profile):
    _mlp_step(256, 32)


def test_mlp_step_medium(memory_profile):
    _mlp_step(1024, 64)


def test_mlp_step_big(memory_profile):
    _mlp_step(3072, 256)


def test_conv_forward(memory_profile):
    conv = nn.Conv2d(3, 32, 3, padding=1)
    with torch.no_grad():
        conv(torch.ones(16, 3, 64, 64)).sum().item()
"""


def collect(cwd: Path, target: str) -> list[str]:
    """The suite's node ids, in pytest's order."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", target],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.strip() for line in done.stdout.splitlines() if "::" in line]


def run(suite: Path, nodeids: list[str], report: Path) -> dict[str, Any]:
    """One pytest run of `nodeids` in that order; its report."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               "--hw-profile-all", f"--hw-report={report}", *nodeids]  # fmt: skip
    done = subprocess.run(command, cwd=suite, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"pytest failed in {suite}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return json.loads(report.read_text())


def growths(report: dict[str, Any]) -> dict[str, int]:
    """Each measured CPU test's primary peak growth (its measured block's, if it has one)."""
    out = {}
    for entry in report["tests"]:
        stats = primary_stats(entry)
        if stats is not None and entry.get("platform") == "cpu":
            out[entry["nodeid"]] = int(stats["peak_delta_bytes"])
    return out


def study(name: str, suite: Path, target: str, tmp: Path) -> tuple[int, int, int, int]:
    """Run `target` (in `suite`) in every order and print its table.

    Returns (tests, unstable ones, ones over the limit, ones gated on identical runs).
    """
    nodeids = collect(suite, target)
    report = tmp / f"{name}.json"
    orders: dict[str, dict[str, int]] = {"alone": {}}
    for nodeid in nodeids:
        orders["alone"].update(growths(run(suite, [nodeid], report)))
    orders["in order"] = growths(first := run(suite, nodeids, report))
    orders["reversed"] = growths(run(suite, nodeids[::-1], report))
    for seed in SEEDS:
        shuffled = nodeids[:]
        random.Random(seed).shuffle(shuffled)
        orders[f"seed {seed}"] = growths(run(suite, shuffled, report))
    again = run(suite, nodeids, report)

    names = list(orders)
    print(f"\n{name}: {len(nodeids)} tests, peak growth (MiB) per order")
    header = f"{'test':<52} " + " ".join(f"{n:>9}" for n in names) + f" {'spread':>8}  verdict"
    print(header)
    print("-" * len(header))
    unstable = over_limit = 0
    for nodeid in nodeids:
        alone = orders["alone"].get(nodeid)
        if alone is None:
            continue
        values = [orders[n].get(nodeid) for n in names]
        known = [v for v in values if v is not None]
        tolerance = max(TOLERANCE_FRACTION * alone, TOLERANCE_BYTES)
        stable = all(abs(v - alone) <= tolerance for v in known)
        limit = alone + max(LIMIT_MARGIN * alone, TOLERANCE_BYTES)
        passes = all(v <= limit for v in known)
        unstable += not stable
        over_limit += not passes
        verdict = "ok" if stable and passes else ("UNSTABLE" if not stable else "OVER LIMIT")
        shown = " ".join("        -" if v is None else f"{v / MiB:9.1f}" for v in values)
        label = nodeid if len(nodeid) <= 52 else "..." + nodeid[-49:]
        print(f"{label:<52} {shown} {(max(known) - min(known)) / MiB:8.1f}  {verdict}")
    gated = {}
    for text in ("peak:+10%,+1MiB", "peak:+10%"):
        comparison = compare_reports(first, again, [parse_threshold(text)])
        gated[text] = len(comparison.failures)
    print(
        f"two identical in-order runs compared: {gated['peak:+10%,+1MiB']} test(s) crossed "
        f"peak:+10%,+1MiB; {gated['peak:+10%']} crossed peak:+10% alone"
    )
    return len(orders["alone"]), unstable, over_limit, gated["peak:+10%,+1MiB"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=("examples", "synthetic", "both"), default="both")
    options = parser.parse_args()
    totals = [0, 0, 0, 0]
    with tempfile.TemporaryDirectory(prefix="hwbench-order-") as tmp_name:
        tmp = Path(tmp_name)
        suites = []
        if options.suite in ("examples", "both"):
            suites.append(("example suites", ROOT, "example_suites"))
        if options.suite in ("synthetic", "both"):
            synthetic = tmp / "synthetic"
            synthetic.mkdir()
            (synthetic / "test_synthetic.py").write_text(SYNTHETIC)
            (synthetic / "pytest.ini").write_text("[pytest]\n")
            suites.append(("synthetic suite", synthetic, "."))
        for name, suite, target in suites:
            for index, value in enumerate(study(name, suite, target, tmp)):
                totals[index] += value
    tests, unstable, over, gated = totals
    print(
        f"\n{tests} tests: {unstable} outside max({TOLERANCE_FRACTION:.0%}, "
        f"{TOLERANCE_BYTES // MiB} MiB) of their run alone, {over} over a limit "
        f"{LIMIT_MARGIN:.0%} above it, {gated} flagged by peak:+10%,+1MiB on identical runs"
    )
    return 0 if unstable == over == gated == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
