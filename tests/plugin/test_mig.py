"""MIG: an H100 cut into three instances, each a device of its own for pinning and measuring.

CUDA shows a process a single MIG instance, whatever CUDA_VISIBLE_DEVICES names (the fake does
the same), so three instances are three devices only across processes: `hwbench info` lists
them, and ``-n 3 --hw-gpus-per-worker=1`` gives each xdist worker its own, by UUID.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pytest_hwbench import hardware
from pytest_hwbench.cli import main
from pytest_hwbench.hardware import _nvml
from pytest_hwbench.testing import FakeCudaDevice, cpu_only_torch, fake_cuda

GiB = 2**30
MiB = 2**20


def _h100_in_thirds() -> FakeCudaDevice:
    return FakeCudaDevice.nvidia((9, 0), name="NVIDIA H100 80GB HBM3").with_mig(
        *[("2g.20gb", 20 * GiB, 32)] * 3
    )


def test_three_instances_are_three_pinnable_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = _h100_in_thirds()
    plain = FakeCudaDevice.nvidia((9, 0))
    fake_cuda(monkeypatch, devices=[gpu, plain])
    uuids = [mig.nvml_uuid for mig in gpu.mig_devices]
    cuda = hardware.get_hardware_backend("cuda")
    assert cuda.pinnable_devices() == (*uuids, plain.nvml_uuid)
    instances = _nvml.mig_instances()
    assert [i.uuid for i in instances] == uuids
    assert {(i.profile, i.total_memory_bytes, i.gpu_uuid) for i in instances} == {
        ("2g.20gb", 20 * GiB, gpu.nvml_uuid)
    }
    assert [i.gpu_instance_id for i in instances] == [1, 2, 3]
    # This process sees the first instance and the whole GPU: CUDA enumerates one MIG device.
    assert torch.cuda.device_count() == 2
    assert cuda.properties(0).uuid == uuids[0]
    assert cuda.properties(0).total_memory_bytes == 20 * GiB


def test_cuda_shows_one_instance_however_many_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = _h100_in_thirds()
    second, third = gpu.mig_devices[1:]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{second.nvml_uuid},{third.nvml_uuid}")
    cuda = fake_cuda(monkeypatch, devices=[gpu])
    assert torch.cuda.device_count() == 1
    backend = hardware.get_hardware_backend("cuda")
    assert backend.properties(0).uuid == second.nvml_uuid
    cuda.allocate(0, 64 * MiB)
    # device_used is the instance's own, from its MIG handle: the others hold nothing.
    by_uuid = {_nvml.device_uuid(h): h for h in _nvml._all_handles(_nvml._nvml())}
    used = {
        mig.nvml_uuid: _nvml.device_memory_used(by_uuid[mig.nvml_uuid]) for mig in gpu.mig_devices
    }
    assert used[second.nvml_uuid] == second.context_bytes + 64 * MiB
    assert used[gpu.mig_devices[0].nvml_uuid] == 0
    assert used[third.nvml_uuid] == 0


def test_hwbench_info_lists_the_instances(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu = _h100_in_thirds()
    fake_cuda(monkeypatch, devices=[gpu])
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cuda   available, 1 device\n" in out
    assert "  MIG: 3 instances; CUDA shows a process one (-n 3 --hw-gpus-per-worker=1" in out
    for mig in gpu.mig_devices:
        assert f"    {mig.nvml_uuid}  2g.20gb  20.0 GiB\n" in out
    assert main(["info", "--json"]) == 0
    (cuda,) = [b for b in json.loads(capsys.readouterr().out)["backends"] if b["name"] == "cuda"]
    assert [i["uuid"] for i in cuda["mig_instances"]] == [m.nvml_uuid for m in gpu.mig_devices]


def test_no_mig_no_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, count=2)
    assert hardware.get_hardware_backend("cuda").pinnable_devices() == ("0", "1")
    assert "mig_instances" not in hardware.backend_inventory(hardware.get_hardware_backend("cuda"))


WORKER_CONFTEST = """
import pytest
from pytest_hwbench.testing import FakeCudaDevice, cpu_only_torch, fake_cuda

