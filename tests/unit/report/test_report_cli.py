"""``hwbench compare | html | trace | export`` as a user runs them: exit codes and messages."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_builders import entry, report

from pytest_hwbench.cli import main

MiB = 2**20
Writer = Callable[[dict[str, Any], str], Path]


@pytest.fixture
def pair(write_report: Writer) -> tuple[Path, Path]:
    base = write_report(report(entry("t.py::a", growth=10 * MiB), entry("t.py::b")), "base.json")
    new = write_report(
        report(entry("t.py::a", growth=12 * MiB), entry("t.py::c"), entry("t.py::b")), "new.json"
    )
    return base, new


def test_compare_exit_0_when_within_thresholds(
    pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, new = pair
    assert main(["compare", str(base), str(new), "--fail-on", "peak:+25%"]) == 0
    out = capsys.readouterr().out
    assert "t.py::a" in out
    assert "+2.0 MiB (+20.0%)" in out
    assert "new (not in base): 1\n  t.py::c (cpu)  passed, peak growth 1.0 MiB" in out
    assert "no test crossed peak:+25%" in out


def test_compare_exit_1_when_a_threshold_is_crossed(
    pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, new = pair
    code = main(["compare", str(base), str(new), "--fail-on", "time:+1s", "--fail-on", "peak:10%"])
    assert code == 1
    out = capsys.readouterr().out
    assert "FAILED t.py::a (cpu): peak growth 10.0 MiB -> 12.0 MiB: +20.0% > +10%" in out


def test_compare_without_thresholds_exits_0(pair: tuple[Path, Path]) -> None:
    assert main(["compare", *map(str, pair)]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("[1, 2", "not JSON"),
        ('{"schema": "pytest-hwbench/0", "tests": []}', "'pytest-hwbench/0' is not supported"),
    ],
)  # fmt: skip
def test_compare_exit_2_names_the_bad_file(
    pair: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["compare", str(pair[0]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hwbench compare: {bad}: ")
    assert message in err


def test_compare_bad_threshold_is_a_usage_error(
    pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["compare", *map(str, pair), "--fail-on", "peak:lots"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "argument --fail-on: bad threshold 'peak:lots'" in err
    assert "peak:+256MiB" in err


def test_html_writes_the_page(
    write_report: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotly", reason="the html extra (plotly) is not installed")
    path = write_report(report(entry("a"), entry("b")), "r.json")
    out_path = tmp_path / "r.html"
    assert main(["html", str(path), "-o", str(out_path)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out_path} (")
    assert "Plotly" in out_path.read_text()


def test_html_without_plotly_names_the_extra(
    write_report: Writer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.offline", None)
    path = write_report(report(entry("a")), "r.json")
    out_path = tmp_path / "r.html"
    assert main(["html", str(path), "-o", str(out_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'pytest-hwbench[html]'" in err
    assert "--no-charts" in err
    assert not out_path.exists()
    assert main(["html", str(path), "-o", str(out_path), "--no-charts"]) == 0
    assert 'id="no-plotly"' in out_path.read_text()


@pytest.mark.parametrize("command", ["html", "trace", "export"])
def test_bad_reports_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    missing = tmp_path / "missing.json"
    extra = ["--format", "github-action-benchmark"] if command == "export" else []
    assert main([command, str(missing), "-o", str(tmp_path / "out"), *extra]) == 2
    assert capsys.readouterr().err == (
        f"hwbench {command}: {missing}: cannot read (No such file or directory)\n"
    )


_HEADER = {
    "schema": "pytest-hwbench/1",
    "created": "2026-01-01T00:00:00+00:00",
    "pytest_hwbench": "0.1.0",
    "complete": True,
    "machine": {},
}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (json.dumps({**_HEADER, "tests": "nope"}), "tests must be array"),
        (json.dumps({**_HEADER, "tests": [{"nodeid": "t"}]}), "tests[0] must contain"),
        (
            json.dumps({**_HEADER, "tests": [{**entry("a"), "outcome": "maybe"}]}),
            "tests[0].outcome must be one of",
        ),
        (
            json.dumps({**_HEADER, "tests": [{**entry("a"), "memory": {"series": []}}]}),
            "tests[0].memory must be",
        ),
        (
            json.dumps({**_HEADER, "tests": [{**entry("a"), "duration_s": float("nan")}]}),
            "NaN is not",
        ),
        ('{"tests": []}', "no 'schema' key"),
    ],
    ids=["tests-not-a-list", "entry-missing-keys", "bad-outcome", "bad-memory", "nan", "no-schema"],
)
def test_every_tool_refuses_what_compare_refuses_with_the_same_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(report(entry("a"))))
    messages = {}
    for command, extra in (
        ("compare", [str(good)]),
        ("html", ["-o", str(tmp_path / "out.html"), "--no-charts"]),
        ("trace", ["-o", str(tmp_path / "out.json")]),
        ("export", ["--format", "github-action-benchmark"]),
    ):
        assert main([command, str(path), *extra]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(f"hwbench {command}: {path}: "), err
        messages[command] = err.removeprefix(f"hwbench {command}: ")
    assert len(set(messages.values())) == 1, messages
    assert problem in messages["compare"]
    assert not list(tmp_path.glob("out*"))


def test_unwritable_output_exits_2(
    write_report: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_report(report(entry("a")), "r.json")
    target = tmp_path / "no" / "such" / "dir" / "trace.json"
    assert main(["trace", str(path), "-o", str(target)]) == 2
    assert f"cannot write {target}" in capsys.readouterr().err


def test_trace_writes_trace_events(
    write_report: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_report(report(entry("a")), "r.json")
    out_path = tmp_path / "trace.json"
    assert main(["trace", str(path), "-o", str(out_path)]) == 0
    events = json.loads(out_path.read_text())["traceEvents"]
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out_path} (")
    assert f"{len(events)} trace events; open it in https://ui.perfetto.dev" in said
    assert {e["ph"] for e in events} == {"M", "X", "C", "i"}


def test_export_to_stdout_and_file(
    write_report: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_report(report(entry("a", growth=5 * MiB)), "r.json")
    assert main(["export", str(path), "--format", "github-action-benchmark"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["value"] == 5 * MiB
    out_path = tmp_path / "bench.json"
    assert (
        main(["export", str(path), "--format", "github-action-benchmark", "-o", str(out_path)]) == 0
    )
    assert json.loads(out_path.read_text()) == printed


def test_export_needs_a_known_format(write_report: Writer) -> None:
    path = write_report(report(), "r.json")
    with pytest.raises(SystemExit) as excinfo:
        main(["export", str(path), "--format", "csv"])
    assert excinfo.value.code == 2


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("info", "recover", "compare", "html", "trace", "export"):
        assert command in out


REAL_SUITE = """
import mmap

