from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from pytest_hwbench.hardware import xpu as xpu_module
from pytest_hwbench.hardware.base import (
    Capability,
    HardwareFallbackWarning,
    HardwareUnavailableError,
)
from pytest_hwbench.hardware.xpu import XPUBackend, XPUStatus
from pytest_hwbench.testing._xpu import (
    FakeXPU,
    FakeXPUDeviceProperties,
    FakeXPUuuid,
    fake_xpu,
    no_xpu,
)

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

#: An integrated Arc GPU of a Meteor Lake laptop: no native bf16, no DPAS, host memory.
IGPU = FakeXPUDeviceProperties(
    name="Intel(R) Arc(TM) Graphics",
    device_id=0x7D55,
    max_compute_units=128,
    gpu_eu_count=128,
    gpu_subslice_count=8,
    has_fp64=False,
    has_bfloat16_conversions=False,
    has_subgroup_matrix_multiply_accumulate=False,
    has_subgroup_matrix_multiply_accumulate_tensor_float32=False,
    is_integrated_gpu=True,
    total_memory=14 * GIB,
)


# -- detection -------------------------------------------------------------------------------


@pytest.mark.skipif(torch.xpu._is_compiled(), reason="checks a torch built without XPU")
def test_real_cpu_torch_has_no_xpu() -> None:
    backend = XPUBackend()
    assert not backend.is_available()
    assert backend.unavailable_reason() == (
        f"torch was built without XPU support (torch {torch.__version__})"
    )
    with pytest.warns(HardwareFallbackWarning, match="without XPU support"):
        assert backend.initialize() == torch.device("cpu")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("not_built", f"torch was built without XPU support (torch {torch.__version__})"),
        ("no_driver", "no Intel GPU / Level Zero driver found (torch.xpu.is_available() is False)"),
    ],
)
def test_every_absence_has_its_reason(
    monkeypatch: pytest.MonkeyPatch, reason: str, expected: str
) -> None:
    no_xpu(monkeypatch, reason)  # type: ignore[arg-type]
    backend = XPUBackend()
    assert not backend.is_available()
    assert backend.device_count() == 0
    assert backend.unavailable_reason() == expected
    with pytest.raises(HardwareUnavailableError, match=re.escape(expected)):
        backend.initialize(strict=True)


def test_no_xpu_rejects_an_unknown_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="not_built"):
        no_xpu(monkeypatch, "broken")  # type: ignore[arg-type]


def test_built_is_read_from_torch_version_where_is_compiled_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_xpu(monkeypatch, count=2)
    monkeypatch.delattr(torch.xpu, "_is_compiled")
    assert XPUBackend().device_count() == 2
    monkeypatch.setattr(torch.version, "xpu", None)
    assert "without XPU support" in (XPUBackend().unavailable_reason() or "")


def test_detection_reads_the_query_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xpu_module, "query_xpu", lambda: XPUStatus(built=True, device_count=8))
    assert XPUBackend().device_count() == 8


@pytest.mark.parametrize("count", [1, 4])
def test_each_device_initializes(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    fake_xpu(monkeypatch, count=count)
    backend = XPUBackend()
    assert backend.is_available()
    assert backend.device_count() == count
    assert backend.fallbacks == ("cpu",)
    for index in range(count):
        assert backend.initialize(index) == torch.device("xpu", index)
    plural = "s" if count != 1 else ""
    with pytest.raises(
        HardwareUnavailableError,
        match=rf"index {count} is out of range: {count} xpu device{plural} visible",
    ):
        backend.initialize(count)


@pytest.mark.parametrize(("count", "multi"), [(1, False), (4, True)])
def test_multi_device_follows_the_count(
    monkeypatch: pytest.MonkeyPatch, count: int, multi: bool
) -> None:
    fake_xpu(monkeypatch, count=count)
    assert (Capability.MULTI_DEVICE in XPUBackend().capabilities(0)) is multi


# -- properties ------------------------------------------------------------------------------


def test_properties_come_from_the_device_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch, count=4)
    backend = XPUBackend()
    props = backend.properties(2)
    assert props.backend == "xpu"
    assert props.index == 2
    assert props.name == "Intel(R) Data Center GPU Max 1550"
    assert props.vendor == "Intel(R) Corporation"
    assert props.total_memory_bytes == 64 * GIB == torch.xpu.get_device_properties(2).total_memory
    assert props.multiprocessor_count == 448
    assert props.driver_version == "1.6.31294+21"
    assert props.runtime_version == torch.version.xpu == fake.xpu_version
    assert props.uuid == str(fake.properties[2].uuid)
    assert len({backend.properties(i).uuid for i in range(4)}) == 4
    assert props.extra["device_id"] == "0x0BD5"
    assert props.extra["gpu_subslice_count"] == "56"
    assert props.extra["sub_group_sizes"] == "[16, 32]"
    assert props.extra["is_integrated_gpu"] == "False"


