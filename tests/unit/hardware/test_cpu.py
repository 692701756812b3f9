from __future__ import annotations

import os
import sys

import psutil
import pytest
import torch

from pytest_hwbench.hardware import cpu as cpu_module
from pytest_hwbench.hardware.base import Capability
from pytest_hwbench.hardware.cpu import CPUBackend, CPUInfo


def test_cpu_is_always_available_with_one_device() -> None:
    backend = CPUBackend()
    assert backend.is_available()
    assert backend.unavailable_reason() is None
    assert backend.device_count() == 1
    assert backend.fallbacks == ()
    assert backend.initialize() == torch.device("cpu")


def test_real_properties_come_from_the_os() -> None:
    props = CPUBackend().properties()
    assert props.backend == "cpu"
    assert props.name
    assert props.total_memory_bytes == psutil.virtual_memory().total
    assert int(props.extra["logical_cores"]) == psutil.cpu_count(logical=True)
    assert props.multiprocessor_count == psutil.cpu_count(logical=False)


def test_properties_use_the_query_function(monkeypatch: pytest.MonkeyPatch) -> None:
    info = CPUInfo(
        model_name="AMD EPYC 9654 96-Core Processor",
        vendor="AuthenticAMD",
        architecture="x86_64",
        logical_cores=192,
        physical_cores=96,
        total_memory_bytes=768 * 2**30,
    )
    monkeypatch.setattr(cpu_module, "query_cpu", lambda: info)
    props = CPUBackend().properties()
    assert props.name == "AMD EPYC 9654 96-Core Processor"
    assert props.vendor == "AuthenticAMD"
    assert props.total_memory_bytes == 768 * 2**30
    assert props.multiprocessor_count == 96
    assert props.extra["logical_cores"] == "192"


def test_real_capabilities_are_probed() -> None:
    caps = CPUBackend().capabilities()
    assert Capability.DEVICE_MEMORY_INFO in caps
    assert Capability.BF16 in caps  # torch runs bf16 matmul on every CPU it supports
    assert Capability.TF32 not in caps
    writable = sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)
    assert (Capability.PEAK_MEMORY_RESET in caps) == writable


def test_refused_clear_refs_means_no_peak_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_module, "clear_refs_writable", lambda: False)
    assert Capability.PEAK_MEMORY_RESET not in CPUBackend().capabilities()


@pytest.mark.parametrize(("optimizer_step", "passes"), [(True, 2), (False, 1)])
def test_warm_up_repeats_its_step_only_for_the_optimizer(
    monkeypatch: pytest.MonkeyPatch, optimizer_step: bool, passes: int
) -> None:
    """The second step exists for the optimizer's paths with state present; without an
    optimizer it would only repeat the first step's matmuls."""
    backward = torch.autograd.backward
    calls: list[object] = []

    def counting_backward(*args: object, **kwargs: object) -> None:
        calls.append(args)
        backward(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.autograd, "backward", counting_backward)
    CPUBackend().warm_up(0, optimizer_step=optimizer_step)
    assert len(calls) == passes
