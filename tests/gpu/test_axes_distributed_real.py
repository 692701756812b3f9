"""The dtype axis, hw_devices and distributed tests on a real NVIDIA machine.

Twins of tests/plugin/test_axes.py (fake GPUs) and tests/plugin/test_distributed.py (gloo on the
CPU): the same suites with the real CUDA runtime and NCCL, one rank per GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.hardware("cuda")


def test_the_dtype_axis_follows_the_gpus_capabilities(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import torch

        @pytest.mark.hardware("cuda", dtypes=("float32", "bfloat16", "float64", "float8_e4m3fn"))
        def test_matmul(hw_device, hw_dtype):
            if hw_dtype.is_floating_point and hw_dtype.itemsize == 1:
                x = torch.ones(16, 16, device=hw_device).to(hw_dtype)
                assert x.dtype is hw_dtype
                return
            a = torch.ones(64, 64, device=hw_device, dtype=hw_dtype)
            assert (a @ a).dtype is hw_dtype
        """
    )
    result = pytester.runpytest("-v", "-rs", "-p", "no:cacheprovider")
    major, _ = torch.cuda.get_device_capability(0)
    fp8 = torch.cuda.get_device_capability(0) >= (8, 9)
    bf16 = major >= 8
    result.assert_outcomes(passed=2 + bf16 + fp8, skipped=2 - bf16 - fp8)


def test_hw_devices_on_the_gpus_there_are(pytester: pytest.Pytester) -> None:
    count = torch.cuda.device_count()
    pytester.makepyfile(
        f"""
        import pytest
        import torch

        @pytest.mark.hardware("cuda", min_count={count})
        def test_all(hw_devices):
            assert [d.index for d in hw_devices] == list(range({count}))
            for device in hw_devices:
                assert torch.ones(1, device=device).item() == 1
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_ddp_step_in_one_rank_per_gpu_with_its_allocator_peaks(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    suite = Path(__file__).resolve().parents[2] / "example_suites" / "test_ddp_step.py"
    pytester.makepyfile(test_ddp=suite.read_text())
    report = tmp_path / "ddp.json"
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", f"--hw-report={report}")
    result.assert_outcomes(passed=2)  # the CPU ranks (gloo) and the GPU ranks (nccl)
    entries = {t["nodeid"]: t for t in json.loads(report.read_text())["tests"]}
    gpu = next(t for nodeid, t in entries.items() if nodeid.endswith("[cuda]"))
    ranks = gpu["ranks"]
    assert [r["device"] for r in ranks] == [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for rank in ranks:
        allocated = rank["memory"]["series"]["allocated"]
        assert allocated["exact_peak"] is True
        assert allocated["peak_delta_bytes"] > 0  # the model, its gradients, DDP's buckets
