"""Dtypes by name, and whether a device computes in them: from its capabilities."""

from __future__ import annotations

import pytest
import torch

from pytest_hwbench import hardware
from pytest_hwbench.hardware.dtypes import UnknownDtypeError, canonical_dtype, dtype_capability
from pytest_hwbench.testing import FakeBackend, FakeXPUDeviceProperties, fake_mps, fake_xpu


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("bfloat16", "bfloat16"),
        ("half", "float16"),
        ("torch.float64", "float64"),
        (torch.bfloat16, "bfloat16"),
        (torch.double, "float64"),
        (" Float32 ", "float32"),
    ],
)
def test_a_dtype_by_its_name_an_alias_or_itself(given: object, name: str) -> None:
    assert canonical_dtype(given) == name
    assert getattr(torch, name) is not None  # every name is torch's own


def test_every_name_is_a_dtype_of_this_torch() -> None:
    for name in hardware.DTYPE_NAMES:
        assert isinstance(getattr(torch, name), torch.dtype), name


def test_an_unknown_dtype_names_the_valid_ones() -> None:
    with pytest.raises(UnknownDtypeError, match=r"unknown dtype 'float128'; valid dtypes: float32"):
        canonical_dtype("float128")


def test_what_each_dtype_needs() -> None:
    assert dtype_capability("bfloat16") == "bf16"
    assert dtype_capability("complex128") == "fp64"
    assert dtype_capability("float8_e5m2") == "fp8"
    assert dtype_capability("int8") is None


def test_a_device_lacking_the_capability_says_so() -> None:
    gpu = FakeBackend("npu", capabilities=["fp16"])
    assert gpu.dtype_unmet_reason("float16") is None
    assert gpu.dtype_unmet_reason("float32") is None
    assert gpu.dtype_unmet_reason("bfloat16") == "npu: bfloat16 needs bf16, which npu:0 lacks"


def test_the_host_computes_in_float64() -> None:
    cpu = hardware.get_hardware_backend("cpu")
    assert cpu.has_capability("fp64")
    assert cpu.dtype_unmet_reason("double") is None


def test_mps_has_no_float64_and_a_client_xpu_may_lack_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mps(monkeypatch)
    mps = hardware.get_hardware_backend("mps")
    assert mps.dtype_unmet_reason("float64") == "mps: float64 needs fp64, which mps:0 lacks"
    assert mps.dtype_unmet_reason("bfloat16") is None  # macOS 14.5, where bf16 runs
    arc = FakeXPUDeviceProperties(name="Intel(R) Arc(TM) A770 Graphics", has_fp64=False)
    fake_xpu(monkeypatch, properties=arc)
    xpu = hardware.get_hardware_backend("xpu")
    assert xpu.dtype_unmet_reason("float64") == "xpu: float64 needs fp64, which xpu:0 lacks"
