"""The picture in docs/matrix.md: `make demo`'s report beside the same report rewritten.

This machine has no GPU, so the second machine is this report rewritten as an H200 box would
have written it: its label, and each CUDA test, skipped here, passed with its CPU twin's
figures scaled (memory halved, time a tenth). The page says nothing of the rewriting; the
caption in the docs does. The browser test checks the page built this way.

Usage (from the repository root)::

    .venv/bin/python tools/matrix_demo.py                  # runs the example suites first
    .venv/bin/python tools/matrix_demo.py reports/hw-report.json -o docs/matrix-demo.png
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GPU_LABEL = "H200 \u00d71 \u00b7 driver 580"


_BYTE_FIGURES = ("start_bytes", "end_bytes", "min_bytes", "peak_bytes", "peak_delta_bytes",
                 "sampled_peak_bytes")  # fmt: skip


def _as_allocator(series: dict[str, Any], factor: float) -> dict[str, Any]:
    """A CPU entry's ``rss`` figures as CUDA's ``allocated`` ones, scaled by `factor`."""
    stats = dict(series.get("rss") or {})
    for key in _BYTE_FIGURES:
        if isinstance(stats.get(key), int):
            stats[key] = int(stats[key] * factor)
    stats["exact_peak"] = True  # CUDA's allocator keeps a high-water mark
    return {"allocated": stats}


def _scaled_series(memory: dict[str, Any], factor: float) -> dict[str, Any]:
    """The entry's memory as the CUDA allocator's, its figures scaled, its timeline dropped."""
    memory = copy.deepcopy(memory)
    memory["timeline"] = None
    memory["series"] = _as_allocator(memory.get("series") or {}, factor)
    for scope in memory.get("scopes") or ():
        scope["series"] = _as_allocator(scope.get("series") or {}, factor)
    if "primary_series" in memory:
        memory["primary_series"] = "allocated"
    return memory


def as_gpu_machine(report: dict[str, Any]) -> dict[str, Any]:
    """`report` as an H200 box would have written it (see the module's docstring)."""
    rewritten = copy.deepcopy(report)
    rewritten.setdefault("run", {})["machine_label"] = GPU_LABEL
    by_id = {entry["nodeid"]: entry for entry in report["tests"]}
    for entry in rewritten["tests"]:
        if entry.get("platform") != "cuda" or entry.get("outcome") != "skipped":
            continue
        twin = by_id.get(entry["nodeid"].replace("[cuda", "[cpu"))
        if twin is None or twin.get("outcome") != "passed":
            continue
        entry.update(copy.deepcopy(twin))
        entry["nodeid"] = twin["nodeid"].replace("[cpu", "[cuda")
        entry["platform"] = entry["device"] = "cuda"
        entry["duration_s"] = twin["duration_s"] / 10
        if isinstance(twin.get("memory"), dict):
            entry["memory"] = _scaled_series(twin["memory"], 0.5)
            entry["memory"]["device"] = {"platform": "cuda", "index": 0, "device": "cuda:0"}
            entry["memory"]["platform"] = "cuda"
    return rewritten


def build_page(report_path: Path, out: Path) -> Path:
    """The matrix page of `report_path` and its H200 rewrite, written to `out`."""
    from pytest_hwbench.report.compare import load_for_compare
    from pytest_hwbench.report.matrix import build_matrix

    report = load_for_compare(str(report_path))
    pair = [(report_path.name, report), ("h200.json", as_gpu_machine(dict(report)))]
    out.write_text(build_matrix(pair).render("html"), encoding="utf-8")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, help="make demo's report (default: run)")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "matrix-demo.png")
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "unit" / "report"))
    from cdp_browser import Browser, find_chromium

    executable = find_chromium()
    if executable is None:
        sys.stderr.write("matrix_demo: no chromium on PATH to draw the page with\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="hwbench-matrix-demo-") as tmp:
        report_path = options.report
        if report_path is None:
            report_path = Path(tmp) / "hw-report.json"
            subprocess.run(
                [sys.executable, "-m", "pytest", "example_suites", "-q", "-p", "no:cacheprovider",
                 f"--hw-report={report_path}"],
                cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        page = build_page(report_path, Path(tmp) / "matrix.html")
        with Browser(executable, width=1100, height=720) as browser:
            browser.load(page.as_uri())
            browser.evaluate("document.querySelector('#matrix tr.test').click()")
            browser.screenshot(options.output)
            errors = browser.errors()
    if errors:
        sys.stderr.write(f"matrix_demo: the page logged errors: {json.dumps(errors)}\n")
        return 1
    print(f"wrote {options.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
