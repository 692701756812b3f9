from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Callable

import pytest

from pytest_hwbench import hardware
from pytest_hwbench.hardware.base import (
    Capability,
    Detection,
    DeviceProperties,
    HardwareBackend,
    HardwareDetectionWarning,
    UnknownHardwareError,
)
from pytest_hwbench.hardware.registry import ENTRY_POINT_GROUP, BrokenBackend, HardwareRegistry
from pytest_hwbench.testing import FakeBackend, fake_registry


class TPUBackend(HardwareBackend):
    name = "tpu"
    torch_device_type = "xla"

    def detect(self) -> Detection:
        return Detection(available=True, device_count=8)

    def _query_properties(self, index: int) -> DeviceProperties:
        return DeviceProperties("tpu", index, "TPU v5e", "Google", 16 * 2**30)

    def _query_capabilities(self, index: int) -> frozenset[Capability]:
        return frozenset({Capability.BF16})


def test_register_class_instance_and_decorator() -> None:
    registry = HardwareRegistry()
    assert registry.register(TPUBackend) is TPUBackend
    assert isinstance(registry.get("tpu"), TPUBackend)

    @registry.register
    class NPUBackend(TPUBackend):
        name = "npu"

    @registry.register(override=True)
    class OtherNPU(TPUBackend):
        name = "npu"

    fake = FakeBackend("ipu")
    assert registry.register(fake) is fake
    assert registry.names() == ["tpu", "npu", "ipu"]
    assert isinstance(registry.get("npu"), OtherNPU)
    assert "TPU" in registry
    assert "gpu" not in registry
    assert len(registry) == 3


def test_duplicate_name_says_pass_override() -> None:
    registry = HardwareRegistry()
    registry.register(TPUBackend)
    with pytest.raises(ValueError, match="'tpu' is already registered.*pass override=True"):
        registry.register(TPUBackend)


def test_register_rejects_non_backends() -> None:
    with pytest.raises(TypeError, match="HardwareBackend"):
        HardwareRegistry().register(object())  # type: ignore[call-overload]


def test_unknown_name_lists_registered_and_closest_match() -> None:
    registry = HardwareRegistry()
    registry.register_builtins()
    with pytest.raises(UnknownHardwareError) as excinfo:
        registry.get("cdua")
    message = str(excinfo.value)
    assert "registered backends: cpu, cuda, rocm, mps, xpu" in message
    assert "did you mean 'cuda'?" in message
    assert isinstance(excinfo.value, LookupError)


def test_unregister_removes() -> None:
    registry = HardwareRegistry()
    registry.register(TPUBackend)
    registry.unregister("tpu")
    assert registry.names() == []


def test_available_treats_raising_is_available_as_absent() -> None:
    class Exploding(TPUBackend):
        name = "exploding"

        def is_available(self) -> bool:
            raise OSError("device node vanished")

    registry = HardwareRegistry()
    registry.register(Exploding)
    registry.register(TPUBackend)
    with pytest.warns(HardwareDetectionWarning, match="'exploding' raised in is_available"):
        assert registry.available() == ["tpu"]


def test_backend_for_device_picks_the_available_one_of_a_shared_torch_type() -> None:
    registry = HardwareRegistry()
    registry.register(FakeBackend("cuda", available=False))
    registry.register(FakeBackend("rocm", torch_device_type="cuda"))
    assert registry.backend_for_device("cuda:0").name == "rocm"
    with pytest.raises(UnknownHardwareError, match="'vulkan'"):
        registry.backend_for_device("vulkan")


def test_refresh_reaches_every_backend() -> None:
    registry = HardwareRegistry()
    backend = FakeBackend("tpu")
    registry.register(backend)
    assert backend.is_available()
    backend._available = False
    assert backend.is_available()  # cached
    registry.refresh()
    assert not backend.is_available()


def test_entry_point_backend_is_registered_after_builtins(
    monkeypatch: pytest.MonkeyPatch, install_entry_points: Callable[..., None]
) -> None:
    module = types.ModuleType("acme_tpu")
    module.TPUBackend = TPUBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acme_tpu", module)
    install_entry_points(ENTRY_POINT_GROUP, ("tpu", "acme_tpu:TPUBackend"))
    assert hardware.default_registry().names() == [
        "cpu", "cuda", "rocm", "mps", "xpu", "xla", "npu", "hpu", "mlu", "musa", "mtia", "tpu"
    ]  # fmt: skip
    assert "tpu" in hardware.get_available_hardware()
    assert hardware.get_hardware_backend("tpu").device_count() == 8