def test_each_device_has_its_own_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xpu(monkeypatch, count=2, properties=[FakeXPUDeviceProperties(), IGPU])
    backend = XPUBackend()
    assert backend.properties(0).total_memory_bytes == 64 * GIB
    assert backend.properties(1).total_memory_bytes == 14 * GIB
    assert backend.properties(1).name == "Intel(R) Arc(TM) Graphics"


def test_an_all_zero_uuid_is_no_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xpu(monkeypatch, properties=replace(IGPU, uuid=FakeXPUuuid([0] * 16)))
    assert str(torch.xpu.get_device_properties(0).uuid) == "00000000-0000-0000-0000-000000000000"
    assert XPUBackend().properties().uuid is None  # drivers without the UUID extension


# -- capabilities ----------------------------------------------------------------------------


def test_capabilities_of_a_data_center_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xpu(monkeypatch)
    assert XPUBackend().capabilities() == {
        Capability.FP16,
        Capability.BF16,
        Capability.FP64,
        Capability.TF32,
        Capability.MEMORY_STATS,
        Capability.PEAK_MEMORY_RESET,
        Capability.DEVICE_MEMORY_INFO,
        Capability.SYNCHRONIZE,
    }


def test_capabilities_are_read_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xpu(monkeypatch, count=2, properties=[FakeXPUDeviceProperties(), IGPU])
    backend = XPUBackend()
    big, small = backend.capabilities(0), backend.capabilities(1)
    assert {Capability.BF16, Capability.TF32} <= big
    assert Capability.UNIFIED_MEMORY not in big
    assert Capability.BF16 not in small
    assert Capability.TF32 not in small
    assert {Capability.FP16, Capability.UNIFIED_MEMORY} <= small
    assert Capability.FP8 not in big | small  # torch exposes no FP8 property to read


def test_fp16_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xpu(monkeypatch, properties=replace(IGPU, has_fp16=False))
    assert Capability.FP16 not in XPUBackend().capabilities()


def test_bf16_falls_back_to_torch_on_old_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    class OldProperties:
        """Properties as torch 2.4 had them: no bf16 field."""

        name = "Intel(R) Arc(TM) A770 Graphics"
        total_memory = 16 * GIB
        has_fp16 = True

    fake = fake_xpu(monkeypatch)
    monkeypatch.setattr(torch.xpu, "get_device_properties", lambda device=None: OldProperties())
    monkeypatch.setattr(torch.xpu, "is_bf16_supported", lambda: True)
    assert Capability.BF16 in XPUBackend().capabilities()
    monkeypatch.setattr(torch.xpu, "is_bf16_supported", lambda: False)
    assert Capability.BF16 not in XPUBackend().capabilities()
    assert fake.count == 1


