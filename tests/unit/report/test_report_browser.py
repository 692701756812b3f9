"""The HTML page in a real headless chromium (skipped, with the reason, where none is installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cdp_browser import Browser
from report_builders import entry, report

from pytest_hwbench.report.html import write_html

pytest.importorskip("plotly", reason="the html extra (plotly) is not installed")

EVIL = "t.py::test_x[</script><script>window.__pwned=1</script>]"


def page(tmp_path: Path, *, charts: bool = True) -> str:
    data = report(
        entry("t.py::test_small", growth=2**20, duration_s=0.3),
        entry(EVIL, growth=64 * 2**20, marks=("<img src=x onerror=window.__pwned=2>", "b")),
        entry("t.py::test_gpu[cuda]", device="cuda", growth=3 * 2**30, samples=50, exact=False),
        entry("t.py::test_skipped", outcome="skipped", growth=None),
        entry("t.py::test_unmeasured", growth=None, duration_s=0.1),
    )
    path = tmp_path / "report.html"
    write_html(data, path, charts=charts)
    return path.as_uri()


def test_page_loads_without_errors_and_draws_a_chart(browser: Browser, tmp_path: Path) -> None:
    browser.load(page(tmp_path))
    assert browser.evaluate("document.body.dataset.ready") == "1"
    assert browser.evaluate("document.querySelectorAll('#tests tr.test').length") == 5
    assert browser.evaluate("document.querySelector('.main-svg')") is None  # lazy
    browser.evaluate("document.querySelectorAll('#tests tr.test')[2].click()")
    browser.wait_for("document.querySelector('#tests .main-svg')")
    legend = browser.evaluate(
        "[...document.querySelectorAll('.legendtext')].map(e => e.textContent)"
    )
    assert legend == ["allocated (primary)", "reserved", "marks"]
    assert (
        browser.evaluate("document.querySelector('#tests .ytitle').textContent") == "memory (GiB)"
    )
    # Opening the row with hostile strings draws them as text and runs nothing.
    browser.evaluate("document.querySelectorAll('#tests tr.test')[1].click()")
    browser.wait_for("document.querySelectorAll('#tests .main-svg').length >= 2")
    assert browser.evaluate("window.__pwned === undefined")
    annotations = browser.evaluate(
        "[...document.querySelectorAll('.annotation-text')].map(e => e.textContent)"
    )
    assert "<img src=x onerror=window.__pwned=2>" in annotations
    assert browser.evaluate("document.querySelector('#tests td.id').textContent") == (
        "t.py::test_small"
    )
    assert browser.errors() == []


def test_sort_filter_and_toggle(browser: Browser, tmp_path: Path) -> None:
    browser.load(page(tmp_path))
    ids = "[...document.querySelectorAll('#tests tr.test')].map(r => r.cells[0].textContent)"
    browser.evaluate("document.querySelectorAll('#tests th')[3].click()")  # peak growth, ascending
    assert browser.evaluate(ids)[-3:] == ["t.py::test_small", EVIL, "t.py::test_gpu[cuda]"]
    browser.evaluate("document.querySelectorAll('#tests th')[3].click()")  # descending
    assert browser.evaluate(ids)[0] == "t.py::test_gpu[cuda]"
    # An open row's detail moves with it.
    browser.evaluate("document.querySelector('#tests tr.test').click()")
    browser.evaluate("document.querySelectorAll('#tests th')[0].click()")
    assert browser.evaluate(
        "document.querySelector('tr.detail').previousElementSibling.cells[0].textContent"
    ) == ("t.py::test_gpu[cuda]")
    browser.evaluate(
        "const f = document.getElementById('filter'); f.value = 'skipped';"
        "f.dispatchEvent(new Event('input'))"
    )
    assert (
        browser.evaluate(
            "[...document.querySelectorAll('#tests tr.test')].filter(r => !r.hidden).length"
        )
        == 1
    )
    # Closing a row removes its detail.
    browser.evaluate("document.querySelector('#tests tr.open').click()")
    assert browser.evaluate("document.querySelectorAll('tr.detail').length") == 0
    assert browser.errors() == []


def test_page_without_plotly_says_so(browser: Browser, tmp_path: Path) -> None:
    browser.load(page(tmp_path, charts=False))
    assert browser.evaluate("document.getElementById('no-plotly').hidden") is False
    browser.evaluate("document.querySelectorAll('#tests tr.test')[0].click()")
    assert "written without plotly" in browser.evaluate(
        "document.querySelector('tr.detail').textContent"
    )
    assert browser.errors() == []


def _energy(joules: float, watts: list[float] | None = None) -> dict[str, object]:
    energy: dict[str, object] = {
        "total_joules": joules,
        "duration_s": 0.3,
        "exact": True,
        "domains": {
            "gpu": {"joules": joules, "mean_watts": joules / 0.3, "exact": True,
                    "method": "counter", "peak_watts": max(watts or [0.0])},
        },
    }  # fmt: skip
    if watts is not None:
        energy["power"] = {"t": [0.1 * (i + 1) for i in range(len(watts))], "watts": {"gpu": watts}}
    return energy


def test_power_is_drawn_on_a_second_axis_and_energy_is_a_column(
    browser: Browser, tmp_path: Path
) -> None:
    data = report(
        entry("t.py::test_train[cuda]", device="cuda", growth=2**30,
              energy=_energy(90.0, [250.0, 310.0, 300.0])),
        entry("t.py::test_power_only[cuda]", device="cuda", growth=None,
              energy=_energy(30.0, [100.0, 100.0])),
        entry("t.py::test_no_counter", growth=None,
              energy={"total_joules": None, "unavailable": "no RAPL energy counters here"}),
    )  # fmt: skip
    path = tmp_path / "report.html"
    write_html(data, path)
    browser.load(path.as_uri())
    rows = "document.querySelectorAll('#tests tr.test')"
    cells = browser.evaluate(f"[...{rows}].map(r => r.cells[6].textContent)")
    assert cells == ["90.0 J", "30.0 J", "-"]
    browser.evaluate(f"{rows}[0].click()")
    browser.wait_for("document.querySelector('#tests .main-svg')")
    legend = browser.evaluate(
        "[...document.querySelectorAll('.legendtext')].map(e => e.textContent)"
    )
    assert "power gpu" in legend
    titles = browser.evaluate(
        "[...document.querySelectorAll('.ytitle, .y2title')].map(e => e.textContent)"
    )
    assert titles == ["memory (GiB)", "power (W)"]
    detail = browser.evaluate("document.querySelector('tr.detail').textContent")
    assert "energy 90.0 J (measured, device-wide): gpu 90.0 J (peak 310.0 W)" in detail
    browser.evaluate(f"{rows}[0].click()")  # closed
    browser.evaluate(f"{rows}[1].click()")  # no memory: power alone
    browser.wait_for("document.querySelector('#tests .ytitle')")
    assert browser.evaluate("document.querySelector('#tests .ytitle').textContent") == "power (W)"
    browser.evaluate(f"{rows}[1].click()")
    browser.evaluate(f"{rows}[2].click()")
    detail = browser.evaluate("document.querySelector('tr.detail').textContent")
    assert "energy not measured: no RAPL energy counters here" in detail
    browser.evaluate("document.querySelectorAll('#tests th')[6].click()")  # energy, ascending
    ids = browser.evaluate(f"[...{rows}].map(r => r.cells[0].textContent)")
    assert ids[-2:] == ["t.py::test_power_only[cuda]", "t.py::test_train[cuda]"]
    assert browser.errors() == []


def test_the_matrix_page_sorts_filters_and_draws_a_rows_bars(
    browser: Browser, tmp_path: Path
) -> None:
    from test_report_matrix import _three_machines

    from pytest_hwbench.report.matrix import build_matrix

    machines = _three_machines()
    hostile = machines[0][1]["tests"][0]
    hostile["nodeid"] = EVIL.replace("test_x", "test_matmul") + "[cpu]"
    path = tmp_path / "matrix.html"
    path.write_text(build_matrix(machines).render("html"))
    browser.load(path.as_uri())
    assert browser.evaluate("document.body.dataset.ready") == "1"
    rows = "[...document.querySelectorAll('#matrix tr.test')]"
    assert browser.evaluate(f"{rows}.length") == 5  # the hostile id is a row of its own
    assert browser.evaluate("window.__pwned === undefined")
    heads = browser.evaluate("[...document.querySelectorAll('#matrix th')].map(t => t.textContent)")
    assert heads[2] == "H100 \u00d78 \u00b7 cuda"
    browser.evaluate("document.querySelectorAll('#matrix th')[3].click()")  # CPU box, ascending
    first = browser.evaluate(f"{rows}[0].cells[0].textContent")
    assert first == "t.py::test_matmul"  # the only test the CPU box timed (20 ms)
    browser.evaluate(f"{rows}[0].click()")
    bars = browser.evaluate("document.querySelectorAll('#chart-' + "
                            f"{rows}[0].dataset.i + ' rect').length")  # fmt: skip
    assert bars == 4  # every column but the H100's cpu (its test_matmul is the hostile row)
    browser.evaluate(
        "const f = document.getElementById('filter'); f.value = 'mps_only';"
        "f.dispatchEvent(new Event('input'))"
    )
    assert browser.evaluate(f"{rows}.filter(r => !r.hidden).length") == 1
    assert browser.errors() == []


def test_the_matrix_page_draws_a_cells_history_and_filters_machines(
    browser: Browser, tmp_path: Path
) -> None:
    from test_report_matrix import _history

    from pytest_hwbench.report.matrix import build_matrix

    path = tmp_path / "history.html"
    path.write_text(build_matrix(_history(), baseline="Xeon").render("html"))
    browser.load(path.as_uri())
    assert browser.evaluate("document.body.dataset.ready") == "1"
    rows = "[...document.querySelectorAll('#matrix tr.test')]"
    browser.evaluate(f"{rows}[0].click()")  # test_matmul: 1.5x slower from the fourth commit
    chart = "document.getElementById('chart-0')"
    assert browser.evaluate(f"{chart}.querySelectorAll('svg.history').length") == 1
    dots = browser.evaluate(
        f"[...{chart}.querySelectorAll('svg.history circle')]"
        ".map(c => [c.getAttribute('fill'), c.textContent])"
    )
    assert len(dots) == 6
    assert dots[3] == ["#b00020", "4444444 (2026-11-04): 3.00 ms; step: 2.00 ms -> 3.00 ms "
                       "(1.50\u00d7 slower) at 4444444 (2026-11-04, after 3333333)"]  # fmt: skip
    assert [fill for fill, _ in dots].count("#4a6fa5") == 5
    labels = browser.evaluate(f"[...{chart}.querySelectorAll('svg.history text')]"
                              ".map(t => t.textContent)")  # fmt: skip
    assert labels == ["H100 \u00d78 \u00b7 cuda: 6 runs", "3.00 ms", "2.00 ms",
                      "1111111 2026-11-01", "6666666 2026-11-06"]  # fmt: skip
    browser.evaluate(f"{rows}[0].click()")  # closes it
    browser.evaluate(
        "const m = document.getElementById('machines'); m.value = 'xeon';"
        "m.dispatchEvent(new Event('input'))"
    )
    shown = browser.evaluate("[...document.querySelectorAll('#matrix th')]"
                             ".filter(t => !t.hidden).map(t => t.textContent)")  # fmt: skip
    assert shown == ["test", "Xeon \u00b7 cpu"]
    display = f"[...{rows}[0].cells].map(c => getComputedStyle(c).display)"
    assert browser.evaluate(display) == ["table-cell", "none", "table-cell"]
    browser.evaluate(f"{rows}[0].click()")
    assert browser.evaluate(f"{chart}.querySelectorAll('svg.history').length") == 0
    assert browser.evaluate(f"{chart}.querySelectorAll('svg.bars rect').length") == 1
    assert browser.errors() == []


def test_make_demos_report_beside_another_machine_reads_without_the_docs(
    browser: Browser, tmp_path: Path
) -> None:
    """The page of tools/matrix_demo.py (the picture in docs/matrix.md), from a real run."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root / "tools"))
    try:
        from matrix_demo import GPU_LABEL, build_page
    finally:
        sys.path.remove(str(root / "tools"))
    report = tmp_path / "hw-report.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "example_suites/test_mlp_training.py", "-q",
         "-p", "no:cacheprovider", "-p", "no:xdist", f"--hw-report={report}"],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    page = build_page(report, tmp_path / "matrix.html")
    browser.load(page.as_uri())
    heads = browser.evaluate("[...document.querySelectorAll('#matrix th')].map(t => t.textContent)")
    assert heads[0] == "test"
    assert heads[-1] == f"{GPU_LABEL} \u00b7 cuda"  # machines by name, platforms by name
    rows = browser.evaluate(
        "[...document.querySelectorAll('#matrix tr.test')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    names = [row[0] for row in rows]
    assert names == [
        "example_suites/test_mlp_training.py::test_training_step[32]",
        "example_suites/test_mlp_training.py::test_training_step[256]",
        "example_suites/test_mlp_training.py::test_loss_decreases_over_steps",
    ]  # one row per test, not per platform
    assert all(cell.endswith(("B", "B~")) for row in rows for cell in row[1:])  # sizes
    legend = browser.evaluate("[...document.querySelectorAll('p.muted')].map(p => p.textContent)")
    assert legend[0].startswith("baseline: ")
    assert any(line.startswith("not run on ") and "cuda" in line for line in legend)
    browser.evaluate("document.querySelector('#matrix tr.test').click()")
    assert browser.evaluate("document.querySelectorAll('#chart-0 svg.bars rect').length") == 3
    shot = tmp_path / "matrix.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.errors() == []
