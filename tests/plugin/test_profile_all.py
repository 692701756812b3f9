"""--hw-profile-all: every test measured, with or without a report to hold the timelines."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from pytest_hwbench.hardware.cpu import clear_refs_writable
from pytest_hwbench.hardware.peak_counters import holders_of
from pytest_hwbench.metrics.memory._host import RSSPeakProbe, vmhwm_counter
from pytest_hwbench.metrics.memory.stretch import StretchResult
from pytest_hwbench.report.loader import validate_report
from pytest_hwbench.report.model import finite_json

MiB = 2**20

SUITE = """
import mmap

def allocate(mib):
    # Fresh pages (an anonymous mapping): malloc may reuse heap memory that is resident already.
    buffer = mmap.mmap(-1, mib * 2**20)
    for i in range(0, len(buffer), 4096):
        buffer[i] = 1
    return len(buffer)

def test_big():
    allocate(48)

def test_small():
    pass
"""


def _summary_growth(lines: list[str], test: str) -> float:
    """The growth the terminal summary shows for `test`, in MiB."""
    line = next(x for x in lines if x.rstrip().endswith(f"::{test}"))
    match = re.search(r"([+-][\d.]+) (KiB|MiB|B)\s+peak", line)
    assert match is not None, line
    scale = {"B": 1 / MiB, "KiB": 1 / 1024, "MiB": 1.0}[match.group(2)]
    return float(match.group(1)) * scale


@pytest.mark.skipif(not clear_refs_writable(), reason="exact CPU peaks need clear_refs (Linux)")
def test_profile_all_without_a_report_still_gives_exact_peaks_everywhere(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    junit = pytester.path / "junit.xml"
    lean = pytester.runpytest("--hw-profile-all", f"--junitxml={junit}")
    lean.assert_outcomes(passed=2)
    lean.stdout.fnmatch_lines(["*hwbench: peak memory growth*", "cpu (top 2):"])
    assert _summary_growth(lean.outlines, "test_big") >= 46
    assert "rss (exact)" in next(x for x in lean.outlines if x.endswith("::test_big"))
    properties = {
        (case.get("name"), prop.get("name")): int(prop.get("value") or 0)
        for case in ET.parse(junit).getroot().iter("testcase")
        for prop in case.iter("property")
    }
    assert properties[("test_big", "hw_peak_delta_bytes:rss")] >= 46 * MiB
    assert properties[("test_small", "hw_peak_bytes:rss")] > 0
    # test_big's freed pages left the mark 48 MiB above the RSS: not test_small's peak.
    assert properties[("test_small", "hw_peak_delta_bytes:rss")] < 16 * MiB
    # The run's probe closed with it: nothing of it stays registered for later resets.
    registered = holders_of([vmhwm_counter()])
    assert not [holder for holder in registered if isinstance(holder, RSSPeakProbe)]

    # With a report every test gets a metric and a timeline: the same exact numbers.
    report_path = pytester.path / "hw.json"
    full = pytester.runpytest("--hw-profile-all", f"--hw-report={report_path}")
    full.assert_outcomes(passed=2)
    assert _summary_growth(full.outlines, "test_big") >= 46
    entries = {e["nodeid"].split("::")[-1]: e for e in json.loads(report_path.read_text())["tests"]}
    rss = entries["test_big"]["memory"]["series"]["rss"]
    assert rss["exact_peak"] is True
    assert rss["peak_delta_bytes"] >= 46 * MiB
    assert entries["test_big"]["memory"]["timeline"]["t"]


@pytest.mark.skipif(not clear_refs_writable(), reason="exact CPU peaks need clear_refs (Linux)")
def test_summary_keeps_only_the_top_n_growths_in_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_sizes="""
        import mmap

        def allocate(mib):
            buffer = mmap.mmap(-1, mib * 2**20)
            for i in range(0, len(buffer), 4096):
                buffer[i] = 1

        def test_8(): allocate(8)
        def test_40(): allocate(40)
        def test_none(): pass
        def test_24(): allocate(24)
        def test_16(): allocate(16)
        """
    )
    result = pytester.runpytest("--hw-profile-all", "--hw-summary=2")
    result.assert_outcomes(passed=5)
    start = result.outlines.index("cpu (top 2):")
    rows = result.outlines[start + 1 : start + 3]
    assert [row.rsplit("::", 1)[-1] for row in rows] == ["test_40", "test_24"], result.outlines
    assert not any(line.endswith(("::test_16", "::test_8")) for line in result.outlines)


@pytest.mark.skipif(not clear_refs_writable(), reason="exact CPU peaks need clear_refs (Linux)")
def test_a_report_keeps_a_timeline_only_for_tests_that_outlive_an_interval(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import mmap
        import time

        import pytest

        def test_short():
            pass

        def test_long():
            buffer = mmap.mmap(-1, 24 * 2**20)
            for i in range(0, len(buffer), 4096):
                buffer[i] = 1
            time.sleep(0.3)  # after a short test the sampler looks in only every 0.1 s

        @pytest.mark.memory_limit("1MiB")
        def test_over():
            buffer = mmap.mmap(-1, 8 * 2**20)
            for i in range(0, len(buffer), 4096):
                buffer[i] = 1
        """
    )
    report_path = pytester.path / "hw.json"
    result = pytester.runpytest(
        "--hw-profile-all", "--hw-interval=5ms", f"--hw-report={report_path}"
    )
    result.assert_outcomes(passed=2, failed=1)
    entries = {e["nodeid"].split("::")[-1]: e for e in json.loads(report_path.read_text())["tests"]}
    short = entries["test_short"]["memory"]
    assert short["timeline"] is None  # ended inside one interval: start, exact peak and end
    assert short["samples"] == 2
    rss = short["series"]["rss"]
    assert rss["exact_peak"] is True
    assert rss["start_bytes"] <= rss["peak_bytes"]
    assert rss["end_bytes"] <= rss["peak_bytes"]
    # Format 2 leaves out what the entry says already: the device, the platform, min and sampled.
    assert "device" not in short
    assert "min_bytes" not in rss
    assert (entries["test_short"]["platform"], entries["test_short"]["device"]) == ("cpu", "cpu")
    long = entries["test_long"]["memory"]
    assert long["series"]["rss"]["peak_delta_bytes"] >= 23 * MiB
    assert long["device"] == {"platform": "cpu", "index": 0, "device": "cpu"}
    assert long["series"]["rss"]["min_bytes"] <= long["series"]["rss"]["start_bytes"]
    assert long["samples"] >= 10
    assert len(long["timeline"]["t"]) == len(long["timeline"]["series"]["rss"]) >= 10
    assert long["timeline"]["t"] == sorted(long["timeline"]["t"])
    over = entries["test_over"]
    assert over["failure"]["kind"] == "memory_limit"
    assert over["memory"]["series"]["rss"]["peak_delta_bytes"] >= 7 * MiB


