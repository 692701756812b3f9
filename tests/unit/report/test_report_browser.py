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
