"""How the report tools scale: compare, HTML and trace on large synthetic reports.

Generates two synthetic reports (valid against the schema; default 10,000 tests with 1,000
samples each; one in ten tests is GPU-like with ``allocated`` and ``reserved`` series), the second
a perturbed rerun of the first with tests added, removed, skipped and a few regressions, then
measures, each as a subprocess of the ``hwbench`` command (wall clock, interpreter start
included):

1. ``hwbench compare BASE NEW --fail-on peak:+10%`` (the goal: under 5 s at full size);
2. ``hwbench html NEW -o page.html``: generation time and page size;
3. the page in headless chromium, when one is on PATH: time to the load event, to open the first
   test's row and draw its chart, and to sort by peak growth; console errors are counted;
4. ``hwbench trace`` of a tenth of the tests (a full-size trace has ten million counter events);
5. ``hwbench matrix`` of many machines' reports (default 20 reports x 2,000 tests, each its own
   machine label; the goal: under 5 s), to markdown and to its page (opened in chromium: a
   row's bars, a sort, the machine filter);
6. ``hwbench matrix`` with history: 2 runners x 10 commits x 2,000 timed tests, one test in
   50 made 1.3x slower two thirds along: the steps it finds, the page with a row's history.

Run from the repository root::

    .venv/bin/python benchmarks/report_scale.py                       # 10,000 x 1,000
    .venv/bin/python benchmarks/report_scale.py --tests 2000 --samples 500
    .venv/bin/python benchmarks/report_scale.py --quick               # smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HWBENCH = [sys.executable, "-m", "pytest_hwbench"]


def machine() -> dict[str, Any]:
    """A small inventory: a CPU and one CUDA device."""
    cpu = {
        "properties": {"backend": "cpu", "index": 0, "name": "Synthetic CPU", "vendor": "none",
                       "total_memory_bytes": 64 * 2**30},
        "capabilities": ["device_memory_info", "peak_memory_reset"],
    }  # fmt: skip
    gpu = {
        "properties": {"backend": "cuda", "index": 0, "name": "Synthetic GPU", "vendor": "none",
                       "total_memory_bytes": 80 * 2**30, "compute_capability": "9.0"},
        "capabilities": ["device_memory_info", "peak_memory_reset", "exact_peak"],
    }  # fmt: skip
    return {
        "host": "synthetic",
        "platform": "Linux-synthetic",
        "python": "3.11",
        "pytest_hwbench": "0.1.0",
        "torch": {"version": "2.13.0", "cuda": "12.8", "hip": None, "xpu": None},
        "backends": [
            {"name": "cpu", "torch_device_type": "cpu", "available": True, "reason": None,
             "device_count": 1, "devices": [cpu]},
            {"name": "cuda", "torch_device_type": "cuda", "available": True, "reason": None,
             "device_count": 1, "devices": [gpu]},
        ],
    }  # fmt: skip


def series_values(rng: random.Random, samples: int, start: int, growth: int) -> list[int]:
    """A ramp to a peak and back down, with page-sized noise: what an allocating test draws."""
    peak_at = rng.randint(samples // 4, 3 * samples // 4)
    values = []
    for i in range(samples):
        shape = i / peak_at if i <= peak_at else max(0.2, 1 - (i - peak_at) / samples)
        noise = rng.randrange(0, 64) * 4096
        values.append(start + int(growth * shape) // 4096 * 4096 + noise)
    return values


def test_entry(rng: random.Random, index: int, samples: int, scale: float) -> dict[str, Any]:
    """One measured test entry with a timeline of `samples` samples."""
    gpu = index % 10 == 0
    platform = "cuda" if gpu else "cpu"
    interval = 0.001
    t = [round(i * interval + rng.random() * 1e-4, 6) for i in range(samples)]
    names = ("allocated", "reserved") if gpu else ("rss",)
    base_growth = int((1 + index % 37) * 2**20 * scale)
    timeline_series: dict[str, list[int]] = {}
    stats: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        start = (0 if gpu else 400 * 2**20) + k * 2**20
        values = series_values(rng, samples, start, base_growth * (k + 1))
        timeline_series[name] = values
        peak = max(values)
        stats[name] = {
            "start_bytes": values[0], "end_bytes": values[-1], "min_bytes": min(values),
            "peak_bytes": peak, "peak_delta_bytes": peak - values[0],
            "sampled_peak_bytes": peak, "exact_peak": True,
        }  # fmt: skip
    marks = [
        {"t": t[samples // 3], "label": "forward",
         "values": {n: v[samples // 3] for n, v in timeline_series.items()}},
        {"t": t[2 * samples // 3], "label": "backward",
         "values": {n: v[2 * samples // 3] for n, v in timeline_series.items()}},
    ]  # fmt: skip
    duration = samples * interval * (0.95 + 0.1 * rng.random()) * scale
    return {
        "nodeid": f"tests/test_models.py::test_case_{index:05d}[{platform}]",
        "outcome": "passed",
        "platform": platform,
        "device": platform,
        "duration_s": duration,
        "worker": None,
        "host": "synthetic",
        "memory": {
            "device": {"platform": platform, "index": 0, "device": platform},
            "running": False, "interval_s": interval, "sampler": "thread", "samples": samples,
            "duration_s": t[-1], "series": stats, "warnings": [], "platform": platform,
            "primary_series": names[0],
            "timeline": {
                "interval_s": interval, "sampler": "thread", "max_samples": 10000,
                "samples_seen": samples, "downsampled": False, "t": t,
                "series": timeline_series, "marks": marks,
            },
        },
        "benchmark": None,
    }  # fmt: skip


def synthetic_report(tests: int, samples: int, *, seed: int, rerun: bool) -> dict[str, Any]:
    """A report of `tests` measured tests; `rerun` perturbs it as a later run would differ."""
    rng = random.Random(seed)
    entries = []
    for index in range(tests):
        if rerun and index % 500 == 499:
            continue  # removed in the new run
        scale = 1.0
        if rerun:
            scale = 1.3 if index % 250 == 7 else rng.uniform(0.97, 1.03)
        entry = test_entry(rng, index, samples, scale)
        if rerun and index % 1000 == 3:
            entry.update(outcome="skipped", memory=None, skip_reason="synthetic skip")
        entries.append(entry)
    if rerun:
        entries += [test_entry(rng, tests + i, samples, 1.0) for i in range(max(1, tests // 1000))]
    return {
        "schema": "pytest-hwbench/1",
        "created": "2026-11-25T00:00:00+00:00",
        "pytest_hwbench": "0.1.0",
        "complete": True,
        "machine": machine(),
        "tests": entries,
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write as the plugin does (compact), in one string: json.dump's chunks are much slower."""
    path.write_text(json.dumps(report, separators=(",", ":")), encoding="utf-8")


