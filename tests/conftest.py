from __future__ import annotations

from collections.abc import Iterator

import pytest

# pytester's in-process runs restore sys.modules afterwards, and torch cannot be imported twice in
# one process: importing it here keeps it loaded across every in-process run.
import torch  # noqa: F401

from pytest_hwbench.hardware.registry import reset_default_registry
from pytest_hwbench.metrics.memory.registry import reset_default_memory_metric_registry
from pytest_hwbench.testing import cpu_only_torch


@pytest.fixture(autouse=True)
def _fresh_default_registry() -> Iterator[None]:
    """Each test detects hardware anew: no cached registry leaks from a test that faked one."""
    reset_default_registry()
    reset_default_memory_metric_registry()
    yield
    reset_default_registry()
    reset_default_memory_metric_registry()


@pytest.fixture
def cpu_only_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without GPUs, for tests that expect CUDA absent, so they hold on a GPU
    machine too: torch here looks like a CPU-only build, and child processes see no CUDA device."""
    cpu_only_torch(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
