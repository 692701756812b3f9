"""The facts the XLA unit tests check against `FakeXLA`, checked against a real TPU."""

from __future__ import annotations

import inspect

import pytest
import torch

from pytest_hwbench.hardware.base import Capability, HardwareUnavailableError
from pytest_hwbench.hardware.xla import XLABackend, import_torch_xla, memory_info_bytes
from pytest_hwbench.metrics.memory.xla import XLAMemoryMetric
from pytest_hwbench.testing._xla import FakeXLA

pytestmark = pytest.mark.hardware("xla")

MIB = 1024 * 1024


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_real_functions_take_what_the_fake_takes() -> None:
    torch_xla = import_torch_xla()
    xm = import_torch_xla("core.xla_model")
    xr = import_torch_xla("runtime")

    fake = FakeXLA(api="new")
    assert _parameters(xm.get_memory_info) == _parameters(fake.get_memory_info) == ["device"]
    assert _parameters(xm.wait_device_ops) == _parameters(fake.wait_device_ops) == ["devices"]
    assert _parameters(xm.xla_device_hw) == _parameters(fake.xla_device_hw) == ["device"]
    assert _parameters(xm.xla_real_devices) == _parameters(fake.xla_real_devices)
    assert _parameters(torch_xla.sync) == _parameters(fake.sync) == ["wait", "reset_scope"]
    assert _parameters(torch_xla.device) == _parameters(fake.device) == ["index"]
    assert _parameters(xr.runtime_device_attributes) == ["device"]
    assert callable(xr.device_type)
    assert callable(xr.addressable_device_count)
    assert callable(torch_xla._XLAC._xla_runtime_is_initialized)
    if hasattr(xm, "xla_device_kind"):
        assert _parameters(xm.xla_device_kind) == _parameters(fake.xla_device_kind)


def test_memory_info_has_the_keys_the_fake_returns() -> None:
    xm = import_torch_xla("core.xla_model")

    info = xm.get_memory_info(torch.device("xla", 0))
    assert {"bytes_used", "bytes_limit"} <= set(info)
    used, limit, peak = memory_info_bytes(info)
    assert 0 <= used <= limit
    if peak is not None:  # torch_xla 2.6+
        assert peak >= used


def test_every_device_initializes() -> None:
    xr = import_torch_xla("runtime")

    backend = XLABackend()
    count = backend.device_count()
    assert count == xr.addressable_device_count() >= 1
    for index in range(count):
        assert backend.initialize(index) == torch.device("xla", index)
    with pytest.raises(HardwareUnavailableError, match=rf"index {count} is out of range: {count} "):
        backend.initialize(count)


def test_properties_and_capabilities() -> None:
    torch_xla = import_torch_xla()
    xm = import_torch_xla("core.xla_model")

    backend = XLABackend()
    props = backend.properties(0)
    assert props.extra["hardware"] == xm.xla_device_hw("xla:0")
    assert props.runtime_version == torch_xla.__version__
    caps = backend.capabilities(0)
    assert Capability.SYNCHRONIZE in caps
    assert Capability.PEAK_MEMORY_RESET not in caps
    if props.extra["hardware"] == "TPU":
        assert props.vendor == "Google"
        assert Capability.BF16 in caps
        assert Capability.DEVICE_MEMORY_INFO in caps
        assert props.total_memory_bytes > 0
        if Capability.BF16 in caps:
            a = torch.ones((4, 4), dtype=torch.bfloat16, device=backend.initialize(0))
            assert (a @ a).float().sum().item() == 64.0


def test_bad_indices_raise_what_the_fake_raises() -> None:
    torch_xla = import_torch_xla()
    xm = import_torch_xla("core.xla_model")

    count = XLABackend().device_count()
    with pytest.raises(IndexError, match="list index out of range"):
        xm.xla_device_hw(f"xla:{count}")
    with pytest.raises(IndexError, match=rf"Device index {count + 1} out of range"):
        torch_xla.device(count + 1)
    with pytest.raises(IndexError):  # std::out_of_range from the device mapper
        xm.get_memory_info(torch.device("xla", count))


def test_a_real_buffer_moves_used_and_raises_the_lifetime_peak() -> None:
    torch_xla = import_torch_xla()
    xm = import_torch_xla("core.xla_model")

    backend = XLABackend()
    device = backend.initialize(0)
    backend.synchronize()
    metric = XLAMemoryMetric("xla:0", backend=backend, index=0, interval="1s").start()
    tensor = torch.zeros(64 * MIB, dtype=torch.uint8, device=device)
    torch_xla.sync()
    xm.wait_device_ops()
    held = metric.record_memory("held")
    del tensor
    metrics = metric.stop()
    used = metrics["series"]["used"]
    assert held.values["used"] - used["start_bytes"] >= 64 * MIB
    assert used["peak_delta_bytes"] >= 64 * MIB