def test_broken_entry_point_is_a_warning_and_an_unavailable_backend(
    monkeypatch: pytest.MonkeyPatch, install_entry_points: Callable[..., None]
) -> None:
    install_entry_points(ENTRY_POINT_GROUP, ("npu", "no_such_module_xyz:NPUBackend"))
    with pytest.warns(HardwareDetectionWarning, match="'npu' failed to load.*no_such_module_xyz"):
        registry = hardware.default_registry()
    broken = registry.get("npu")
    assert isinstance(broken, BrokenBackend)
    assert not broken.is_available()
    assert "No module named 'no_such_module_xyz'" in (broken.unavailable_reason() or "")
    assert "npu" not in hardware.get_available_hardware()


def test_entry_point_that_is_not_a_backend_is_reported(
    monkeypatch: pytest.MonkeyPatch, install_entry_points: Callable[..., None]
) -> None:
    module = types.ModuleType("acme_bad")
    module.thing = 42  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acme_bad", module)
    install_entry_points(ENTRY_POINT_GROUP, ("bad", "acme_bad:thing"))
    with pytest.warns(HardwareDetectionWarning, match="is not a HardwareBackend"):
        assert not hardware.default_registry().get("bad").is_available()


def test_fake_registry_replaces_and_restores_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    real = hardware.default_registry()
    with monkeypatch.context() as patch:
        fake = fake_registry(patch, FakeBackend("cuda", device_count=2))
        assert hardware.default_registry() is fake
        assert hardware.get_available_hardware() == ["cpu", "cuda"]
    assert hardware.default_registry() is real


def test_hook_registers_backend_from_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_hwbench.testing import FakeBackend

        def pytest_hwbench_register_backends(registry):
            registry.register(FakeBackend("tpu", device_count=4, torch_device_type="xla"))
        """
    )
    pytester.makepyfile(
        """
        from pytest_hwbench import hardware

        def test_tpu_is_registered():
            assert "tpu" in hardware.get_available_hardware()
            assert hardware.get_hardware_backend("tpu").device_count() == 4
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_broken_backend_stays_unavailable_when_warnings_are_errors() -> None:
    class Exploding(TPUBackend):
        name = "exploding"

        def detect(self) -> Detection:
            raise RuntimeError("driver exploded")

    registry = HardwareRegistry()
    registry.register(Exploding)
    registry.register(TPUBackend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registry.available() == ["tpu"]
        assert registry.get("exploding").unavailable_reason() == (
            "detection failed: RuntimeError: driver exploded"
        )


def test_builtins_are_imported_when_first_looked_up(pytester: pytest.Pytester) -> None:
    """A run on the host pays for no device backend's module: each loads on its first lookup,
    and walking the registry loads them all, in registration order."""
    pytester.makepyfile(
        check="""
        import sys

        from pytest_hwbench.hardware.registry import HardwareRegistry

        def loaded():
            return sorted(
                name
                for name in ("cpu", "cuda", "rocm", "mps", "xpu", "xla")
                if "pytest_hwbench.hardware." + name in sys.modules
            )

        registry = HardwareRegistry()
        registry.register_builtins()
        print("registered", loaded(), registry.names()[:6], "cuda" in registry, len(registry))
        print("cpu", type(registry.get("CPU")).__name__, loaded())
        print("walked", [type(b).__name__ for b in registry][:6], loaded())
        """
    )
    result = pytester.run(sys.executable, "check.py")
    assert result.ret == 0, result.stderr.str()
    assert result.outlines == [
        "registered [] ['cpu', 'cuda', 'rocm', 'mps', 'xpu', 'xla'] True 11",
        "cpu CPUBackend ['cpu']",
        "walked ['CPUBackend', 'CUDABackend', 'ROCmBackend', 'MPSBackend', 'XPUBackend', "
        "'XLABackend'] ['cpu', 'cuda', 'mps', 'rocm', 'xla', 'xpu']",
    ]


def test_a_deferred_builtin_is_named_in_the_duplicate_error() -> None:
    registry = HardwareRegistry()
    registry.register_builtins()
    with pytest.raises(ValueError, match="'cuda' is already registered [(]CUDABackend[)]"):
        registry.register(FakeBackend("cuda"))
    assert isinstance(registry.unregister("rocm"), HardwareBackend)
    assert "rocm" not in registry.names()
