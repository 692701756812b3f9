"""Fixtures shared by the example suites.

Every example follows one pattern: a fixture builds the model on ``hw_device``; the test calls
its step once (kernels, workspaces and caches for these shapes are set up then), and measures
the step's next call inside ``with memory_profile.measure("step"):``. The figure the report
shows, and the memory limit checks, is what the step itself costs (activations, gradients,
optimizer state), not one-time costs. The plugin does the rest of the clean start: it warms
each platform up before its first measured test and gives freed memory back to the OS before
each one, so the figures do not depend on which tests ran before.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

# CPU runs stay small and comparable between machines (CI runners, laptops).
MAX_CPU_THREADS = 2


@pytest.fixture(scope="session", autouse=True)
def _bounded_cpu_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(min(MAX_CPU_THREADS, previous))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    # Seeds the CPU and every accelerator generator: the same weights and data on every platform.
    torch.manual_seed(0)
