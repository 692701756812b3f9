from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pytest
from report_builders import entry, inventory, report

from pytest_hwbench.report.html import (
    INSTALL_HINT,
    MissingExtraError,
    plotly_js,
    render_html,
    write_html,
)

pytest.importorskip("plotly", reason="the html extra (plotly) is not installed")

EVIL = "t.py::test_x[</script><script>window.__pwned=1</script><!--]"


def data_scripts(page: str) -> dict[str, dict[str, object]]:
    found = re.findall(r'<script type="application/json" id="(d-\d+)">(.*?)</script>', page, re.S)
    return {key: json.loads(text) for key, text in found}


def test_page_is_self_contained_with_plotly_once() -> None:
    page = render_html(report(entry("a"), entry("b", device="cuda", growth=None)))
    assert page.count(plotly_js()[:200]) == 1
    ours = page.replace(plotly_js(), "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", ours)
    assert "Content-Security-Policy" in page
    assert "default-src 'none'" in page


def test_every_report_string_is_escaped() -> None:
    machine = inventory(host="<img src=x onerror=alert(1)>")
    machine["backends"][1]["reason"] = "<b>no</b>"
    data = report(
        entry(EVIL, marks=("<script>alert(2)</script>", "-->")),
        entry("t.py::test_skip", outcome="skipped", growth=None, skip_reason='"><i>x</i>'),
        machine=machine,
    )
    page = render_html(data, charts=False)
    assert "<script>window.__pwned" not in page
    assert "<img src=x" not in page
    assert "<b>no</b>" not in page
    assert "&lt;b&gt;no&lt;/b&gt;" in page
    assert "&quot;&gt;&lt;i&gt;x&lt;/i&gt;" in page
    # Inside the JSON data elements nothing can end the script or open a comment.
    for match in re.finditer(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S):
        assert "<" not in match.group(1)
        assert ">" not in match.group(1)
    scripts = data_scripts(page)
    assert scripts["d-0"]["nodeid"] == EVIL
    memory = scripts["d-0"]["memory"]
    assert isinstance(memory, dict)
    assert memory["marks"][0]["label"] == "<script>alert(2)</script>"
    assert page.count("<script") == len(scripts) + 1  # data elements, and our own code


def test_rows_carry_sortable_values() -> None:
    page = render_html(
        report(entry("a", growth=3 * 2**20, duration_s=0.25), entry("b", growth=None, exact=False)),
        charts=False,
    )
    assert '<td class="num" data-v="3145728">3.0 MiB</td><td>exact</td>' in page
    assert 'data-v="0.25">250.00 ms</td>' in page
    assert '<td class="num" data-v="">-</td><td>-</td>' in page


def test_timelines_are_embedded_per_test_for_lazy_charts() -> None:
    page = render_html(report(entry("a", samples=7, series=("allocated", "reserved"))))
    memory = data_scripts(page)["d-0"]["memory"]
    assert isinstance(memory, dict)
    assert len(memory["t"]) == 7
    assert set(memory["values"]) == {"allocated", "reserved"}
    assert memory["primary"] == "allocated"
    # Charts are drawn by the page's script when a row opens, not at load.
    assert "Plotly.newPlot" in page
    assert page.index("Plotly.newPlot") > page.index('id="d-0"')


def test_a_benchmark_row_shows_its_throughput_and_labels_close_together_stack() -> None:
    throughput = {
        "flops_per_s": 1.234e12,
        "dtype": "bf16",
        "fraction_of_peak_flops": 0.41,
        "bytes_per_s": 4.5e11,
    }
    page = render_html(report(entry("a", benchmark={"median": 0.003, "throughput": throughput})))
    data = data_scripts(page)["d-0"]
    assert data["throughput"] == "1.23 TFLOP/s (41% of the bf16 peak), 450 GB/s"
    assert "d.throughput" in page  # shown beside the median when the row opens
    # Mark labels go up a row when the last label on theirs is too close (the page's script).
    assert "rowEnds" in page
    assert "yshift: row * 15" in page


def test_without_plotly_the_page_says_how_to_get_charts() -> None:
    page = render_html(report(entry("a")), charts=False)
    assert 'id="no-plotly" hidden' in page
    assert html.escape(INSTALL_HINT) in page
    assert "plotly.js" not in page[:5000]


def test_missing_plotly_raises_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    with pytest.raises(MissingExtraError, match=re.escape(INSTALL_HINT)):
        render_html(report(entry("a")))
    assert "<html" in render_html(report(entry("a")), charts=False)


def test_incomplete_and_inventoryless_reports() -> None:
    page = render_html(report(entry("a"), complete=False, machine={}), charts=False)
    assert "This report is incomplete" in page
    assert "No hardware inventory" in page
    hosts = {"hosts": {"vm/gw0": inventory("vm"), "other/gw1": inventory("other")}}
    page = render_html(report(entry("a"), machine=hosts), charts=False)
    assert "<h3>vm/gw0</h3>" in page
    assert "<h3>other/gw1</h3>" in page


def test_non_finite_numbers_do_not_break_the_data() -> None:
    data = report(entry("a", duration_s=0.1))
    data["tests"][0]["memory"]["interval_s"] = float("nan")
    scripts = data_scripts(render_html(data, charts=False))
    assert scripts["d-0"]["memory"]["interval_s"] is None  # type: ignore[index]


def test_write_html_returns_the_size(tmp_path: Path) -> None:
    path = tmp_path / "out.html"
    size = write_html(report(entry("ü::test")), path, charts=False)
    assert size == path.stat().st_size
    assert not list(tmp_path.glob(".*.tmp"))


def test_find_chromium_is_none_without_one_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdp_browser import find_chromium

    monkeypatch.setenv("PATH", "")
    assert find_chromium() is None
