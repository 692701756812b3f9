"""A small training step that pays a device's one-time costs before anything is measured.

The first matmul on a device loads its kernels and creates library handles (cuBLAS and its
workspace on CUDA, oneDNN primitives on the CPU); the first backward pass starts the autograd
engine's device threads; the first optimizer step compiles its multi-tensor paths. Whichever
test touches them first would carry those costs, so a test's memory figure would depend on the
tests before it. `training_step` touches each of them once, with tiny tensors, from fixed values
(no random generator is drawn from: a seeded test suite sees the same numbers with or without it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["training_step"]

#: The MLP's width and batch: big enough that the kernels' per-size buffers (oneDNN's scratchpad,
#: BLAS packing) reach the size of a typical test's, small enough to take milliseconds.
WIDTH = 1024
BATCH = 256


def training_step(
    device: torch.device, dtypes: Iterable[torch.dtype], *, optimizer_step: bool = True
) -> None:
    """Run forward and backward passes of a tiny MLP and conv net on `device`, and optimizer steps.

    In float32, and a matmul in each of `dtypes` (half types where the device has them).
    ``optimizer_step=False`` leaves the optimizer out: its first step imports torch._dynamo
    (about a second and 70 MiB on a CPU), a cost only a suite that trains should pay.
    Everything it creates is freed before it returns; the caller synchronizes the device.
    """
    import torch
    from torch.nn import functional

    def ramp(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        count = 1
        for size in shape:
            count *= size
        values = torch.linspace(-1.0, 1.0, count, device=device, dtype=torch.float32)
        return values.reshape(shape).to(dtype)

    w1 = ramp(WIDTH, WIDTH).requires_grad_()
    w2 = ramp(WIDTH, 10).requires_grad_()
    kernel = ramp(8, 3, 3, 3).requires_grad_()
    norm_weight = torch.ones(WIDTH, device=device, requires_grad=True)
    norm_bias = torch.zeros(WIDTH, device=device, requires_grad=True)
    parameters = [w1, w2, kernel, norm_weight, norm_bias]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3) if optimizer_step else None
    images = ramp(4, 3, 16, 16)
    inputs = ramp(BATCH, WIDTH)
    targets = torch.arange(BATCH, device=device) % 10
    # A second step takes the optimizer's paths with its state present; without an optimizer
    # it would repeat the first (~70 ms of matmuls on a 2-core CPU) for nothing.
    for _ in range(2 if optimizer is not None else 1):
        for parameter in parameters:
            parameter.grad = None
        features = functional.conv2d(images, kernel, padding=1).relu().mean()
        hidden = functional.layer_norm(inputs @ w1, (WIDTH,), norm_weight, norm_bias).relu()
        hidden = functional.gelu(functional.linear(hidden, w1.t(), norm_bias))
        logits = hidden @ w2 + features
        loss = functional.cross_entropy(logits.softmax(dim=-1), targets)
        torch.autograd.backward(loss)
        if optimizer is not None:
            optimizer.step()
    with torch.no_grad():
        for dtype in dtypes:
            if dtype != torch.float32:
                (ramp(64, 64, dtype=dtype) @ ramp(64, 64, dtype=dtype)).sum().item()
    del optimizer, parameters, w1, w2, kernel, norm_weight, norm_bias, loss