def test_every_entry_of_a_report_is_the_compact_json_of_its_own_content(
    pytester: pytest.Pytester,
) -> None:
    """Entries written straight to text (the common short ones) read back byte for byte.

    Node ids and reasons with quotes, backslashes and non-ASCII characters; every outcome; tests
    measured short, measured long, and not measured at all.
    """
    pytester.makepyfile(
        test_shapes=r"""
        import time

        import pytest

        @pytest.mark.parametrize("text", ['quote"s', "back\\slash", "Größe 🚀", "tab\tnew\nline"])
        def test_ids(text):
            pass

        def test_skipped_in_the_body():
            pytest.skip('not here: "quoted" & Größe')

        @pytest.mark.skip(reason="never")
        def test_skipped_at_setup():
            pass

        @pytest.mark.xfail(reason="known")
        def test_xfailed():
            assert False

        @pytest.mark.xfail(reason="known")
        def test_xpassed():
            pass

        def test_failed():
            assert 1 == 2

        @pytest.mark.hardware("cuda")
        def test_elsewhere():
            pass

        def test_long():
            time.sleep(0.3)
        """
    )
    # Node ids as written, not ASCII-escaped: a report must carry any text a node id can hold.
    pytester.makeini(
        "[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n"
    )
    report_path = pytester.path / "hw.json"
    result = pytester.runpytest(
        "--hw-profile-all", "--hw-interval=5ms", f"--hw-report={report_path}"
    )
    result.assert_outcomes(passed=5, skipped=3, failed=1, xfailed=1, xpassed=1)
    text = report_path.read_text(encoding="utf-8")
    report = json.loads(text)
    assert finite_json(report) == text
    outcomes = {e["nodeid"].split("::")[-1]: e["outcome"] for e in report["tests"]}
    assert outcomes["test_xpassed"] == "xpassed"
    assert outcomes["test_ids[Größe 🚀]"] == "passed"
    by_name = {e["nodeid"].split("::")[-1]: e for e in report["tests"]}
    assert by_name["test_skipped_in_the_body"]["skip_reason"] == 'not here: "quoted" & Größe'
    assert by_name["test_skipped_in_the_body"]["memory"]["series"]["rss"]["exact_peak"] is True
    assert by_name["test_skipped_at_setup"]["memory"] is None
    assert by_name["test_long"]["memory"]["timeline"] is not None
    assert by_name["test_failed"]["failure"]["kind"] == "exception"
    validate_report(report, str(report_path))
    # Written straight to text or from dicts, an entry has one shape: the same keys, in order.
    fast, from_dicts = by_name["test_skipped_in_the_body"], by_name["test_failed"]
    assert (list(fast)[-1], list(from_dicts)[-1]) == ("skip_reason", "failure")
    assert list(fast)[:-1] == list(from_dicts)[:-1]
    dict_form = StretchResult(1, 2, 3, True, 0.5, 0.005).to_memory()
    assert list(fast["memory"]) == list(dict_form)
    assert fast["memory"]["interval_s"] == dict_form["interval_s"]
    assert list(fast["memory"]["series"]["rss"]) == list(dict_form["series"]["rss"])


def test_a_trivial_tests_entry_takes_at_most_400_bytes(pytester: pytest.Pytester) -> None:
    """A report of thousands of short tests grows by one short entry each: start, exact peak and
    end, no timeline, nothing the machine inventory already says. Beside its node id and the
    host's name an entry takes ~365 bytes: 400 with a 30-character node id on host "vm"
    (plugin_overhead.py's trivial tests: ~377 bytes)."""
    pytester.makepyfile(
        test_trivial_suite="".join(
            f"def test_{i:03d}():\n    assert {i} + 1 > {i}\n\n" for i in range(50)
        )
    )
    report_path = pytester.path / "hw.json"
    # An interval no test outlives, even on a busy CI machine: every entry is the short form.
    result = pytester.runpytest(
        "--hw-profile-all", "--hw-interval=5s", f"--hw-report={report_path}"
    )
    result.assert_outcomes(passed=50)
    entries = json.loads(report_path.read_text(encoding="utf-8"))["tests"]
    assert len(entries) == 50
    assert all(entry["memory"]["timeline"] is None for entry in entries)
    fixed_parts = [
        len(finite_json(entry)) - len(entry["nodeid"]) - len(entry["host"] or "")
        for entry in entries
    ]
    assert max(fixed_parts) <= 365, fixed_parts
