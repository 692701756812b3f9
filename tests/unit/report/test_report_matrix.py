"""``hwbench matrix``: three simulated machines' reports side by side."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from report_builders import entry, report

from pytest_hwbench.cli import main
from pytest_hwbench.report.matrix import MatrixError, build_matrix, row_key
from pytest_hwbench.report.model import Report


def _bench(median: float, iqr: float = 0.0001) -> dict[str, Any]:
    return {"timed": True, "unit": "seconds", "median": median, "min": median, "max": median,
            "mean": median, "stddev": 0.0, "iqr": iqr, "rounds": 20, "iterations": 1,
            "throughput": {"flops": 1e12, "flops_per_s": 1e12 / median}}  # fmt: skip


def _machine(label: str, commit: str, *entries: Any) -> Report:
    data = report(*entries)
    data["run"] = {"machine_label": label, "git": {"commit": commit, "branch": "main"}}
    return data


def _three_machines() -> list[tuple[str, Report]]:
    """An H100 box (cpu and cuda), a CPU box, an MPS laptop; each skips what it lacks."""
    h100 = _machine(
        "H100 \u00d78",
        "a" * 40,
        entry("t.py::test_matmul[cpu]", device="cpu", benchmark=_bench(0.040)),
        entry("t.py::test_matmul[cuda]", device="cuda", benchmark=_bench(0.002),
              growth=3 * 2**30),
        entry("t.py::test_train[cuda-8]", device="cuda", growth=2**30),
        entry("t.py::test_train[cuda-64]", device="cuda", outcome="failed", growth=None,
              failure={"kind": "memory_limit", "message": "memory limit exceeded on cuda: ..."}),
        entry("t.py::test_mps_only", device="mps", outcome="skipped", growth=None,
              skip_reason="mps: no MPS: not macOS (this is linux)"),
    )  # fmt: skip
    cpu_box = _machine(
        "Xeon Platinum 8481C",
        "a" * 40,
        entry("t.py::test_matmul[cpu]", device="cpu", benchmark=_bench(0.020)),
        entry("t.py::test_matmul[cuda]", device="cuda", outcome="skipped", growth=None,
              skip_reason="cuda: torch was built without CUDA"),
        entry("t.py::test_train[cuda-8]", device="cuda", outcome="skipped", growth=None),
        entry("t.py::test_mps_only", device="mps", outcome="skipped", growth=None,
              skip_reason="mps: no MPS: not macOS (this is linux)"),
    )  # fmt: skip
    laptop = _machine(
        "M2 Max \u00d71",
        "b" * 40,
        entry("t.py::test_matmul[cpu]", device="cpu", benchmark=_bench(0.080)),
        entry("t.py::test_matmul[mps]", device="mps", benchmark=_bench(0.010)),
        entry("t.py::test_mps_only", device="mps", growth=2**20, energy={
            "total_joules": 4.2, "duration_s": 1.0, "exact": True, "domains": {}}),
    )  # fmt: skip
    return [("h100.json", h100), ("cpu.json", cpu_box), ("laptop.json", laptop)]


def test_the_platform_leaves_the_row_key() -> None:
    assert row_key("t.py::test_step[cuda-8]", "cuda") == "t.py::test_step[8]"
    assert row_key("t.py::test_step[cpu]", "cpu") == "t.py::test_step"
    assert row_key("t.py::test_step[8-cuda]", "cuda") == "t.py::test_step[8]"
    assert row_key("t.py::test_step[cudax]", "cuda") == "t.py::test_step[cudax]"
    assert row_key("t.py::test_plain", "cpu") == "t.py::test_plain"


def test_cells_speedups_and_skips_across_three_machines() -> None:
    matrix = build_matrix(_three_machines(), baseline="Xeon Platinum 8481C")
    names = [column.name for column in matrix.columns]
    assert names == [
        "H100 \u00d78 \u00b7 cpu",
        "H100 \u00d78 \u00b7 cuda",
        "Xeon Platinum 8481C \u00b7 cpu",
        "M2 Max \u00d71 \u00b7 cpu",
        "M2 Max \u00d71 \u00b7 mps",
    ]
    # Columns a machine skipped whole are named once, with why.
    assert [(c.name, why) for c, why in matrix.absent] == [
        ("H100 \u00d78 \u00b7 mps", "mps: no MPS: not macOS (this is linux)"),
        ("Xeon Platinum 8481C \u00b7 cuda", "cuda: torch was built without CUDA"),
        ("Xeon Platinum 8481C \u00b7 mps", "mps: no MPS: not macOS (this is linux)"),
    ]
    assert matrix.baseline == 2
    assert list(matrix.rows) == ["t.py::test_matmul", "t.py::test_train[8]",
                                 "t.py::test_train[64]", "t.py::test_mps_only"]  # fmt: skip
    matmul = "t.py::test_matmul"
    assert matrix.speedup(matmul, 1) == pytest.approx(10.0)  # 20 ms on the CPU box, 2 ms here
    assert matrix.speedup(matmul, 3) == pytest.approx(0.25)
    assert matrix.speedup(matmul, 2) is None  # the baseline itself
    assert matrix.rows[matmul][1].headline(10.0) == "2.00 ms (10\u00d7)"
    failed = matrix.rows["t.py::test_train[64]"][1]
    assert failed.headline(None) == "FAIL"
    assert failed.reason == "memory_limit: memory limit exceeded on cuda: ..."
    assert matrix.rows["t.py::test_mps_only"][4].energy_joules == 4.2


def test_the_terminal_table_fits_and_the_markdown_fits_a_comment() -> None:
    matrix = build_matrix(_three_machines())
    table = matrix.render("table", width=100)
    assert all(len(line) <= 100 for line in table.splitlines())
    assert "  [3] Xeon Platinum 8481C \u00b7 cpu  (cpu.json)" in table
    matmul = next(line for line in table.splitlines() if line.startswith("t.py::test_matmul"))
    assert matmul.split() == ["t.py::test_matmul", "40.00", "ms", "2.00", "ms", "(20\u00d7)",
                              "20.00", "ms", "(2.00\u00d7)", "80.00", "ms", "(0.50\u00d7)",
                              "10.00", "ms", "(4.00\u00d7)"]  # fmt: skip
    assert "not run on Xeon Platinum 8481C \u00b7 cuda (cpu.json): cuda: torch was built" in table
    markdown = matrix.render("markdown")
    header, rule, *rows = markdown.splitlines()
    assert header.startswith("| test | H100 \u00d78 \u00b7 cpu |")
    assert rule == "|---|---:|---:|---:|---:|---:|"
    failed = next(row for row in rows if "test_train[64]" in row)
    assert "FAIL · memory_limit: memory limit exceeded on cuda: ... |" in failed
    assert "2.00 ms (20\u00d7) · IQR 100 us · 500 TFLOP/s · peak 3.0 GiB |" in markdown


def test_csv_and_json_have_one_record_per_cell() -> None:
    matrix = build_matrix(_three_machines())
    records = json.loads(matrix.render("json"))
    assert len(records) == sum(len(cells) for cells in matrix.rows.values())
    cuda = next(r for r in records if r["test"] == "t.py::test_matmul" and r["platform"] == "cuda")
    assert cuda["machine"] == "H100 \u00d78"
    assert cuda["median_s"] == 0.002
    assert cuda["speedup"] == pytest.approx(20.0)
    rows = list(csv.DictReader(io.StringIO(matrix.render("csv"))))
    assert len(rows) == len(records)
    assert rows[0]["test"] == "t.py::test_matmul"


def test_without_history_two_reports_of_one_machine_are_told_apart_by_commit() -> None:
    old = _machine("A100 \u00d71", "1" * 40, entry("t.py::test_a", device="cpu"))
    new = _machine("A100 \u00d71", "2" * 40, entry("t.py::test_a", device="cpu"))
    reports = [("old.json", old), ("new.json", new)]
    matrix = build_matrix(reports, history=False)
    assert [c.machine for c in matrix.columns] == ["A100 \u00d71 @1111111", "A100 \u00d71 @2222222"]
    assert matrix.history == {}
    assert matrix.step_changes == []
    # The machine's own label still names a baseline: the first of its columns.
    assert build_matrix(reports, baseline="A100 \u00d71", history=False).baseline == 0
    assert build_matrix(reports, baseline="new.json", history=False).baseline == 1
    # Reports without commits cannot be placed in time: columns told apart by file.
    bare = [(name, {k: v for k, v in data.items() if k != "run"}) for name, data in reports]
    assert [c.machine for c in build_matrix(bare).columns] == [
        "Test CPU (old.json)", "Test CPU (new.json)"
    ]  # fmt: skip


def _history() -> list[tuple[str, Report]]:
    """Six runs of an H100 runner over six commits (files named out of time order), a CPU box.

    test_matmul gets 1.5x slower at the fourth commit; test_train's exact peak never moves;
    test_noisy swings from run to run; test_gone is only in the older runs.
    """
    medians = [0.0020, 0.0020, 0.0020, 0.0030, 0.0030, 0.0030]
    noisy = [0.010, 0.013, 0.010, 0.013, 0.010, 0.013]
    reports = []
    for k in range(6):
        entries = [
            entry("t.py::test_matmul[cuda]", device="cuda", benchmark=_bench(medians[k], 2e-5)),
            entry("t.py::test_train[cuda]", device="cuda", growth=2**30),
            entry("t.py::test_noisy[cuda]", device="cuda", benchmark=_bench(noisy[k], 1e-4)),
        ]
        if k < 3:
            entries.append(entry("t.py::test_gone[cuda]", device="cuda"))
        data = _machine("H100 \u00d78", str(k + 1) * 40, *entries)
        data["run"]["git"]["committed"] = f"2026-11-0{k + 1}T12:00:00+00:00"
        data["created"] = f"2026-12-0{6 - k}T00:00:00+00:00"  # run in reverse: the date wins
        reports.append((f"h100-{'fedcba'[k]}.json", data))
    cpu = _machine("Xeon", "6" * 40, entry("t.py::test_matmul[cpu]", benchmark=_bench(0.030)))
    return [*sorted(reports), ("cpu.json", cpu)]


def test_a_machines_reports_over_commits_are_one_column_with_its_history() -> None:
    matrix = build_matrix(_history(), baseline="Xeon")
    assert [c.name for c in matrix.columns] == ["H100 \u00d78 \u00b7 cuda", "Xeon \u00b7 cpu"]
    h100 = matrix.columns[0]
    assert h100.source == "h100-a.json"  # the newest commit's report
    assert [run.source for run in h100.runs] == [f"h100-{x}.json" for x in "fedcba"]
    assert list(matrix.rows) == ["t.py::test_matmul", "t.py::test_train", "t.py::test_noisy"]
    assert matrix.speedup("t.py::test_matmul", 0) == pytest.approx(10.0)  # the newest run's
    assert matrix.series("t.py::test_matmul", 0) == (
        "median_s", [0.002, 0.002, 0.002, 0.003, 0.003, 0.003]
    )  # fmt: skip
    assert matrix.series("t.py::test_train", 0) == ("peak_growth_bytes", [2**30] * 6)
    assert matrix.series("t.py::test_matmul", 1) is None  # one run: no history
    [step] = matrix.step_changes
    assert (step.row, step.column, step.figure) == ("t.py::test_matmul", 0, "median_s")
    assert step.run.short == "4444444"
    assert step.previous is not None
    assert step.describe() == (
        "2.00 ms -> 3.00 ms (1.50\u00d7 slower) at 4444444 (2026-11-04, after 3333333)"
    )

    table = matrix.render("table", width=100)
    assert all(len(line) <= 100 for line in table.splitlines())
    assert (
        "  [1] H100 \u00d78 \u00b7 cuda  (h100-a.json, newest of 6 runs since 1111111 (2026-11-01))"
        in table
    )
    assert table.rstrip().endswith(
        "step changes beyond each test's run-to-run spread (1):\n"
        "  t.py::test_matmul on H100 \u00d78 \u00b7 cuda: 2.00 ms -> 3.00 ms (1.50\u00d7 slower)"
        " at 4444444 (2026-11-04,\n    after 3333333)"
    )  # fmt: skip
    markdown = matrix.render("markdown")
    assert (
        "3.00 ms (10\u00d7) \u00b7 IQR 20 us \u00b7 333 TFLOP/s \u00b7 peak 1.0 MiB \u00b7 "
        "`\u2581\u2581\u2581\u2588\u2588\u2588` |" in markdown
    )
    assert "- `t.py::test_matmul` on H100 \u00d78 \u00b7 cuda: 2.00 ms -> 3.00 ms" in markdown


def test_the_history_in_json_and_csv() -> None:
    matrix = build_matrix(_history())
    records = {(r["test"], r["platform"]): r for r in json.loads(matrix.render("json"))}
    matmul = records["t.py::test_matmul", "cuda"]
    assert matmul["commit"] == "6" * 40
    assert matmul["history_figure"] == "median_s"
    assert [(p["commit"][:1], p["date"], p["value"]) for p in matmul["history"]] == [
        (str(k + 1), f"2026-11-0{k + 1}", v)
        for k, v in enumerate([0.002, 0.002, 0.002, 0.003, 0.003, 0.003])
    ]
    [step] = matmul["steps"]
    assert step["commit"] == "4" * 40
    assert step["previous_commit"] == "3" * 40
    assert step["ratio"] == pytest.approx(1.5)
    assert step["tentative"] is False
    assert records["t.py::test_noisy", "cuda"]["steps"] == []  # it swings: no step
    assert records["t.py::test_matmul", "cpu"]["history"] == []
    rows = {
        (r["test"], r["platform"]): r for r in csv.DictReader(io.StringIO(matrix.render("csv")))
    }
    assert rows["t.py::test_matmul", "cuda"]["history"] == "\u2581\u2581\u2581\u2588\u2588\u2588"
    assert rows["t.py::test_matmul", "cuda"]["steps"] == "4444444 x1.5"


def test_a_slower_newest_run_is_a_tentative_step_and_flagged_in_the_page() -> None:
    reports = _history()[:6]
    newest = json.loads(json.dumps(reports[0][1]))  # h100-a.json, the sixth commit
    newest["tests"][1] = entry("t.py::test_train[cuda]", device="cuda", growth=2**31)
    newest["run"]["git"].update(commit="7" * 40, committed="2026-11-07T00:00:00+00:00")
    matrix = build_matrix([*reports, ("h100-new.json", newest)])
    train = [c for c in matrix.step_changes if c.row == "t.py::test_train"]
    assert [c.describe() for c in train] == [
        "1.0 GiB -> 2.0 GiB (2.00\u00d7 more memory) at 7777777 (2026-11-07, after 6666666), "
        "tentative"
    ]
    page = matrix.render("html")
    assert '<td data-v="2147483648" class="base up" title="">2.0 GiB</td>' in page
    data = json.loads(page.split('id="history">', 1)[1].split("</script>", 1)[0])
    assert data["runs"]["0"][0] == ["1111111", "2026-11-01", "h100-f.json"]
    train_cell = data["cells"]["1:0"]
    assert train_cell["t"][-2:] == ["1.0 GiB", "2.0 GiB"]
    assert train_cell["s"] == [[6, True, train[0].describe()]]


def test_an_unknown_baseline_names_the_columns() -> None:
    with pytest.raises(MatrixError, match=r"no column is 'TPU': give a column, a machine label"):
        build_matrix(_three_machines(), baseline="TPU")


def test_the_command_reads_folders_and_writes_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    for name, data in _three_machines():
        (folder / name).write_text(json.dumps(data))
    out = tmp_path / "matrix.md"
    assert main(["matrix", str(folder), "--format", "markdown", "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (4 tests, 5 columns)\n"
    assert out.read_text().startswith("| test | ")
    assert main(["matrix", str(folder), "--baseline", "TPU"]) == 2
    assert "hwbench matrix: no column is 'TPU'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["matrix", str(empty)]) == 2
    assert "no report: the folders given hold no *.json file" in capsys.readouterr().err
