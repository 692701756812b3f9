from __future__ import annotations

import platform
import re
import subprocess
import sys

import psutil
import pytest
import torch

from pytest_hwbench.hardware import mps as mps_module
from pytest_hwbench.hardware.base import (
    Capability,
    HardwareFallbackWarning,
    HardwareUnavailableError,
)
from pytest_hwbench.hardware.mps import MacHost, MPSBackend, MPSStatus
from pytest_hwbench.testing._mps import FakeMPS, fake_mps, no_mps

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


# -- detection -------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the real answer off macOS")
def test_real_linux_has_no_mps() -> None:
    backend = MPSBackend()
    assert not backend.is_available()
    assert backend.device_count() == 0
    assert backend.unavailable_reason() == f"no MPS: not macOS (this is {sys.platform})"
    with pytest.raises(HardwareUnavailableError, match="no MPS: not macOS"):
        backend.initialize(strict=True)
    with pytest.warns(HardwareFallbackWarning, match="no MPS: not macOS"):
        assert backend.initialize() == torch.device("cpu")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("not_macos", "no MPS: not macOS (this is linux)"),
        ("not_built", f"torch was built without MPS (torch {torch.__version__})"),
        (
            "unavailable",
            "MPS not available: macOS 12.3+ and an Apple-silicon or AMD GPU are required "
            "(this is macOS 12.1 on x86_64)",
        ),
    ],
)
def test_every_absence_has_its_reason(
    monkeypatch: pytest.MonkeyPatch, reason: str, expected: str
) -> None:
    no_mps(monkeypatch, reason)  # type: ignore[arg-type]
    backend = MPSBackend()
    assert not backend.is_available()
    assert backend.device_count() == 0
    assert backend.unavailable_reason() == expected
    assert not backend.has_capability("fp16")
    with pytest.raises(HardwareUnavailableError, match=re.escape(expected)):
        backend.initialize(strict=True)


def test_no_mps_rejects_an_unknown_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="not_macos, not_built, unavailable"):
        no_mps(monkeypatch, "broken")  # type: ignore[arg-type]


def test_detection_reads_the_query_function(monkeypatch: pytest.MonkeyPatch) -> None:
    host = MacHost(platform="darwin", macos_version="15.1", machine="arm64")
    status = MPSStatus(host=host, built=True, available=True)
    monkeypatch.setattr(mps_module, "query_mps", lambda: status)
    assert MPSBackend().device_count() == 1


def test_present_mps_is_one_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    backend = MPSBackend()
    assert backend.is_available()
    assert backend.unavailable_reason() is None
    assert backend.device_count() == 1
    assert backend.fallbacks == ("cpu",)
    assert backend.initialize() == torch.device("mps", 0)


def test_out_of_range_index_names_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    with pytest.raises(HardwareUnavailableError, match=r"index 1 is out of range: 1 mps device "):
        MPSBackend().initialize(1)


# -- host query ------------------------------------------------------------------------------