import pytest

def test_grows(memory_profile):
    data = mmap.mmap(-1, 8 * 2**20)  # fresh pages: heap memory may be resident already
    for i in range(0, len(data), 4096):
        data[i] = 1
    memory_profile.record_memory("filled </script>")

def test_plain():
    pass

@pytest.mark.hardware("cuda")
def test_gpu():
    pass
"""


@pytest.mark.usefixtures("cpu_only_machine")
def test_every_command_reads_a_real_report(
    pytester: pytest.Pytester, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_real=REAL_SUITE)
    path = tmp_path / "real.json"
    pytester.runpytest(f"--hw-report={path}", "-p", "no:cacheprovider").assert_outcomes(
        passed=2, skipped=1
    )
    capsys.readouterr()
    assert (
        main(["compare", str(path), str(path), "--fail-on", "peak:0", "--fail-on", "time:0"]) == 0
    )
    out = capsys.readouterr().out
    assert "2 compared, 0 new, 0 removed, 1 skipped; no test crossed" in out
    assert main(["html", str(path), "-o", str(tmp_path / "r.html"), "--no-charts"]) == 0
    assert main(["trace", str(path), "-o", str(tmp_path / "t.json")]) == 0
    marks = [
        e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"] if e["ph"] == "i"
    ]
    assert [m["name"] for m in marks] == ["filled </script>"]
    capsys.readouterr()
    assert main(["export", str(path), "--format", "github-action-benchmark"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["name"] == "test_real.py::test_grows (cpu) - peak memory growth"
    # RSS growth: 0 when earlier tests in this process left freed pages that the test reuses.
    assert isinstance(item["value"], int)
    assert item["unit"] == "bytes"


def _writers(report: Path, journal: Path, out: Path) -> dict[str, list[str]]:
    return {
        "html": ["html", str(report), "-o", str(out), "--no-charts"],
        "trace": ["trace", str(report), "-o", str(out)],
        "export": ["export", str(report), "--format", "github-action-benchmark", "-o", str(out)],
        "recover": ["recover", str(journal), "-o", str(out)],
    }


@pytest.fixture
def report_and_journal(write_report: Writer, tmp_path: Path) -> tuple[Path, Path]:
    data = report(entry("a"))
    header = {k: v for k, v in data.items() if k != "tests"}
    journal = tmp_path / "hw.json.1-2.partial.jsonl"
    journal.write_text(
        json.dumps({"header": header}) + "\n" + json.dumps({"test": data["tests"][0]}) + "\n"
    )
    return write_report(data, "r.json"), journal


@pytest.mark.parametrize("command", ["html", "trace", "export", "recover"])
def test_every_command_refuses_to_replace_a_special_file(
    report_and_journal: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(_writers(*report_and_journal, fifo)[command]) == 2
    assert "not a regular file (a FIFO)" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("command", ["html", "trace", "export", "recover"])
def test_every_command_writes_through_a_symlink_the_same_way(
    report_and_journal: tuple[Path, Path], tmp_path: Path, command: str
) -> None:
    target = tmp_path / "real-output"
    target.write_text("old")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert main(_writers(*report_and_journal, link)[command]) == 0
    assert link.is_symlink()  # the link stays; its target holds the new output
    assert target.read_text() != "old"
    assert link.read_text() == target.read_text()


def test_an_overflowing_number_is_never_written_back_as_infinity(
    write_report: Writer, tmp_path: Path
) -> None:
    path = write_report(report(entry("a")), "r.json")
    # 1e999 is valid JSON text, but Python reads it as infinity: outputs must still be JSON.
    path.write_text(path.read_text().replace('"duration_s":', '"duration_s":1e999,"x":', 1))
    trace = tmp_path / "t.json"
    assert main(["trace", str(path), "-o", str(trace)]) == 0

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} written")

    json.loads(trace.read_text(), parse_constant=refuse)
