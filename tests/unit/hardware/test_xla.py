from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import torch

from pytest_hwbench.hardware import xla as xla_module
from pytest_hwbench.hardware.base import (
    Capability,
    HardwareFallbackWarning,
    HardwareUnavailableError,
)
from pytest_hwbench.hardware.xla import (
    XLABackend,
    XLAStatus,
    import_torch_xla,
    memory_info_bytes,
)
from pytest_hwbench.testing._xla import BROKEN_IMPORT, TPU_BUSY, FakeXLA, fake_xla, no_xla

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


# -- detection -------------------------------------------------------------------------------


def test_importing_the_backend_imports_neither_torch_nor_torch_xla() -> None:
    code = (
        "import sys; import pytest_hwbench.hardware.xla, pytest_hwbench.metrics.memory.xla; "
        "print(sorted(m for m in ('torch', 'torch_xla') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_not_installed_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    no_xla(monkeypatch)
    backend = XLABackend()
    assert not backend.is_available()
    assert backend.device_count() == 0
    reason = backend.unavailable_reason() or ""
    assert reason.startswith("torch_xla is not installed (pip install torch_xla[tpu])")
    with pytest.warns(HardwareFallbackWarning, match=re.escape("pip install torch_xla[tpu]")):
        assert backend.initialize() == torch.device("cpu")
    with pytest.raises(HardwareUnavailableError, match="torch_xla is not installed"):
        backend.initialize(strict=True)


def test_an_import_failure_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    no_xla(monkeypatch, "broken")
    assert XLABackend().unavailable_reason() == (
        f"torch_xla is unusable: ImportError: {BROKEN_IMPORT}"
    )


def test_no_xla_rejects_an_unknown_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="not_installed"):
        no_xla(monkeypatch, "gone")  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [1, 4])
def test_tpu_chips_are_counted_without_opening_the_runtime(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    fake = fake_xla(monkeypatch, count=count)
    backend = XLABackend()
    assert backend.is_available()
    assert backend.device_count() == count
    assert not fake.runtime_initialized  # another process may still open the TPU
    assert backend.fallbacks == ("cpu",)
    for index in range(count):
        assert backend.initialize(index) == torch.device("xla", index)
    assert fake.runtime_initialized
    assert fake.default_device == count - 1  # torch_xla.device(n) makes n the default
    plural = "s" if count != 1 else ""
    with pytest.raises(
        HardwareUnavailableError,
        match=rf"index {count} is out of range: {count} xla device{plural} visible",
    ):
        backend.initialize(count)


def test_v3_chips_hold_two_devices_each(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=8, chip_id="0x0027", hw="TPU v3")
    assert fake.pci_chips() == ["0x0027"] * 4
    assert XLABackend().device_count() == 8


def test_tpu_visible_chips_limits_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, count=4)
    monkeypatch.setenv("TPU_VISIBLE_CHIPS", "1,3")
    backend = XLABackend()
    assert backend.device_count() == 2
    assert backend.count_devices_unopened() == 2
    monkeypatch.setenv("PJRT_DEVICE", "CPU")
    assert backend.count_devices_unopened() is None  # TPU chips are not what CPU runs on


def test_an_opened_runtime_is_asked_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=4, runtime_initialized=True, pci_visible=False)
    assert XLABackend().device_count() == 4
    assert fake.runtime_initialized


def test_without_sysfs_the_runtime_counts_and_a_busy_tpu_is_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_xla(monkeypatch, count=4, pci_visible=False)
    assert XLABackend().device_count() == 4  # counted by opening the runtime
    assert fake.runtime_initialized
    fake_xla(monkeypatch, count=4, pci_visible=False, runtime_error=TPU_BUSY)
    assert XLABackend().unavailable_reason() == (
        f"torch_xla 2.7.0 is unusable: RuntimeError: {TPU_BUSY}"
    )


def test_no_device_type_and_no_device_are_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, device_type=None)
    assert XLABackend().unavailable_reason() == (
        "torch_xla 2.7.0: no PJRT device type selected (set PJRT_DEVICE=TPU, CPU, CUDA, ...)"
    )
    fake_xla(monkeypatch, count=0, device_type="CUDA")
    assert XLABackend().unavailable_reason() == "torch_xla 2.7.0: PJRT_DEVICE=CUDA has no device"


def test_other_pjrt_devices_are_counted_by_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=2, device_type="CUDA", hw="NVIDIA H100 80GB HBM3")
    assert XLABackend().device_count() == 2
    assert fake.runtime_initialized


