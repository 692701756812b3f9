"""``@pytest.mark.distributed``: real gloo ranks on the CPU, driven by a pytest session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from pytest_hwbench.testing import fake_mps

Loader = Callable[[Path], dict[str, Any]]

pytestmark = pytest.mark.skipif(
    not __import__("torch").distributed.is_available(), reason="torch without torch.distributed"
)


def _rank_processes() -> list[psutil.Process]:
    """This process's descendants that are ranks (multiprocessing's spawned children)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):  # not the resource tracker
                found.append(child)
        except psutil.Error:
            continue
    return found


SUITE = """
import time
import pytest
import torch
import torch.distributed as dist


@pytest.mark.distributed(world_size=2)
def test_all_reduce(hw_rank, hw_world_size, hw_device):
    t = torch.ones(4, device=hw_device) * (hw_rank + 1)
    dist.all_reduce(t)
    assert t.tolist() == [3.0] * 4
    assert (dist.get_rank(), dist.get_world_size()) == (hw_rank, hw_world_size)


@pytest.mark.distributed(world_size=2)
def test_a_rank_raises(hw_rank):
    if hw_rank == 1:
        raise ValueError("rank one is broken")
    dist.barrier()  # rank 0 waits for rank 1, which is gone: it fails too, second


@pytest.mark.distributed(world_size=2, timeout="6s")
def test_a_rank_hangs(hw_rank):
    if hw_rank == 0:
        dist.barrier()  # rank 1 never comes
    else:
        time.sleep(600)


def test_after_them_all():
    pass
"""


def test_ranks_pass_fail_hang_and_nothing_outlives_them(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--hw-report={report_path}")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_a_rank_raises _*",
            "rank 1 of 2 failed*",
            "Traceback (most recent call last):",
            '  File "*test_ranks_pass_fail_hang_and_nothing_outlives_them.py", line *, in '
            "test_a_rank_raises",
            "ValueError: rank one is broken",
            "*_ test_a_rank_hangs _*",
            "ranks 0, 1 of 2 did not finish within the timeout (6 s): killed (a collective that "
            "never completes?)",
            "--- rank 0's stacks ---",
            "*in test_a_rank_hangs*",
        ]
    )
    assert _rank_processes() == []  # every rank, hung ones too, is gone
    entries = {t["nodeid"].split("::")[1]: t for t in load_valid_report(report_path)["tests"]}
    ranks = entries["test_all_reduce[cpu]"]["ranks"]
    assert [(r["rank"], r["status"], r["device"]) for r in ranks] == [
        (0, "passed", "cpu"), (1, "passed", "cpu")
    ]  # fmt: skip
    for rank in ranks:  # each rank's own memory, with the CPU's exact peak
        assert 0 < rank["start_s"] < 60  # after the driver started it: a spawn, an import
        rss = rank["memory"]["series"]["rss"]
        assert rss["exact_peak"] is True
        assert rss["peak_delta_bytes"] >= 0
    raised = [r["status"] for r in entries["test_a_rank_raises"]["ranks"]]
    assert raised[1] == "failed"
    assert raised[0] in ("failed", "killed")  # it fails on its peer's going, or waits till killed
    assert [r["status"] for r in entries["test_a_rank_hangs"]["ranks"]] == ["hung", "hung"]


def test_a_memory_limit_applies_to_each_rank(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.distributed(world_size=2)
        @pytest.mark.memory_limit("32MiB")
        def test_rank_one_grows(hw_rank):
            if hw_rank == 1:
                data = torch.ones(96 * 2**20, dtype=torch.uint8)  # 96 MiB, touched
                assert int(data[-1]) == 1
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["rank 1 of 2: memory limit exceeded on cpu: peak growth * > limit 32.0 MiB*"]
    )


