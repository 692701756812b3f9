from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata

import pytest

# pytester's in-process runs restore sys.modules afterwards, and torch cannot be imported twice in
# one process: importing it here keeps it loaded across every in-process run.
import torch

# Likewise torch._dynamo, which the first optimizer step imports (the plugin's warm-up takes
# one): imported again after a run dropped it, it fails to register its operators twice.
import torch._dynamo  # noqa: F401

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


@pytest.fixture
def install_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``install(group, (name, "module:attr"), ...)``: what installed distributions advertise in
    `group` from now on (``importlib.metadata.entry_points``); other groups stay as they are."""
    real = metadata.entry_points
    installed: dict[str, metadata.EntryPoints] = {}

    def entry_points(**params: str) -> metadata.EntryPoints:
        group = params.get("group")
        if group in installed and set(params) == {"group"}:
            return installed[group]
        return real(**params)

    def install(group: str, *entries: tuple[str, str]) -> None:
        installed[group] = metadata.EntryPoints(
            metadata.EntryPoint(name=name, value=value, group=group) for name, value in entries
        )
        monkeypatch.setattr(metadata, "entry_points", entry_points)

    return install