def test_old_torch_xla_is_detected_without_torch_xla_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_xla(monkeypatch, count=2, api="old", device_type="CPU")
    with pytest.raises(ModuleNotFoundError):
        import_torch_xla("runtime")
    assert XLABackend().device_count() == 2
    assert fake.runtime_initialized


def test_detection_reads_the_query_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        xla_module,
        "query_xla",
        lambda: XLAStatus(installed=True, version="2.8.0", device_type="TPU", device_count=8),
    )
    assert XLABackend().device_count() == 8


@pytest.mark.parametrize(("count", "multi"), [(1, False), (4, True)])
def test_multi_device_follows_the_count(
    monkeypatch: pytest.MonkeyPatch, count: int, multi: bool
) -> None:
    fake_xla(monkeypatch, count=count)
    assert (Capability.MULTI_DEVICE in XLABackend().capabilities(0)) is multi


def test_class_facts() -> None:
    assert XLABackend.name == XLABackend.torch_device_type == "xla"
    assert XLABackend.visibility_variables == ()  # no pinning plan: libtpu needs more than it
    assert XLABackend.torch_runtime_attribute is None
    assert XLABackend().queues_work()


# -- properties ------------------------------------------------------------------------------


def test_tpu_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, count=4, bytes_limit=16 * GIB)
    props = XLABackend().properties(2)
    assert props.backend == "xla"
    assert props.index == 2
    assert props.name == "TPU v5 lite"
    assert props.vendor == "Google"
    assert props.total_memory_bytes == 16 * GIB
    assert props.runtime_version == "2.7.0"
    assert props.extra["hardware"] == "TPU"
    assert props.extra["real_device"] == "TPU:2"
    assert props.extra["pjrt_device"] == "TPU"
    assert props.extra["device_kind"] == "TPU v5 lite"
    assert props.extra["attribute.coords"] == "[0, 1, 0]"
    assert props.extra["total_memory_source"] == "xm.get_memory_info"


def test_old_properties_read_kib_and_the_hardware_name(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, count=2, api="old", bytes_limit=16 * GIB)
    props = XLABackend().properties(1)
    assert props.name == "TPU"  # no xla_device_kind before 2.7
    assert props.total_memory_bytes == 16 * GIB  # kb_total * 1024
    assert props.runtime_version == "2.0.0"
    assert "device_kind" not in props.extra


def test_a_device_without_memory_info_has_zero_total_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_xla(monkeypatch, count=1, device_type="CPU", hw="cpu")
    props = XLABackend().properties()
    assert props.total_memory_bytes == 0
    assert props.vendor == "unknown"
    assert props.extra["total_memory_source"] == (
        "unavailable: RuntimeError: UNIMPLEMENTED: GetAllocatorStats is not supported"
    )


# -- capabilities ----------------------------------------------------------------------------


def test_tpu_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, count=1)
    assert XLABackend().capabilities() == {
        Capability.BF16,
        Capability.FP16,
        Capability.DEVICE_MEMORY_INFO,
        Capability.SYNCHRONIZE,
    }


def test_peak_reset_is_never_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, count=4)
    backend = XLABackend()
    assert not backend.has_capability("peak_memory_reset", 1)
    assert not backend.has_capability("memory_stats", 1)


def test_dtypes_follow_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(
        monkeypatch,
        count=1,
        device_type="CPU",
        hw="cpu",
        supported_dtypes=("float32", "float64", "float16"),
    )
    caps = XLABackend().capabilities()
    assert {Capability.FP64, Capability.FP16, Capability.UNIFIED_MEMORY} <= caps
    assert Capability.BF16 not in caps  # off a TPU the probe decides
    assert Capability.DEVICE_MEMORY_INFO not in caps  # PJRT's CPU client has no stats
    assert XLABackend().dtype_unmet_reason("bfloat16") == (
        "xla: bfloat16 needs bf16, which xla:0 lacks"
    )


def test_tpu_bf16_needs_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, count=1, supported_dtypes=("float32",))
    caps = XLABackend().capabilities()
    assert Capability.BF16 in caps
    assert Capability.FP16 not in caps


# -- synchronize -----------------------------------------------------------------------------


def test_synchronize_is_the_step_barrier_then_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=4)
    backend = XLABackend()
    backend.synchronize(torch.device("xla", 3))
    backend.synchronize()
    assert fake.calls == ["sync", "wait_device_ops", "sync", "wait_device_ops"]
    assert (fake.sync_calls, fake.wait_calls) == (2, 2)