def test_auto_world_size_fixtures_that_travel_and_those_that_cannot(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import threading
        import pytest
        import torch.distributed as dist

        @pytest.fixture
        def config():
            return {"lr": 0.1}

        @pytest.fixture
        def lock():
            return threading.Lock()

        @pytest.mark.distributed(world_size="auto")
        def test_auto(hw_rank, hw_world_size, config, tmp_path):
            assert hw_world_size == dist.get_world_size() == 2  # two ranks on the CPU
            assert config == {"lr": 0.1}
            (tmp_path / f"rank{hw_rank}").write_text("here")  # the driver's tmp_path
            dist.barrier()
            assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]

        @pytest.mark.distributed(world_size=2)
        def test_lock(lock):
            pass

        def test_world_size_elsewhere(hw_world_size, hw_rank):
            assert (hw_world_size, hw_rank) == (1, 0)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        ["fixture 'lock' (lock) cannot be sent to the ranks of a distributed test (TypeError:*"]
    )


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("world_size=0", "world_size must be an int >= 1 or 'auto', got 0"),
        ("world_size=2, timeout='soon'", "timeout: bad duration 'soon'"),
        ("world_size=2, ranks=2", "unknown argument(s) ranks; valid: world_size, timeout"),
    ],
)
def test_a_bad_distributed_marker_is_a_collection_error(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.distributed({marker})
        def test_x(hw_rank):
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*@pytest.mark.distributed: {message}*"])


def test_a_platform_without_a_backend_or_enough_devices_is_skipped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_mps(monkeypatch)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hardware("mps")
        @pytest.mark.distributed(world_size=2)
        def test_on_mps(hw_device, hw_rank):
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*mps: torch.distributed has no backend for its devices*"])


def test_distributed_tests_run_under_xdist(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is part of the test extra")
    pytester.makepyfile(
        """
        import pytest
        import torch
        import torch.distributed as dist

        @pytest.mark.distributed(world_size=2)
        @pytest.mark.parametrize("step", range(4))
        def test_sum(hw_rank, step):
            t = torch.tensor([float(hw_rank + step)])
            dist.all_reduce(t)
            assert t.item() == 1 + 2 * step
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", f"--hw-report={report_path}")
    result.assert_outcomes(passed=4)
    tests = load_valid_report(report_path)["tests"]
    assert {t["worker"] for t in tests} == {"gw0", "gw1"}  # two drivers at once: no collision
    assert all(len(t["ranks"]) == 2 for t in tests)
    assert json.dumps(tests).count('"status": "passed"') == 8


def test_a_rank_that_skips_skips_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.distributed(world_size=2)
        def test_skips_on_one_rank(hw_rank):
            if hw_rank == 1:
                pytest.skip("needs a second host")
        """
    )
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*rank 1: needs a second host*"])


def test_hw_benchmark_times_steps_of_the_whole_job_on_rank_0(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest
        import torch
        import torch.distributed as dist

        @pytest.mark.distributed(world_size=2)
        def test_step(hw_rank, hw_benchmark):
            def step():
                time.sleep(0.004 if hw_rank == 1 else 0.001)  # rank 1 is the slow one
                t = torch.ones(8)
                dist.all_reduce(t)
                return t

            result = hw_benchmark.pedantic(step, rounds=12, warmup_rounds=1, flops=8e6)
            assert result.tolist() == [2.0] * 8
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", f"--hw-report={report_path}")
    result.assert_outcomes(passed=1)
    (entry,) = load_valid_report(report_path)["tests"]
    bench = entry["benchmark"]
    assert bench["rounds"] == 12
    assert bench["timer"] == "barrier+synchronize+perf_counter (rank 0 of 2)"
    assert bench["median"] >= 0.004  # every round waits for the slowest rank
    assert bench["throughput"]["flops_per_s"] == pytest.approx(8e6 / bench["median"])


def test_ranks_exit_when_their_driver_is_killed(pytester: pytest.Pytester) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.distributed(world_size=2)
        def test_sleeps(hw_rank):
            time.sleep(600)
        """
    )
    driver = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        ranks: list[psutil.Process] = []
        while len(ranks) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            ranks = [
                p for p in psutil.Process(driver.pid).children(recursive=True)
                if "spawn_main" in " ".join(p.cmdline())
            ]  # fmt: skip
        assert len(ranks) == 2, "the ranks did not start"
        os.kill(driver.pid, signal.SIGKILL)  # no cleanup of its own: the ranks must notice
        driver.wait()
        gone, alive = psutil.wait_procs(ranks, timeout=5)
        assert alive == []
        assert len(gone) == 2
    finally:
        driver.kill()


def test_the_ddp_example_gives_two_ranks_with_exact_cpu_peaks(
    pytester: pytest.Pytester, report_path: Path, load_valid_report: Loader
) -> None:
    example = Path(__file__).resolve().parents[2] / "example_suites" / "test_ddp_step.py"
    pytester.makepyfile(test_ddp=example.read_text())
    result = pytester.runpytest("-p", "no:cacheprovider", f"--hw-report={report_path}")
    assert result.ret == pytest.ExitCode.OK  # its CPU instance passes; CUDA's where there is one
    entry = next(t for t in load_valid_report(report_path)["tests"] if t["platform"] == "cpu")
    assert [(r["rank"], r["device"], r["status"]) for r in entry["ranks"]] == [
        (0, "cpu", "passed"), (1, "cpu", "passed")
    ]  # fmt: skip
    for rank in entry["ranks"]:
        rss = rank["memory"]["series"]["rss"]
        assert rss["exact_peak"] is True
        assert rss["peak_delta_bytes"] > 2**20  # DDP's buckets, the gradients: real growth


def test_a_rank_may_start_processes_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch
        import torch.distributed as dist
        from torch.utils.data import DataLoader

        @pytest.mark.distributed(world_size=2)
        def test_loader_workers(hw_rank):
            # A DataLoader's workers are processes the rank starts: a daemonic rank could not.
            batches = list(DataLoader(list(range(8)), batch_size=4, num_workers=2))
            total = torch.tensor([float(sum(int(b.sum()) for b in batches))])
            dist.all_reduce(total)
            assert total.item() == 2 * 28
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
