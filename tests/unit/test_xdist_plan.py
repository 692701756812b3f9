from __future__ import annotations

import pytest

from pytest_hwbench import _xdist
from pytest_hwbench._xdist import (
    ASSIGNMENT_ENV,
    GpuPlan,
    GpuPlanError,
    apply_worker_assignment,
    discover_devices,
    plan,
)


def test_discovery_prefers_the_variable_the_user_set() -> None:
    assert discover_devices({"CUDA_VISIBLE_DEVICES": "2, 3,5"}) == (
        "CUDA_VISIBLE_DEVICES",
        ("2", "3", "5"),
    )
    assert discover_devices({"HIP_VISIBLE_DEVICES": "0,1"}) == ("HIP_VISIBLE_DEVICES", ("0", "1"))
    assert discover_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == ("CUDA_VISIBLE_DEVICES", ())


def test_discovery_falls_back_to_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hwbench.testing import FakeCuda, fake_nvml

    fake_nvml(monkeypatch, FakeCuda(3))
    assert discover_devices({}) == ("CUDA_VISIBLE_DEVICES", ("0", "1", "2"))


def test_plan_splits_k_per_worker_and_wraps_only_when_shared() -> None:
    exclusive = GpuPlan("CUDA_VISIBLE_DEVICES", ("4", "5", "6", "7"), 2, share=False)
    assert [exclusive.for_worker(i) for i in range(2)] == [("4", "5"), ("6", "7")]
    shared = GpuPlan("CUDA_VISIBLE_DEVICES", ("0", "1", "2"), 2, share=True)
    assert [shared.for_worker(i) for i in range(3)] == [("0", "1"), ("2", "0"), ("1", "2")]
    assert GpuPlan.from_json(shared.to_json()) == shared


def test_plan_refuses_too_few_gpus_naming_both_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    with pytest.raises(GpuPlanError, match="4 workers needs 4 GPUs, but 3 are visible"):
        plan(1, 4, share=False)
    assert plan(1, 4, share=True).devices == ("0", "1", "2")
    with pytest.raises(GpuPlanError, match="exceeds the 3 visible GPUs"):
        plan(4, 1, share=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(GpuPlanError, match="no GPU found to pin"):
        plan(1, 2, share=False)


def test_worker_applies_its_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_xdist, "applied", None)
    gpu_plan = GpuPlan("HIP_VISIBLE_DEVICES", ("0", "1", "2", "3"), 2, share=False)
    env = {ASSIGNMENT_ENV: gpu_plan.to_json(), "PYTEST_XDIST_WORKER": "gw1"}
    assert apply_worker_assignment(env) == ("HIP_VISIBLE_DEVICES", "2,3")
    assert env["HIP_VISIBLE_DEVICES"] == "2,3"
    assert apply_worker_assignment({ASSIGNMENT_ENV: gpu_plan.to_json()}) is None  # controller
    assert apply_worker_assignment({"PYTEST_XDIST_WORKER": "gw0"}) is None  # no plan


def test_bad_gpus_per_worker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--hw-gpus-per-worker=two")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-gpus-per-worker=two: give a whole number of GPUs >= 1"])