def test_old_torch_xla_synchronizes_with_mark_step(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=1, api="old")
    XLABackend().synchronize(0)
    assert fake.calls == ["mark_step", "wait_device_ops"]


# -- the fake --------------------------------------------------------------------------------


def _xm() -> Any:
    return import_torch_xla("core.xla_model")


def test_memory_info_keys_and_units_per_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=2, bytes_limit=GIB, baseline_bytes=256 * KIB)
    xm = _xm()
    handle = fake.allocate(1, 3 * MIB)
    assert xm.get_memory_info(torch.device("xla", 1)) == {
        "bytes_used": 3 * MIB + 256 * KIB,
        "bytes_limit": GIB,
        "peak_bytes_used": 3 * MIB + 256 * KIB,
    }
    fake.free(handle)
    info = xm.get_memory_info("xla:1")
    assert info["bytes_used"] == 256 * KIB
    assert info["peak_bytes_used"] == 3 * MIB + 256 * KIB  # a lifetime peak: nothing resets it
    assert memory_info_bytes(info) == (256 * KIB, GIB, 3 * MIB + 256 * KIB)

    fake = fake_xla(monkeypatch, count=1, api="no_peak", bytes_limit=GIB)
    fake.allocate(0, MIB)
    assert set(_xm().get_memory_info("xla:0")) == {"bytes_used", "bytes_limit"}

    fake = fake_xla(monkeypatch, count=1, api="old", bytes_limit=GIB)
    fake.allocate(0, 5 * MIB)
    info = _xm().get_memory_info("xla:0")
    assert info == {"kb_free": (GIB - 5 * MIB) // KIB, "kb_total": GIB // KIB}
    assert memory_info_bytes(info) == (5 * MIB, GIB, None)


def test_bad_indices_raise_torch_xlas_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=4)
    torch_xla = import_torch_xla()
    xm = _xm()
    with pytest.raises(IndexError, match=r"Device index 5 out of range in \['xla:0'"):
        torch_xla.device(5)
    with pytest.raises(IndexError, match="list index out of range"):
        torch_xla.device(4)  # torch_xla compares with > only
    with pytest.raises(IndexError, match="list index out of range"):
        xm.xla_device_hw("xla:4")
    with pytest.raises(RuntimeError, match="Invalid device format: cuda:0"):
        xm.xla_real_devices(["cuda:0"])
    with pytest.raises(IndexError, match=r"__n \(which is 4\) >= this->size\(\) \(which is 4\)"):
        xm.get_memory_info("xla:4")
    with pytest.raises(IndexError, match="which is 9"):
        fake.allocate(9, MIB)


def test_out_of_memory_is_resource_exhausted(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_xla(monkeypatch, count=1, bytes_limit=100 * MIB)
    fake.allocate(0, 80 * MIB)
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED: Error allocating device buffer"):
        fake.allocate(0, 30 * MIB)


def test_the_fake_api_follows_its_generation(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_xla(monkeypatch, count=2)
    torch_xla = import_torch_xla()
    xr = import_torch_xla("runtime")

    xm = _xm()
    assert torch_xla.__version__ == "2.7.0"
    assert xr.device_type() == "TPU"
    assert xr.addressable_device_count() == xr.global_runtime_device_count() == 2
    assert torch_xla.real_devices() == ["TPU:0", "TPU:1"]
    assert xm.xla_device_kind("xla:1") == "TPU v5 lite"
    assert xm.get_xla_supported_devices() == ["xla:0", "xla:1"]

    fake_xla(monkeypatch, count=2, api="no_peak")
    assert not hasattr(_xm(), "xla_device_kind")  # 2.7+
    assert hasattr(sys.modules["torch_xla"], "sync")  # 2.4+

    fake_xla(monkeypatch, count=2, api="old")
    old = sys.modules["torch_xla"]
    assert not hasattr(old, "sync")
    assert not hasattr(old, "device")
    assert _xm().get_xla_supported_devices("TPU") == ["xla:0", "xla:1"]
    assert _xm().get_xla_supported_devices("GPU") == []


def test_fake_arguments_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="count"):
        FakeXLA(-1)
    with pytest.raises(ValueError, match="api must be one of new, no_peak, old"):
        FakeXLA(api="newest")  # type: ignore[arg-type]
    fake = fake_xla(monkeypatch, count=1)
    handle = fake.allocate(0, MIB)
    fake.free(handle)
    with pytest.raises(ValueError, match="already freed"):
        fake.free(handle)
    with pytest.raises(ValueError, match="nbytes"):
        fake.allocate(0, -1)
