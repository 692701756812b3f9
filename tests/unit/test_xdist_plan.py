from __future__ import annotations

import pytest

from pytest_hwbench.hardware import default_registry
from pytest_hwbench.names import GPU_PLAN_ENV
from pytest_hwbench.plugin import xdist
from pytest_hwbench.plugin.xdist import (
    GpuPlan,
    GpuPlanError,
    apply_worker_assignment,
    discover_devices,
    plan,
)
from pytest_hwbench.testing import FakeBackend, fake_registry


def test_discovery_prefers_the_variable_the_user_set() -> None:
    backends = list(default_registry())
    assert discover_devices(backends, {"CUDA_VISIBLE_DEVICES": "2, 3,5"}) == (
        "CUDA_VISIBLE_DEVICES",
        ("2", "3", "5"),
    )
    hip = {"HIP_VISIBLE_DEVICES": "0,1"}
    assert discover_devices(backends, hip) == ("HIP_VISIBLE_DEVICES", ("0", "1"))
    assert discover_devices(backends, {"CUDA_VISIBLE_DEVICES": "-1"}) == (
        "CUDA_VISIBLE_DEVICES",
        (),
    )
    # ROCm's inner variable is split: HIP_VISIBLE_DEVICES indexes into ROCR_VISIBLE_DEVICES's set.
    both = {"ROCR_VISIBLE_DEVICES": "0,1,2,3", "HIP_VISIBLE_DEVICES": "1,2"}
    assert discover_devices(backends, both) == ("HIP_VISIBLE_DEVICES", ("1", "2"))
    assert discover_devices(backends, {"ZE_AFFINITY_MASK": "0,1"}) == (
        "ZE_AFFINITY_MASK",
        ("0", "1"),
    )


def test_discovery_falls_back_to_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hwbench.testing import FakeCuda, fake_nvml

    fake_nvml(monkeypatch, FakeCuda(3))
    assert discover_devices(default_registry(), {}) == ("CUDA_VISIBLE_DEVICES", ("0", "1", "2"))


def test_a_third_party_backend_names_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    class NPU(FakeBackend):
        visibility_variables = ("ASCEND_RT_VISIBLE_DEVICES",)

        def count_devices_unopened(self) -> int | None:
            return 4

    registry = fake_registry(monkeypatch, NPU("npu"), builtins=False)
    assert discover_devices(registry, {"ASCEND_RT_VISIBLE_DEVICES": "6,7"}) == (
        "ASCEND_RT_VISIBLE_DEVICES",
        ("6", "7"),
    )
    assert discover_devices(registry, {}) == ("ASCEND_RT_VISIBLE_DEVICES", ("0", "1", "2", "3"))


def test_plan_splits_k_per_worker_and_wraps_only_when_shared() -> None:
    exclusive = GpuPlan("CUDA_VISIBLE_DEVICES", ("4", "5", "6", "7"), 2, share=False)
    assert [exclusive.for_worker(i) for i in range(2)] == [("4", "5"), ("6", "7")]
    shared = GpuPlan("CUDA_VISIBLE_DEVICES", ("0", "1", "2"), 2, share=True)
    assert [shared.for_worker(i) for i in range(3)] == [("0", "1"), ("2", "0"), ("1", "2")]
    assert GpuPlan.from_json(shared.to_json()) == shared


def test_plan_refuses_too_few_gpus_naming_both_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    with pytest.raises(GpuPlanError, match="4 workers needs 4 GPUs, but 3 are visible"):
        plan(1, 4, default_registry(), share=False)
    assert plan(1, 4, default_registry(), share=True).devices == ("0", "1", "2")
    with pytest.raises(GpuPlanError, match="exceeds the 3 visible GPUs"):
        plan(4, 1, default_registry(), share=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(GpuPlanError, match="no GPU found to pin"):
        plan(1, 2, default_registry(), share=False)


def test_worker_applies_its_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xdist, "applied", None)
    gpu_plan = GpuPlan("HIP_VISIBLE_DEVICES", ("0", "1", "2", "3"), 2, share=False)
    env = {GPU_PLAN_ENV: gpu_plan.to_json(), "PYTEST_XDIST_WORKER": "gw1"}
    assert apply_worker_assignment(env) == ("HIP_VISIBLE_DEVICES", "2,3")
    assert env["HIP_VISIBLE_DEVICES"] == "2,3"
    assert apply_worker_assignment({GPU_PLAN_ENV: gpu_plan.to_json()}) is None  # controller
    assert apply_worker_assignment({"PYTEST_XDIST_WORKER": "gw0"}) is None  # no plan


def test_bad_gpus_per_worker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--hw-gpus-per-worker=two")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-gpus-per-worker=two: give a whole number of GPUs >= 1"])


def test_replacements_take_over_the_crashed_workers_gpus_in_crash_order() -> None:
    plan_ = GpuPlan("CUDA_VISIBLE_DEVICES", ("0", "1", "2", "3"), 1, share=False, workers=4)
    # gw2 crashes, then gw0: their replacements are gw4 and gw5, in that order.
    after = plan_.with_crashed(2).with_crashed(0)
    assert [after.for_worker(i) for i in (1, 3, 4, 5)] == [("1",), ("3",), ("2",), ("0",)]
    # A replacement that crashes in turn hands the same GPUs to the next one (gw6).
    again = after.with_crashed(4)
    assert again.for_worker(6) == ("2",)
    assert GpuPlan.from_json(again.to_json()) == again


def test_the_controller_updates_the_plan_a_replacement_inherits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_hwbench.plugin.xdist import release_crashed_worker

    env = {GPU_PLAN_ENV: GpuPlan("CUDA_VISIBLE_DEVICES", ("4", "5"), 1, False, 2).to_json()}
    release_crashed_worker("gw1", env)
    monkeypatch.setattr(xdist, "applied", None)
    env["PYTEST_XDIST_WORKER"] = "gw2"  # the replacement, started with that environment
    assert apply_worker_assignment(env) == ("CUDA_VISIBLE_DEVICES", "5")