def test_host_query_off_macos_never_runs_sysctl(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("sysctl must only run on macOS")

    monkeypatch.setattr(mps_module, "_platform", lambda: "linux")
    monkeypatch.setattr(subprocess, "run", refuse)
    host = mps_module.query_mac_host()
    assert host.platform == "linux"
    assert host.macos_version is None
    assert host.chip is None


def test_host_query_on_macos_reads_version_and_chip(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        assert kwargs["timeout"]  # a hung sysctl must not hang detection
        return subprocess.CompletedProcess(args, 0, stdout="Apple M3 Max\n", stderr="")

    monkeypatch.setattr(mps_module, "_platform", lambda: "darwin")
    monkeypatch.setattr(platform, "mac_ver", lambda: ("14.6.1", ("", "", ""), "arm64"))
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    monkeypatch.setattr(subprocess, "run", fake_run)
    host = mps_module.query_mac_host()
    assert host == MacHost("darwin", "14.6.1", "arm64", "Apple M3 Max")
    assert calls == [["sysctl", "-n", "machdep.cpu.brand_string"]]


@pytest.mark.parametrize(
    "failure", [subprocess.TimeoutExpired("sysctl", 2), FileNotFoundError("sysctl")]
)
def test_a_failing_sysctl_means_no_chip(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(subprocess, "run", fail)
    assert mps_module._sysctl("machdep.cpu.brand_string") is None


# -- properties ------------------------------------------------------------------------------


def test_properties_come_from_metal_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch, recommended_max_memory=22_906_503_168, gpu_core_count=38)
    props = MPSBackend().properties()
    assert props.backend == "mps"
    assert props.index == 0
    assert props.name == "Apple M2 Pro"
    assert props.vendor == "Apple"
    assert props.total_memory_bytes == 22_906_503_168 == torch.mps.recommended_max_memory()
    assert props.multiprocessor_count == 38
    assert props.extra["macos_version"] == "14.5"
    assert props.extra["total_memory_source"] == "torch.mps.recommended_max_memory"


def test_total_memory_falls_back_to_host_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    monkeypatch.delattr(torch.mps, "recommended_max_memory")
    props = MPSBackend().properties()
    assert props.total_memory_bytes == psutil.virtual_memory().total
    assert props.extra["total_memory_source"] == "host RAM"


def test_name_falls_back_to_the_chip_then_a_generic_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch, chip="Apple M1")
    monkeypatch.delattr(torch.backends.mps, "get_name")
    monkeypatch.delattr(torch.backends.mps, "get_core_count")
    props = MPSBackend().properties()
    assert props.name == "Apple M1"
    assert props.multiprocessor_count is None
    monkeypatch.undo()

    fake_mps(monkeypatch, chip=None)
    monkeypatch.delattr(torch.backends.mps, "get_name")
    assert MPSBackend().properties().name == "Apple GPU"


def test_an_amd_gpu_is_amd_and_not_unified(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(
        monkeypatch,
        machine="x86_64",
        chip="Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz",
        device_name="AMD Radeon Pro 5500M",
        macos_version="13.6",
    )
    backend = MPSBackend()
    assert backend.properties().vendor == "AMD"
    assert Capability.UNIFIED_MEMORY not in backend.capabilities()


# -- capabilities ----------------------------------------------------------------------------


def test_capabilities_of_an_apple_silicon_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    assert MPSBackend().capabilities() == {
        Capability.FP16,
        Capability.BF16,
        Capability.UNIFIED_MEMORY,
        Capability.MEMORY_STATS,
        Capability.SYNCHRONIZE,
    }


def test_bf16_needs_macos_14(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch, macos_version="13.6.7")
    caps = MPSBackend().capabilities()
    assert Capability.FP16 in caps
    assert Capability.BF16 not in caps


def test_dtypes_are_probed_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch, supported_dtypes=("float32",))
    caps = MPSBackend().capabilities()
    assert Capability.FP16 not in caps
    assert Capability.BF16 not in caps


def test_no_allocator_api_means_no_memory_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    monkeypatch.delattr(torch.mps, "current_allocated_memory")
    assert Capability.MEMORY_STATS not in MPSBackend().capabilities()


def test_peak_reset_only_where_torch_keeps_mps_peaks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    assert Capability.PEAK_MEMORY_RESET not in MPSBackend().capabilities()
    monkeypatch.undo()

    fake_mps(monkeypatch, peak_stats=True)
    assert Capability.PEAK_MEMORY_RESET in MPSBackend().capabilities()


def test_real_probes_fail_without_an_mps_device() -> None:
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert not mps_module.probe_mps_dtype("float16")
    assert not mps_module._accelerator_peak_reset_works(torch)


def test_synchronize_calls_torch_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_mps(monkeypatch)
    backend = MPSBackend()
    backend.synchronize()
    backend.synchronize(backend.initialize())
    assert fake.synchronize_calls == 2


# -- the fake allocator ----------------------------------------------------------------------


def test_allocations_count_aligned_and_heaps_stay_until_empty_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_mps(monkeypatch, framework_bytes=3 * MIB)
    assert torch.mps.current_allocated_memory() == 0
    assert torch.mps.driver_allocated_memory() == 3 * MIB

    a = fake.allocate(1000)
    assert torch.mps.current_allocated_memory() == 16 * KIB  # rounded to the buffer alignment
    assert torch.mps.driver_allocated_memory() == 3 * MIB + 8 * MIB  # one small heap
    b = fake.allocate(100 * KIB)
    assert torch.mps.current_allocated_memory() == 16 * KIB + 112 * KIB
    assert torch.mps.driver_allocated_memory() == 3 * MIB + 8 * MIB  # fits the same heap

    fake.free(a)
    fake.free(b)
    assert torch.mps.current_allocated_memory() == 0
    assert torch.mps.driver_allocated_memory() == 3 * MIB + 8 * MIB  # cached, not returned
    torch.mps.empty_cache()
    assert torch.mps.driver_allocated_memory() == 3 * MIB


def test_driver_memory_grows_in_heap_sized_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_mps(monkeypatch)
    keep = fake.allocate(4 * MIB)
    assert torch.mps.driver_allocated_memory() == 32 * MIB
    big = fake.allocate(100 * MIB)
    assert torch.mps.driver_allocated_memory() == 32 * MIB + GIB  # Apple silicon's 1 GiB heaps
    huge = fake.allocate(600 * MIB + 1)
    assert torch.mps.driver_allocated_memory() == 32 * MIB + GIB + 602 * MIB  # its own heap
    assert torch.mps.driver_allocated_memory() >= torch.mps.current_allocated_memory()

    fake.free(big)
    fake.free(huge)
    torch.mps.empty_cache()
    # A heap still holding a live buffer is kept.
    assert torch.mps.driver_allocated_memory() == 32 * MIB
    assert torch.mps.current_allocated_memory() == 4 * MIB
    fake.free(keep)


def test_freed_space_is_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_mps(monkeypatch)
    fake.free(fake.allocate(4 * MIB))
    fake.allocate(4 * MIB)
    assert torch.mps.driver_allocated_memory() == 32 * MIB


def test_zero_bytes_and_bad_handles(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_mps(monkeypatch)
    empty = fake.allocate(0)
    assert torch.mps.current_allocated_memory() == 0
    fake.free(empty)
    with pytest.raises(ValueError, match="already freed"):
        fake.free(empty)
    with pytest.raises(ValueError, match="nbytes"):
        fake.allocate(-1)


def test_allocating_past_the_working_set_limit_is_out_of_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_mps(monkeypatch, recommended_max_memory=GIB)
    fake.allocate(GIB)
    with pytest.raises(torch.OutOfMemoryError, match="MPS backend out of memory"):
        fake.allocate(GIB)


def test_without_mps_the_memory_api_raises_like_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = no_mps(monkeypatch, "not_built")
    with pytest.raises(RuntimeError, match=r"getCurrentAllocatedMemory\(\) without MPS backend"):
        torch.mps.current_allocated_memory()
    with pytest.raises(RuntimeError, match=r"deviceSynchronize\(\) without MPS backend"):
        torch.mps.synchronize()
    with pytest.raises(NotImplementedError, match="'MPS' backend"):
        fake.allocate(10)


def test_accelerator_peaks_persist_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_mps(monkeypatch, peak_stats=True)
    assert torch.accelerator.current_accelerator() == torch.device("mps")
    handle = fake.allocate(64 * MIB)
    fake.free(handle)
    assert torch.accelerator.memory_allocated(0) == 0
    assert torch.accelerator.max_memory_allocated(0) == 64 * MIB
    assert torch.accelerator.max_memory_reserved("mps:0") == GIB
    torch.accelerator.reset_peak_memory_stats(0)
    assert torch.accelerator.max_memory_allocated(0) == 0
    assert torch.accelerator.max_memory_reserved(0) == GIB  # the heap is still held
    with pytest.raises(RuntimeError, match="index 1"):
        torch.accelerator.memory_stats(1)
    with pytest.raises(ValueError, match="doesn't match the current accelerator"):
        torch.accelerator.memory_stats(torch.device("cpu"))


def test_without_peak_stats_the_accelerator_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    with pytest.raises(RuntimeError, match="does not support"):
        torch.accelerator.reset_peak_memory_stats(0)


def test_fake_describes_itself_consistently() -> None:
    fake = FakeMPS(platform="linux")
    assert not fake.built
    assert not fake.available
    assert fake.macos_version is None
    assert fake.is_macos_or_newer(12, 3) is False
    assert FakeMPS(macos_version="14.0").is_macos13_or_newer(4)