def test_tf32_needs_torch_support(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xpu(monkeypatch)
    monkeypatch.delattr(torch.xpu, "is_tf32_supported")
    assert Capability.TF32 not in XPUBackend().capabilities()


def test_a_refused_memory_query_is_no_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(device: object = None) -> None:
        raise RuntimeError("The device doesn't support querying the available free memory.")

    fake_xpu(monkeypatch)
    monkeypatch.setattr(torch.xpu, "mem_get_info", refuse)
    monkeypatch.setattr(torch.xpu, "reset_peak_memory_stats", refuse)
    caps = XPUBackend().capabilities()
    assert Capability.DEVICE_MEMORY_INFO not in caps
    assert Capability.PEAK_MEMORY_RESET not in caps
    assert Capability.MEMORY_STATS in caps


def test_peak_reset_probe_runs_after_initialization(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fresh process has not initialized XPU: a bare reset would fail "did you call init?".
    fake = fake_xpu(monkeypatch)
    assert not fake.initialized
    assert Capability.PEAK_MEMORY_RESET in XPUBackend().capabilities()


def test_synchronize_goes_to_the_named_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch, count=4)
    backend = XPUBackend()
    backend.synchronize(3)
    backend.synchronize(torch.device("xpu", 1))
    backend.synchronize()
    assert fake.synchronize_calls == {3: 1, 1: 1, 0: 1}


# -- the fake allocator ----------------------------------------------------------------------


def test_before_initialization_stats_are_empty_and_reset_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_xpu(monkeypatch)
    assert torch.xpu.memory_stats(0) == {}
    assert torch.xpu.memory_allocated(0) == 0
    with pytest.raises(RuntimeError, match="Invalid device argument 0: did you call init?"):
        torch.xpu.reset_peak_memory_stats(0)
    torch.xpu.empty_cache()  # a no-op, like torch's
    torch.xpu.init()
    torch.xpu.reset_peak_memory_stats(0)


def test_blocks_round_to_512_and_segments_are_reserved(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch)
    a = fake.allocate(0, 1000)
    assert torch.xpu.memory_allocated(0) == 1024
    assert torch.xpu.memory_reserved(0) == 2 * MIB  # one small segment
    stats = torch.xpu.memory_stats(0)
    assert stats["requested_bytes.all.current"] == 1000
    assert stats["allocated_bytes.small_pool.current"] == 1024
    assert stats["allocated_bytes.large_pool.current"] == 0
    assert stats["segment.all.current"] == 1

    b = fake.allocate(0, 1000)
    assert torch.xpu.memory_reserved(0) == 2 * MIB  # same segment
    c = fake.allocate(0, 3 * MIB)
    assert torch.xpu.memory_reserved(0) == 2 * MIB + 20 * MIB  # 1-10 MiB blocks: 20 MiB segment
    d = fake.allocate(0, 12 * MIB + 1)
    assert torch.xpu.memory_reserved(0) == 22 * MIB  # split off the 20 MiB segment's free 17
    e = fake.allocate(0, 30 * MIB + 1)
    assert torch.xpu.memory_reserved(0) == 22 * MIB + 32 * MIB  # own segment, 2 MiB rounded
    assert torch.xpu.memory_allocated(0) == 2048 + 3 * MIB + 12 * MIB + 512 + 30 * MIB + 512
    assert torch.xpu.memory_stats(0)["reserved_bytes.large_pool.current"] == 52 * MIB

    for handle in (a, b, c, d):
        fake.free(handle)
    assert torch.xpu.memory_allocated(0) == 30 * MIB + 512
    assert torch.xpu.memory_reserved(0) == 54 * MIB  # cached until empty_cache
    torch.xpu.empty_cache()
    assert torch.xpu.memory_reserved(0) == 32 * MIB  # the segment with a live block stays
    fake.free(e)
    torch.xpu.empty_cache()
    assert torch.xpu.memory_reserved(0) == 0
    assert torch.xpu.memory_stats(0)["allocation.all.current"] == 0


def test_peaks_persist_until_reset_of_that_device_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch, count=2)
    fake.free(fake.allocate(0, 8 * MIB))
    fake.free(fake.allocate(1, 6 * MIB))
    torch.xpu.empty_cache()
    assert torch.xpu.memory_allocated(0) == 0
    assert torch.xpu.max_memory_allocated(0) == 8 * MIB
    assert torch.xpu.max_memory_reserved(0) == 20 * MIB
    assert torch.xpu.memory_reserved(0) == 0

    keep = fake.allocate(0, MIB)
    torch.xpu.reset_peak_memory_stats(0)
    assert torch.xpu.max_memory_allocated(0) == MIB  # peak becomes current, not zero
    assert torch.xpu.max_memory_reserved(0) == 2 * MIB
    assert torch.xpu.max_memory_allocated(1) == 6 * MIB  # the other device keeps its peak
    fake.free(keep)


def test_accumulated_stats_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch)
    fake.free(fake.allocate(0, MIB))
    assert torch.xpu.memory_stats(0)["allocated_bytes.all.freed"] == MIB
    torch.xpu.reset_accumulated_memory_stats(0)
    assert torch.xpu.memory_stats(0)["allocated_bytes.all.freed"] == 0
    nested = torch.xpu.memory_stats_as_nested_dict(0)
    assert nested["allocated_bytes"]["all"]["peak"] == MIB


def test_mem_get_info_counts_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch, external_used_bytes=3 * GIB)
    fake.allocate(0, 100 * MIB)
    free, total = torch.xpu.mem_get_info(0)
    assert total == 64 * GIB
    assert free == 64 * GIB - 3 * GIB - 100 * MIB


