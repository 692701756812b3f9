"""A data-parallel training step in its ranks (DDP): each rank's memory, and that they agree.

``world_size="auto"``: two ranks on the CPU (gloo), one per GPU on a CUDA machine (nccl, one
device each). Each rank is its own process: the report's entry has a ``ranks`` list with each
one's device and peaks, and the memory limit applies to each rank.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

pytestmark = pytest.mark.hardware("cpu", "cuda")

BATCH_PER_RANK = 64


@pytest.mark.distributed(world_size="auto", timeout="120s")
@pytest.mark.memory_limit("512MiB")
def test_ddp_training_step(hw_rank, hw_world_size, hw_device):
    torch.manual_seed(0)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 10)).to(hw_device)
    device_ids = [hw_device.index] if hw_device.type == "cuda" else None
    replica = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = torch.optim.SGD(replica.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(100 + hw_rank)  # each rank its own shard
    inputs = torch.randn(BATCH_PER_RANK, 256, generator=generator).to(hw_device)
    targets = torch.randint(0, 10, (BATCH_PER_RANK,), generator=generator).to(hw_device)
    nn.functional.cross_entropy(replica(inputs), targets).backward()
    optimizer.step()

    # Gradients were averaged across the ranks: after the step, every replica is the same.
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(weights) for _ in range(hw_world_size)]
    dist.all_gather(gathered, weights)
    assert all(torch.equal(gathered[0], other) for other in gathered[1:])