_patch = pytest.MonkeyPatch()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # The same machine in the controller and in each worker (the UUIDs are made in order).
    cpu_only_torch(_patch)
    gpu = FakeCudaDevice.nvidia((9, 0), name="NVIDIA H100 80GB HBM3").with_mig(
        *[("2g.20gb", 20 * 2**30, 32)] * 3
    )
    fake_cuda(_patch, devices=[gpu])
"""

WORKER_SUITE = """
import os
import pytest
import torch

MiB = 2**20


@pytest.mark.parametrize("i", range(6))
@pytest.mark.hardware("cuda")
def test_on_my_instance(i, hw_device, memory_profile):
    assert torch.cuda.device_count() == 1
    assert os.environ["CUDA_VISIBLE_DEVICES"].startswith("MIG-")
    fake = torch.cuda.synchronize.__self__
    fake.allocate(0, (i + 1) * 8 * MiB)
"""


def test_xdist_pins_each_instance_to_a_worker_by_uuid(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is part of the test extra")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cpu_only_torch(monkeypatch)
    pytester.makeconftest(WORKER_CONFTEST)
    pytester.makepyfile(WORKER_SUITE)
    report_path = tmp_path / "hw.json"
    result = pytester.runpytest_subprocess(
        "-n", "3", "--hw-gpus-per-worker=1", f"--hw-report={report_path}"
    )
    result.assert_outcomes(passed=6)
    report = json.loads(report_path.read_text())
    pinned = {t["worker"]: t["pinned_devices"] for t in report["tests"]}
    assert sorted(pinned) == ["gw0", "gw1", "gw2"]
    uuids = {value.removeprefix("CUDA_VISIBLE_DEVICES=") for value in pinned.values()}
    assert len(uuids) == 3
    assert all(uuid.startswith("MIG-") for uuid in uuids)
    for test in report["tests"]:
        device = test["memory"]["device"]
        assert device["device"] == "cuda:0"
        series = test["memory"]["series"]
        # Each instance's own memory: the worker's context and its own tests' allocations.
        assert series["device_used"]["end_bytes"] < 20 * GiB
        assert series["allocated"]["exact_peak"] is True
    hosts = report["machine"]["hosts"]
    seen = set()
    for inventory in hosts.values():
        (cuda,) = [b for b in inventory["backends"] if b["name"] == "cuda"]
        (device,) = cuda["devices"]
        assert device["properties"]["total_memory_bytes"] == 20 * GiB
        seen.add(device["properties"]["uuid"])
    assert seen == uuids


def test_mig_pinning_mistakes_say_what_cuda_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_hwbench.plugin.xdist import GpuPlanError, plan

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = _h100_in_thirds()
    fake_cuda(monkeypatch, devices=[gpu])
    backends = list(hardware.default_registry())
    uuids = ", ".join(mig.nvml_uuid for mig in gpu.mig_devices)
    with pytest.raises(GpuPlanError) as two:
        plan(2, 1, backends, share=False)
    assert str(two.value) == (
        "--hw-gpus-per-worker=2: CUDA shows a process a single MIG instance, so a worker uses "
        "one of these 3 MIG instances; pass --hw-gpus-per-worker=1"
    )
    with pytest.raises(GpuPlanError) as four:
        plan(1, 4, backends, share=False)
    assert str(four.value) == (
        f"--hw-gpus-per-worker=1 with 4 workers needs 4 MIG instances, but 3 were found "
        f"({uuids}); use fewer workers (-n) or pass --hw-gpus-share to let workers share "
        "MIG instances"
    )
    assert plan(1, 3, backends, share=False).for_worker(2) == (gpu.mig_devices[2].nvml_uuid,)


def test_a_mixed_host_still_gives_a_worker_one_mig_instance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_hwbench.plugin.xdist import GpuPlanError, plan

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake_cuda(monkeypatch, devices=[_h100_in_thirds(), FakeCudaDevice.nvidia((9, 0))])
    with pytest.raises(GpuPlanError, match="CUDA shows a process a single MIG instance"):
        plan(2, 2, list(hardware.default_registry()), share=False)