def test_out_of_memory_releases_the_cache_first(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch, properties=replace(IGPU, total_memory=100 * MIB))
    fake.free(fake.allocate(0, 60 * MIB))
    assert torch.xpu.memory_reserved(0) == 60 * MIB
    fake.allocate(0, 80 * MIB)  # fits once the cached 60 MiB segment is returned
    assert torch.xpu.memory_reserved(0) == 80 * MIB
    with pytest.raises(torch.OutOfMemoryError, match="XPU out of memory"):
        fake.allocate(0, 30 * MIB)


def test_device_arguments_resolve_like_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch, count=3)
    fake.allocate(1, MIB)
    assert torch.xpu.memory_allocated("xpu:1") == MIB
    assert torch.xpu.memory_allocated(torch.device("xpu", 1)) == MIB
    assert torch.xpu.memory.memory_allocated(1) == MIB
    assert torch.xpu.memory_allocated() == 0  # current device is 0
    torch.xpu.set_device(1)
    assert torch.xpu.current_device() == 1
    assert torch.xpu.memory_allocated() == MIB
    assert torch.xpu.memory_allocated(torch.device("xpu")) == MIB
    with pytest.raises(ValueError, match="Expected a xpu device, but got: cuda:0"):
        torch.xpu.memory_allocated(torch.device("cuda", 0))


def test_bad_indices_raise_torchs_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xpu(monkeypatch, count=4)
    with pytest.raises(
        RuntimeError, match=r"device is out of range, device is 4, total number of device is 4\."
    ):
        torch.xpu.get_device_properties(4)
    with pytest.raises(RuntimeError, match="device is out of range"):
        torch.xpu.synchronize(-1)
    with pytest.raises(RuntimeError, match="device is out of range"):
        fake.allocate(9, MIB)
    with pytest.raises(RuntimeError, match="Invalid device argument 7: did you call init?"):
        torch.xpu.memory_allocated(7)
    with pytest.raises(RuntimeError, match="Invalid device argument 4"):
        torch.xpu.reset_peak_memory_stats(4)
    with pytest.raises(RuntimeError, match="Invalid device argument 5"):
        torch.xpu.mem_get_info(5)


def test_bf16_and_tf32_questions_follow_the_current_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xpu(monkeypatch, count=2, properties=[FakeXPUDeviceProperties(), IGPU])
    assert torch.xpu.is_bf16_supported()  # emulation counts by default
    assert torch.xpu.is_bf16_supported(including_emulation=False)
    assert torch.xpu.is_tf32_supported()
    torch.xpu.set_device(1)
    assert torch.xpu.is_bf16_supported()
    assert not torch.xpu.is_bf16_supported(including_emulation=False)
    assert not torch.xpu.is_tf32_supported()
    assert torch.xpu.get_device_name() == "Intel(R) Arc(TM) Graphics"
    assert torch.xpu.get_device_capability(1)["is_integrated_gpu"] is True


def test_without_xpu_torch_refuses_like_a_cpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = no_xpu(monkeypatch, "not_built")
    assert not torch.xpu.is_available()
    assert torch.xpu.device_count() == 0
    assert torch.version.xpu is None
    assert torch.xpu.memory_allocated(0) == 0
    assert not torch.xpu.is_bf16_supported()
    with pytest.raises(AssertionError, match="Torch not compiled with XPU enabled"):
        torch.xpu.get_device_properties(0)
    with pytest.raises(AssertionError, match="Torch not compiled with XPU enabled"):
        fake.allocate(0, MIB)
    with pytest.raises(AttributeError, match="_xpu_resetPeakMemoryStats"):
        torch.xpu.reset_peak_memory_stats(0)


def test_no_driver_has_zero_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    no_xpu(monkeypatch, "no_driver")
    assert torch.xpu._is_compiled()
    assert torch.version.xpu is not None
    with pytest.raises(RuntimeError, match="total number of device is 0"):
        torch.xpu.get_device_properties(0)


def test_fake_arguments_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="count"):
        FakeXPU(-1)
    with pytest.raises(ValueError, match="2 device properties for 3 devices"):
        FakeXPU(3, properties=[IGPU, IGPU])
    fake = fake_xpu(monkeypatch)
    handle = fake.allocate(0, 0)
    assert torch.xpu.memory_allocated(0) == 0
    fake.free(handle)
    with pytest.raises(ValueError, match="already freed"):
        fake.free(handle)
    with pytest.raises(ValueError, match="nbytes"):
        fake.allocate(0, -5)
