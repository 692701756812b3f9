"""Fixtures shared by the example suites.

Every example follows one pattern: a fixture builds the model on ``hw_device`` and warms it up
(``warm_up``), and only then does the test request ``memory_profile``. The measured growth is
what the step itself costs (activations, gradients, optimizer state), not one-time costs of the
process such as loading kernels, which the first test to touch them would otherwise carry.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable, Iterator

import pytest
import torch

# CPU runs stay small and comparable between machines (CI runners, laptops).
MAX_CPU_THREADS = 2


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None


_malloc_trim = _glibc_malloc_trim()


def release_freed_host_memory() -> None:
    """Give memory freed by earlier code back to the OS.

    On the CPU the plugin measures the process's resident set size. glibc keeps freed memory
    resident and hands it out again, so without this a test that runs after a bigger one would
    look almost free, and the same test would measure differently alone and in the suite.
    """
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


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


@pytest.fixture
def warm_up(hw_backend) -> Callable[[Callable[[], object]], None]:
    """``warm_up(step)``: run `step` once, wait for the device, release what it freed.

    The first run of a kernel pays for loading it and for library set-up (oneDNN primitives,
    cuBLAS workspaces, Metal pipelines); benchmarks run a step once before measuring for the
    same reason.
    """

    def run(step: Callable[[], object]) -> None:
        step()
        hw_backend.synchronize()
        release_freed_host_memory()

    return run
