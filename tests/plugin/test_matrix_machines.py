"""``hwbench matrix`` over three simulated machines' real reports.

One suite runs three times, each time on another machine made of the fakes: an H100 box
(CUDA, no MPS: it is Linux), a CPU box (a CPU-only torch) and an MPS laptop. Each run writes
its report with ``--hw-report``; the matrix of the three must show each test's cells, the
speedups against the CPU box, the platforms a machine lacks (named once, with why), a test
skipped on one platform, and markdown a pull request comment can carry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_hwbench.cli import main
from pytest_hwbench.report.compare import load_for_compare
from pytest_hwbench.report.matrix import build_matrix
from pytest_hwbench.testing import cpu_only_torch, fake_cuda, fake_mps, no_mps

SUITE = """
import pytest
import torch

MiB = 2**20


def allocate(device, nbytes):
    # Memory as a tensor takes it: a real tensor on the CPU, the simulated machine's elsewhere.
    if device.type == "cpu":
        return torch.empty(nbytes, dtype=torch.uint8)
    if device.type == "cuda":
        return torch.cuda.synchronize.__self__.allocate(0, nbytes)
    return torch.mps.current_allocated_memory.__self__.allocate(nbytes)


@pytest.mark.hardware("cpu", "cuda", "mps")
def test_step(hw_device, hw_benchmark):
    hw_benchmark.pedantic(allocate, args=(hw_device, 8 * MiB), rounds=3, warmup_rounds=1)


@pytest.mark.hardware("cuda", "mps")
def test_train(hw_device, memory_profile):
    allocate(hw_device, 64 * MiB)


@pytest.mark.hardware("cuda", "mps")
def test_fp64(hw_device, memory_profile):
    if hw_device.type == "mps":
        pytest.skip("float64 is not supported on MPS")
    allocate(hw_device, 2 * MiB)


@pytest.mark.hardware("mps")
def test_mps_only(hw_device, memory_profile):
    allocate(hw_device, MiB)
"""

Machine = Callable[[pytest.MonkeyPatch], None]


def _h100_box(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_only_torch(monkeypatch)  # no real CUDA answers, whatever this machine has
    fake_cuda(monkeypatch)
    no_mps(monkeypatch)


def _cpu_box(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_only_torch(monkeypatch)
    no_mps(monkeypatch)


def _laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_only_torch(monkeypatch)
    fake_mps(monkeypatch)


@pytest.fixture
def reports(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The suite's report on each of the three machines, in one folder."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # pytest-benchmark stays on
    pytester.makepyfile(test_suite=SUITE)
    folder = pytester.path / "reports"
    machines: list[tuple[str, Machine, str]] = [
        ("h100", _h100_box, ""), ("cpu-box", _cpu_box, "CPU box"), ("laptop", _laptop, "")
    ]  # fmt: skip
    for name, machine, label in machines:
        with monkeypatch.context() as patch:
            machine(patch)
            args = [f"--hw-report={folder / name}.json", "-p", "no:cacheprovider"]
            if label:  # every machine here has this VM's CPU: the CPU box names itself
                args.append(f"--hw-machine-label={label}")
            result = pytester.runpytest(*args)
        assert result.ret == 0, result.stdout.str()
    return folder


def test_three_machines_side_by_side(reports: Path) -> None:
    loaded = [(p.name, load_for_compare(str(p))) for p in sorted(reports.glob("*.json"))]
    matrix = build_matrix(loaded, baseline="CPU box")
    h100, laptop = (loaded[1][1]["run"]["machine_label"], loaded[2][1]["run"]["machine_label"])
    assert h100.startswith("H100 80GB HBM3 \u00d71 \u00b7 driver ")  # the (fake) device's
    assert laptop.startswith("M2 Pro")
    assert [c.name for c in matrix.columns] == [
        "CPU box \u00b7 cpu", f"{h100} \u00b7 cpu", f"{h100} \u00b7 cuda",
        f"{laptop} \u00b7 cpu", f"{laptop} \u00b7 mps",
    ]  # fmt: skip
    assert matrix.baseline == 0
    absent = {column.name: why for column, why in matrix.absent}
    assert set(absent) == {"CPU box \u00b7 cuda", "CPU box \u00b7 mps", f"{h100} \u00b7 mps",
                           f"{laptop} \u00b7 cuda"}  # fmt: skip
    assert absent[f"{h100} \u00b7 mps"].startswith("mps: ")
    assert absent["CPU box \u00b7 cuda"].startswith("cuda: ")
    assert list(matrix.rows) == [
        "test_suite.py::test_step", "test_suite.py::test_train", "test_suite.py::test_fp64",
        "test_suite.py::test_mps_only",
    ]  # fmt: skip
    step = matrix.rows["test_suite.py::test_step"]
    assert sorted(step) == [0, 1, 2, 3, 4]  # timed on every platform of every machine
    for column, cell in step.items():
        assert cell.outcome == "passed"
        assert cell.median_s is not None
        assert cell.rounds == 3
        expected = None if column == 0 else step[0].median_s / cell.median_s  # type: ignore[operator]
        assert matrix.speedup("test_suite.py::test_step", column) == pytest.approx(expected)
    train = matrix.rows["test_suite.py::test_train"]
    assert sorted(train) == [2, 4]
    assert all(train[i].peak_growth_bytes == 64 * 2**20 for i in (2, 4))
    assert train[2].exact_peak  # CUDA's allocator keeps a high-water mark; MPS has none
    assert train[4].exact_peak is False
    fp64 = matrix.rows["test_suite.py::test_fp64"]
    assert fp64[2].headline(None) == "2.0 MiB"
    assert fp64[4].headline(None) == "skip"
    assert fp64[4].reason == "float64 is not supported on MPS"
    assert matrix.rows["test_suite.py::test_mps_only"][4].peak_growth_bytes == 2**20


def test_the_markdown_carries_the_skips_and_fits_a_comment(
    reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["matrix", str(reports), "--baseline", "CPU box", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert len(markdown) < 65_536  # GitHub's limit for a comment's body
    header, rule, *lines = markdown.splitlines()
    assert header.startswith("| test | CPU box \u00b7 cpu | H100 80GB HBM3 \u00d71")
    assert rule == "|---|---:|---:|---:|---:|---:|"
    fp64 = next(line for line in lines if "test_fp64" in line)
    assert fp64.endswith("| skip \u00b7 float64 is not supported on MPS |")
    assert any(line.startswith("not run on CPU box \u00b7 cuda (") for line in lines)
    step = next(line for line in lines if "`test_suite.py::test_step`" in line)
    assert step.count("\u00d7)") == 4  # a speedup in every column but the baseline's
    assert json.loads(json.dumps(markdown))  # plain text, nothing binary
