"""An MLP training step, profiled per platform: forward, loss, backward, optimizer step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

IN_FEATURES = 512
HIDDEN = 1024
CLASSES = 10

# Every test here runs once per platform (ids [cpu], [cuda], ...); absent ones are skipped.
pytestmark = pytest.mark.hardware("cpu", "cuda", "mps", "xpu")


def make_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(IN_FEATURES, HIDDEN),
        nn.GELU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.GELU(),
        nn.Linear(HIDDEN, CLASSES),
    )


def make_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs with learnable labels: the class a fixed random linear "teacher" scores highest."""
    generator = torch.Generator().manual_seed(1234)
    inputs = torch.randn(batch_size, IN_FEATURES, generator=generator)
    teacher = torch.randn(IN_FEATURES, CLASSES, generator=generator)
    targets = (inputs @ teacher).argmax(dim=1)
    return inputs.to(device), targets.to(device)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor
) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    optimizer.step()
    return loss.item()  # a float: keeping the tensor would keep its graph alive


@pytest.fixture
def mlp(hw_device) -> nn.Sequential:
    return make_mlp().to(hw_device).train()


def first_step_on_a_copy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    """The first training step at these shapes, on a throwaway copy of `model`: kernels,
    workspaces and the optimizer's code paths are set up, and `model` keeps its initialisation."""
    spare = copy.deepcopy(model)
    train_step(spare, torch.optim.AdamW(spare.parameters()), inputs, targets)


# The step's growth: gradients, AdamW's two moments and the test's copy of the weights (4 x 6 MiB
# of fp32 parameters), activations and the optimizer's temporaries. On a 2-core x86 CPU:
# ~27-34 MiB for the measured step at either batch size; the weights, not the activations, dominate.
@pytest.mark.memory_limit(cpu="160MiB", cuda="160MiB", mps="256MiB", xpu="160MiB")
@pytest.mark.parametrize("batch_size", [32, 256])
def test_training_step(mlp, hw_device, memory_profile, batch_size):
    inputs, targets = make_batch(batch_size, hw_device)
    first_step_on_a_copy(mlp, inputs, targets)
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in mlp.parameters()]

    with memory_profile.measure("step"):
        logits = mlp(inputs)
        loss = nn.functional.cross_entropy(logits, targets)
        memory_profile.record_memory("after forward")
        loss.backward()
        memory_profile.record_memory("after backward")
        optimizer.step()
        memory_profile.record_memory("after optimizer step")

    assert logits.shape == (batch_size, CLASSES)
    # Freshly initialised, the model predicts close to uniformly over the classes.
    assert loss.item() == pytest.approx(math.log(CLASSES), abs=0.5)
    for name, param in mlp.named_parameters():
        assert param.grad is not None, name
        assert param.grad.shape == param.shape, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    for (name, param), old in zip(mlp.named_parameters(), before, strict=True):
        # Adam's first step moves every weight by about the learning rate, never much more.
        change = (param.detach() - old).abs().max().item()
        assert 0 < change <= 1.1e-3, f"{name}: moved by {change}"
        assert optimizer.state[param]["exp_avg_sq"].shape == param.shape, name

    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in mlp.parameters())


# Measured on a 2-core x86 CPU: ~30-33 MiB over the 15 steps, nearly all of it by the end of the
# first (the optimizer state); later steps reuse that memory instead of growing.
@pytest.mark.memory_limit(cpu="160MiB", cuda="160MiB", mps="256MiB", xpu="160MiB")
def test_loss_decreases_over_steps(mlp, hw_device, memory_profile):
    inputs, targets = make_batch(128, hw_device)
    first_step_on_a_copy(mlp, inputs, targets)
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=1e-3)
    with memory_profile.measure("steps"):
        losses = [train_step(mlp, optimizer, inputs, targets)]
        memory_profile.record_memory("after first step")
        losses += [train_step(mlp, optimizer, inputs, targets) for _ in range(14)]
        memory_profile.record_memory("after last step")

    assert all(math.isfinite(loss) for loss in losses), losses
    assert losses[-1] < 0.25 * losses[0], losses
    with torch.no_grad():
        accuracy = (mlp(inputs).argmax(dim=1) == targets).float().mean().item()
    assert accuracy > 0.9