def validate(report: dict[str, Any]) -> str:
    """Check a slice of the report against the shipped JSON Schema, if jsonschema is here."""
    try:
        import jsonschema
    except ImportError:
        return "not validated (jsonschema is not installed)"
    from pytest_hwbench.report import schema_path

    sample = {**report, "tests": report["tests"][:50]}
    jsonschema.validate(sample, json.loads(schema_path().read_text()))
    return "its first 50 tests validate against the schema"


def run(args: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``hwbench ARGS``; return its wall seconds and the process."""
    start = time.perf_counter()
    proc = subprocess.run([*HWBENCH, *args], capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def load_browser_helper() -> ModuleType | None:
    """The tests' DevTools client (tests/unit/report/cdp_browser.py), loaded by path."""
    path = ROOT / "tests" / "unit" / "report" / "cdp_browser.py"
    spec = importlib.util.spec_from_file_location("cdp_browser", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def browser_figures(page: Path) -> list[tuple[str, str]]:
    """Load `page` in headless chromium: load, first chart, sort, errors."""
    cdp = load_browser_helper()
    exe = cdp.find_chromium() if cdp else None
    if cdp is None or exe is None:
        return [("page in headless chromium", "skipped: no chromium on PATH")]
    with cdp.Browser(exe) as browser:
        load_s = browser.load(page.as_uri(), timeout=300)
        ready = browser.evaluate("document.body.dataset.ready === '1'")
        start = time.perf_counter()
        browser.evaluate("document.querySelector('tr.test').click()")
        browser.wait_for("document.querySelector('#tests .main-svg')", timeout=60)
        chart_s = time.perf_counter() - start
        start = time.perf_counter()
        browser.evaluate("document.querySelectorAll('#tests th')[3].click()")
        sort_s = time.perf_counter() - start
        rows = browser.evaluate("document.querySelectorAll('tr.test').length")
        errors = browser.errors()
    return [
        ("page load (to the load event)", f"{load_s:.2f} s"),
        ("page script ran", "yes" if ready else "NO"),
        ("open first row and draw its chart", f"{chart_s * 1e3:.0f} ms"),
        (f"sort {rows} rows by peak growth", f"{sort_s * 1e3:.0f} ms"),
        ("console errors", str(len(errors)) + (f": {errors[:3]}" if errors else "")),
    ]


def matrix_page_figures(page: Path, history: bool) -> list[tuple[str, str]]:
    """Load a matrix page in headless chromium: load, a row's bars (and history), sort."""
    cdp = load_browser_helper()
    exe = cdp.find_chromium() if cdp else None
    if cdp is None or exe is None:
        return [("  page in headless chromium", "skipped: no chromium on PATH")]
    drawn = "svg.history" if history else "svg.bars"
    with cdp.Browser(exe) as browser:
        load_s = browser.load(page.as_uri(), timeout=300)
        ready = browser.evaluate("document.body.dataset.ready === '1'")
        start = time.perf_counter()
        browser.evaluate("document.querySelector('#matrix tr.test').click()")
        browser.wait_for(f"document.querySelector('#chart-0 {drawn}')", timeout=60)
        chart_s = time.perf_counter() - start
        start = time.perf_counter()
        browser.evaluate("document.querySelectorAll('#matrix th')[1].click()")
        sort_s = time.perf_counter() - start
        start = time.perf_counter()
        browser.evaluate(
            "const m = document.getElementById('machines'); m.value = '01';"
            "m.dispatchEvent(new Event('input'))"
        )
        filter_s = time.perf_counter() - start
        rows = browser.evaluate("document.querySelectorAll('#matrix tr.test').length")
        errors = browser.errors()
    what = "bars and history line" if history else "bars"
    return [
        ("  page load (to the load event)", f"{load_s:.2f} s" + ("" if ready else ", NO SCRIPT")),
        (f"  open the first row, draw its {what}", f"{chart_s * 1e3:.0f} ms"),
        (f"  sort {rows} rows by a column", f"{sort_s * 1e3:.0f} ms"),
        ("  filter the columns by machine", f"{filter_s * 1e3:.0f} ms"),
        ("  console errors", str(len(errors)) + (f": {errors[:3]}" if errors else "")),
    ]


def _matrix_run(folder: Path, fmt: str, out: Path) -> tuple[float, str]:
    seconds, proc = run(["matrix", str(folder), "--format", fmt, "-o", str(out)])
    said = proc.stdout.strip() if proc.returncode == 0 else f"failed: {proc.stderr.strip()[:200]}"
    return seconds, said


def matrix_figures(
    folder: Path, reports: int, tests: int, browser: bool = True
) -> list[tuple[str, str]]:
    """`hwbench matrix` over `reports` machines' reports of `tests` tests each (100 samples)."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(reports):
        report = synthetic_report(tests, 100, seed=100 + number, rerun=False)
        report["run"] = {"machine_label": f"machine {number:02d}"}
        write_report(report, folder / f"machine-{number:02d}.json")
    seconds, said = _matrix_run(folder, "markdown", folder.parent / "matrix.md")
    goal = " (goal < 5 s)" if reports >= 20 and tests >= 2_000 else ""
    page = folder.parent / "matrix.html"
    page_s, page_said = _matrix_run(folder, "html", page)
    rows = [
        (f"hwbench matrix ({reports} reports x {tests} tests)", f"{seconds:.2f} s{goal}"),
        ("  said", said[:90]),
        ("hwbench matrix --format html", f"{page_s:.2f} s, {_size(page)}"),
    ]
    if browser and page.exists():
        rows += matrix_page_figures(page, history=False)
    elif not page.exists():
        rows.append(("  said", page_said[:90]))
    return rows


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB" if path.exists() else "not written"


def history_figures(
    folder: Path, machines: int, commits: int, tests: int, browser: bool = True
) -> list[tuple[str, str]]:
    """`hwbench matrix` of `machines` runners' reports over `commits` commits each.

    Every test is timed (a median that wanders by +-1% from run to run); one test in 50
    gets 1.3x slower from the commit two thirds of the way along: the steps to find.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stepped_from = 2 * commits // 3
    for runner in range(machines):
        base = synthetic_report(tests, 10, seed=500 + runner, rerun=False)
        for commit in range(commits):
            rng = random.Random(commit * 1000 + runner)
            entries = []
            for index, entry in enumerate(base["tests"]):
                median = 1e-3 * (1 + index % 17) * rng.uniform(0.99, 1.01)
                if index % 50 == 7 and commit >= stepped_from:
                    median *= 1.3
                entries.append({**entry, "benchmark": {
                    "timed": True, "unit": "seconds", "median": median, "min": median,
                    "max": median, "mean": median, "stddev": 0.0, "iqr": median * 0.01,
                    "rounds": 20, "iterations": 1}})  # fmt: skip
            report = {**base, "tests": entries, "created": f"2026-11-{commit + 1:02d}T12:00:00Z"}
            report["run"] = {
                "machine_label": f"runner {runner:02d}",
                "git": {"commit": hashlib.sha1(b"%d" % commit).hexdigest(), "branch": "main",
                        "committed": f"2026-11-{commit + 1:02d}T10:00:00+00:00"},
            }  # fmt: skip
            write_report(report, folder / f"runner-{runner:02d}-{commit:02d}.json")
    expected = sum(1 for index in range(tests) if index % 50 == 7) * machines
    seconds, _ = _matrix_run(folder, "table", folder.parent / "history.txt")
    _matrix_run(folder, "json", folder.parent / "history.json")
    try:
        records = json.loads((folder.parent / "history.json").read_text())
    except (OSError, ValueError):
        records = []
    made = {r["test"] for r in records if int(r["test"].rsplit("_", 1)[1][:5]) % 50 == 7}
    stepped = {(r["test"], r["machine"]) for r in records if r["steps"]}
    right = sum(1 for test, _ in stepped if test in made)
    steps = f"{right} of {expected} made, {len(stepped) - right} elsewhere"
    page = folder.parent / "history.html"
    page_s, said = _matrix_run(folder, "html", page)
    rows = [
        (
            f"hwbench matrix history ({machines} machines x {commits} commits x {tests} tests)",
            f"{seconds:.2f} s",
        ),
        ("  step changes found", steps),
        ("hwbench matrix --format html (history)", f"{page_s:.2f} s, {_size(page)}"),
    ]
    if browser and page.exists():
        rows += matrix_page_figures(page, history=True)
    elif not page.exists():
        rows.append(("  said", said[:90]))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument("--quick", action="store_true", help="200 tests x 100 samples")
    parser.add_argument("--no-browser", action="store_true", help="skip the chromium figures")
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--matrix-reports", type=int, default=20, help="reports for matrix (20)")
    parser.add_argument("--matrix-tests", type=int, default=2_000, help="tests each (2,000)")
    parser.add_argument("--history-machines", type=int, default=2, help="runners (2)")
    parser.add_argument("--history-commits", type=int, default=10, help="commits each (10)")
    options = parser.parse_args()
    if options.quick:
        options.tests, options.samples = 200, 100
        options.matrix_reports, options.matrix_tests = 3, 50
        options.history_machines, options.history_commits = 2, 4

    with tempfile.TemporaryDirectory(prefix="hwbench-scale-") as tmp:
        out = options.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        base_path, new_path = out / "base.json", out / "new.json"
        start = time.perf_counter()
        base = synthetic_report(options.tests, options.samples, seed=1, rerun=False)
        validity = validate(base)
        write_report(base, base_path)
        del base
        new = synthetic_report(options.tests, options.samples, seed=2, rerun=True)
        write_report(new, new_path)
        small = {**new, "tests": new["tests"][: max(1, len(new["tests"]) // 10)]}
        write_report(small, out / "tenth.json")
        del new, small
        generate_s = time.perf_counter() - start

        rows: list[tuple[str, str]] = [
            ("reports", f"{options.tests} tests x {options.samples} samples; {validity}"),
            ("report size (base)", f"{base_path.stat().st_size / 2**20:.1f} MiB"),
            ("generating both reports", f"{generate_s:.1f} s"),
        ]
        compare_s, proc = run(["compare", str(base_path), str(new_path), "--fail-on", "peak:+10%"])
        if proc.returncode not in (0, 1):
            sys.stderr.write(proc.stdout + proc.stderr)
            return 1
        verdict = next((line for line in proc.stdout.splitlines() if " compared, " in line), "")
        goal = " (goal < 5 s)" if options.tests >= 10_000 else ""
        rows += [
            ("hwbench compare --fail-on peak:+10%", f"{compare_s:.2f} s{goal}"),
            ("  exit status", f"{proc.returncode}: {verdict[:90]}"),
        ]
        page = out / "page.html"
        html_s, proc = run(["html", str(new_path), "-o", str(page)])
        if proc.returncode != 0:
            rows.append(("hwbench html", f"failed: {proc.stderr.strip()}"))
        else:
            rows += [
                ("hwbench html", f"{html_s:.2f} s"),
                ("  page size", f"{page.stat().st_size / 2**20:.1f} MiB"),
            ]
            if not options.no_browser:
                rows += browser_figures(page)
        trace_s, proc = run(["trace", str(out / "tenth.json"), "-o", str(out / "trace.json")])
        # "wrote PATH (SIZE, N trace events; open it in ...)"
        said = re.search(r"([\d,]+) trace events", proc.stdout)
        events = said.group(1) if proc.returncode == 0 and said else "failed"
        rows.append(
            (
                f"hwbench trace (a tenth: {max(1, options.tests // 10)} tests)",
                f"{trace_s:.2f} s, {events} events, "
                f"{(out / 'trace.json').stat().st_size / 2**20:.1f} MiB",
            )
        )

        browser = not options.no_browser
        rows += matrix_figures(
            out / "machines", options.matrix_reports, options.matrix_tests, browser
        )
        rows += history_figures(
            out / "history", options.history_machines, options.history_commits,
            options.matrix_tests, browser,
        )  # fmt: skip

    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    print("-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    print(f"python {sys.version.split()[0]}, {sys.platform}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
