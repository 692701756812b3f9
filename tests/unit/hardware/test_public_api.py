"""The hardware part of DESIGN.md's public API, verbatim, and its fallback rules."""

from __future__ import annotations

import pytest
import torch

from pytest_hwbench import hardware
from pytest_hwbench.hardware import (
    HardwareFallbackWarning,
    HardwareUnavailableError,
    UnknownHardwareError,
    parse_device_spec,
)
from pytest_hwbench.testing import FakeBackend, fake_registry


@pytest.mark.usefixtures("cpu_only_machine")
def test_design_snippet_runs_on_a_cpu_only_machine() -> None:
    with pytest.warns(HardwareFallbackWarning) as record:
        from pytest_hwbench import hardware

        available = hardware.get_available_hardware()  # e.g. ["cpu", "cuda"]
        device = hardware.initialize_hardware("cuda")  # torch.device; falls back with a warning
        assert device == torch.device("cpu")
        backend = hardware.get_hardware_backend("cuda")
        device = backend.initialize()
    assert available == ["cpu"]
    assert device == torch.device("cpu")
    assert len(record) == 2


@pytest.mark.usefixtures("cpu_only_machine")
def test_fallback_warning_names_request_result_and_reason() -> None:
    with pytest.warns(HardwareFallbackWarning) as record:
        device = hardware.initialize_hardware("cuda")
    assert device == torch.device("cpu")
    message = str(record[0].message)
    assert message.startswith("cuda was requested but is not available: torch was built without")
    assert "using cpu instead" in message
    assert "rocm (" in message  # the chain's intermediate step and why it failed too


def test_strict_raises_with_the_reason() -> None:
    with pytest.raises(HardwareUnavailableError, match="mps was requested with strict=True.*macOS"):
        hardware.initialize_hardware("mps", strict=True)


def test_cpu_needs_no_fallback(recwarn: pytest.WarningsRecorder) -> None:
    assert hardware.initialize_hardware("cpu") == torch.device("cpu")
    assert len(recwarn) == 0


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(
        UnknownHardwareError, match="registered backends: cpu, cuda, rocm, mps, xpu"
    ):
        hardware.initialize_hardware("tpu")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cuda", ("cuda", None)),
        ("CUDA:1", ("cuda", 1)),
        (torch.device("cuda", 3), ("cuda", 3)),
        (torch.device("cpu"), ("cpu", None)),
        ("mps:0", ("mps", 0)),
    ],
)
def test_device_specs(spec: str | torch.device, expected: tuple[str, int | None]) -> None:
    assert parse_device_spec(spec) == expected


def test_bad_index_text_is_rejected() -> None:
    with pytest.raises(ValueError, match="'cuda:x'.*non-negative integer"):
        parse_device_spec("cuda:x")


def test_present_platform_initializes_the_requested_index(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_registry(monkeypatch, FakeBackend("cuda", device_count=2))
    assert hardware.initialize_hardware("cuda:1") == torch.device("cuda", 1)
    assert hardware.initialize_hardware(torch.device("cuda", 0)) == torch.device("cuda", 0)
    with pytest.raises(HardwareUnavailableError, match="index 5 is out of range: 2 cuda devices"):
        hardware.initialize_hardware("cuda:5")


def test_fallback_chain_is_walked_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_registry(
        monkeypatch,
        FakeBackend("cuda", available=False, reason="no driver", fallbacks=("rocm", "cpu")),
        FakeBackend("rocm", torch_device_type="cuda"),
    )
    with pytest.warns(HardwareFallbackWarning, match="cuda was requested.*no driver; using cuda:0"):
        assert hardware.initialize_hardware("cuda") == torch.device("cuda", 0)


def test_torch_cuda_device_resolves_to_rocm_on_a_hip_build(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_registry(
        monkeypatch,
        FakeBackend("cuda", available=False),
        FakeBackend("rocm", torch_device_type="cuda"),
    )
    assert parse_device_spec(torch.device("cuda", 0)) == ("rocm", 0)
    assert parse_device_spec("cuda:0") == ("cuda", 0)  # a registry name wins as written


def test_inventory_lists_every_backend_but_absent_generic_accelerators() -> None:
    inventory = hardware.hardware_inventory()
    # npu, hpu... are registered (markers naming them validate) but not this machine's.
    assert "npu" in hardware.default_registry()
    names = [b["name"] for b in inventory["backends"]]
    assert names == ["cpu", "cuda", "rocm", "mps", "xpu", "xla"]
    assert inventory["torch"]["version"] == torch.__version__
    assert inventory["torch"]["accelerator"] is None  # a CPU build


def test_fallback_to_another_gpu_keeps_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_registry(
        monkeypatch,
        FakeBackend("cuda", available=False, reason="no driver", fallbacks=("rocm", "cpu")),
        FakeBackend("rocm", torch_device_type="cuda", device_count=2),
    )
    with pytest.warns(HardwareFallbackWarning, match="using cuda:1 instead"):
        assert hardware.initialize_hardware("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(HardwareUnavailableError, match="index 3 is out of range: 2 rocm devices"):
        hardware.initialize_hardware("cuda:3")
