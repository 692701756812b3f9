"""A small conv net's inference under `torch.inference_mode()` at batch sizes 1, 8 and 32."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

CHANNELS = 3
IMAGE_SIZE = 64
CLASSES = 10

pytestmark = pytest.mark.hardware("cpu", "cuda", "mps", "xpu")


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def make_convnet() -> nn.Sequential:
    return nn.Sequential(
        conv_block(CHANNELS, 32),
        conv_block(32, 64),
        conv_block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, CLASSES),
    )


@pytest.fixture
def convnet(hw_device) -> nn.Sequential:
    model = make_convnet()
    # Non-trivial BatchNorm statistics, so that eval mode really differs from train mode.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.to(hw_device).eval()


def batch(size: int, *, cpu: str, gpu: str, mps: str) -> Any:
    """A batch size with its own memory budget: activations grow with the batch."""
    return pytest.param(size, marks=pytest.mark.memory_limit(cpu=cpu, cuda=gpu, xpu=gpu, mps=mps))


# The forward's peak growth on a 2-core x86 CPU: ~1 MiB (batch 1), ~8 MiB (8), ~32 MiB (32),
# within 0.3 MiB in any order (benchmarks/order_stability.py). The GPU budgets leave room for
# convolution workspaces (cuDNN, oneDNN) and MPS's coarser heaps.
@pytest.mark.parametrize(
    "batch_size",
    [
        batch(1, cpu="24MiB", gpu="64MiB", mps="96MiB"),
        batch(8, cpu="40MiB", gpu="64MiB", mps="96MiB"),
        batch(32, cpu="128MiB", gpu="128MiB", mps="192MiB"),
    ],
)
def test_inference(convnet, hw_device, memory_profile, batch_size):
    images = torch.randn(batch_size, CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=hw_device)
    with torch.inference_mode():
        convnet(images)  # the first call at this batch size sets up kernels and workspaces
        with memory_profile.measure("forward"):
            logits = convnet(images)
            memory_profile.record_memory("after forward")
            probabilities = logits.softmax(dim=1)
        alone = convnet(images[-1:])  # the last image on its own

    assert logits.shape == (batch_size, CLASSES)
    assert torch.is_inference(logits)
    assert not logits.requires_grad
    assert torch.isfinite(logits).all()
    ones = torch.ones(batch_size, device=hw_device)
    assert torch.allclose(probabilities.sum(dim=1), ones)
    # In eval mode BatchNorm uses its running statistics: no sample's output depends on the rest
    # of the batch (train-mode batch statistics move it by ~0.07 here). The tolerance allows for the
    # TF32 convolutions cuDNN uses by default and for different algorithms per batch size.
    assert torch.allclose(logits[-1:], alone, rtol=1e-3, atol=2e-3)
