from __future__ import annotations

import json

import pytest
import torch

from pytest_hwbench.hardware.base import (
    Capability,
    Detection,
    DeviceProperties,
    HardwareBackend,
    HardwareDetectionWarning,
    HardwareFallbackWarning,
    HardwareUnavailableError,
    UnknownCapabilityError,
)
from pytest_hwbench.hardware.inventory import backend_inventory
from pytest_hwbench.testing import FakeBackend


def test_capability_parses_lower_case_values_and_enum_members() -> None:
    assert Capability.parse("bf16") is Capability.BF16
    assert Capability.parse(" BF16 ") is Capability.BF16
    assert Capability.parse(Capability.FP8) is Capability.FP8
    assert str(Capability.PEAK_MEMORY_RESET) == "peak_memory_reset"


def test_unknown_capability_lists_valid_names() -> None:
    with pytest.raises(UnknownCapabilityError, match="'bfloat'.*valid capabilities: fp16, bf16"):
        Capability.parse("bfloat")


def test_required_capabilities_exist() -> None:
    names = {c.value for c in Capability}
    assert {
        "fp16",
        "bf16",
        "fp8",
        "tf32",
        "memory_stats",
        "peak_memory_reset",
        "device_memory_info",
        "multi_device",
        "unified_memory",
        "synchronize",
    } <= names


def test_device_properties_json_round_trip() -> None:
    props = DeviceProperties(
        backend="cuda",
        index=1,
        name="NVIDIA H100 80GB HBM3",
        vendor="NVIDIA",
        total_memory_bytes=85_520_809_984,
        uuid="GPU-1d2b3c4d-0000-1111-2222-333344445555",
        compute_capability="9.0",
        multiprocessor_count=132,
        driver_version="550.54.15",
        runtime_version="12.4",
        extra={"l2_cache_bytes": "52428800"},
    )
    text = json.dumps(props.to_dict())
    assert DeviceProperties.from_dict(json.loads(text)) == props


class _CountingBackend(HardwareBackend):
    name = "counting"

    def __init__(self, outcome: Detection | Exception) -> None:
        super().__init__()
        self.outcome = outcome
        self.detect_calls = 0

    def detect(self) -> Detection:
        self.detect_calls += 1
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def _query_properties(self, index: int) -> DeviceProperties:
        return DeviceProperties("counting", index, "c", "v", 1)

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        return frozenset({Capability.FP16})


def test_torch_device_type_defaults_to_name() -> None:
    assert _CountingBackend.torch_device_type == "counting"


def test_detection_is_cached_until_refresh() -> None:
    backend = _CountingBackend(Detection(available=True, device_count=2))
    assert backend.is_available()
    assert backend.device_count() == 2
    assert backend.unavailable_reason() is None
    assert backend.detect_calls == 1
    backend.refresh()
    assert backend.is_available()
    assert backend.detect_calls == 2


def test_crash_in_detection_is_a_warning_and_an_unavailable_backend() -> None:
    backend = _CountingBackend(RuntimeError("driver exploded"))
    with pytest.warns(HardwareDetectionWarning, match="'counting' is unavailable.*driver exploded"):
        assert not backend.is_available()
    assert backend.unavailable_reason() == "detection failed: RuntimeError: driver exploded"
    assert backend.device_count() == 0


def test_available_but_zero_devices_is_unavailable_with_reason() -> None:
    backend = _CountingBackend(Detection(available=True, device_count=0))
    assert not backend.is_available()
    assert backend.unavailable_reason() == "counting: no devices visible"


def test_absent_backend_falls_back_or_raises_when_strict() -> None:
    backend = FakeBackend("cuda", available=False, reason="torch was built without CUDA")
    with pytest.warns(HardwareFallbackWarning, match="cuda was requested.*using cpu instead"):
        assert backend.initialize() == torch.device("cpu")
    with pytest.raises(HardwareUnavailableError, match="strict=True.*torch was built without"):
        backend.initialize(strict=True)
    with pytest.raises(HardwareUnavailableError, match="cuda is not available: torch was built"):
        backend.properties()
    assert not backend.has_capability("fp16")


def test_index_past_device_count_names_the_count() -> None:
    backend = FakeBackend("cuda", device_count=2)
    with pytest.raises(HardwareUnavailableError, match=r"index 2 .*2 cuda devices visible"):
        backend.initialize(2)


def test_multi_device_capability_follows_device_count() -> None:
    assert Capability.MULTI_DEVICE not in FakeBackend("cuda", device_count=1).capabilities()
    assert Capability.MULTI_DEVICE in FakeBackend("cuda", device_count=4).capabilities(3)


def test_inventory_is_json_and_lists_each_device() -> None:
    backend = FakeBackend("cuda", device_count=2, capabilities=["bf16"])
    inventory = json.loads(json.dumps(backend_inventory(backend)))
    assert inventory["available"] is True
    assert [d["properties"]["index"] for d in inventory["devices"]] == [0, 1]
    assert inventory["devices"][0]["capabilities"] == ["bf16", "multi_device"]
    absent = backend_inventory(FakeBackend("mps", available=False, reason="no MPS: not macOS"))
    assert absent["reason"] == "no MPS: not macOS"
    assert absent["devices"] == []
