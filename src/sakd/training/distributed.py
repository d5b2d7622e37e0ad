"""Multi-process training under ``torchrun`` (DistributedDataParallel), and the batch samplers that
make a run's batches independent of how many processes share them.

``data.batch_size`` is the *global* batch of one optimiser step. Each step's global batch is cut
into ``world_size * accumulate_steps`` contiguous micro-batches; process ``r`` takes micro-batches
``r*accumulate_steps ... (r+1)*accumulate_steps - 1``. So 2 processes with micro-batch 32 and
1 process accumulating 2 micro-batches of 32 see the same samples in the same groups (BatchNorm
statistics included) and follow the same training trajectory up to float round-off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from sakd.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device, backend: str = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_min(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


def all_reduce_max(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_object(obj, ctx: DistContext):
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def micro_batch_size(global_batch: int, world_size: int, accumulate: int) -> int:
    parts = world_size * accumulate
    if global_batch % parts:
        raise ConfigError(
            f"data.batch_size={global_batch} (the global batch) must divide into {world_size} "
            f"process(es) x {accumulate} accumulation step(s)"
        )
    return global_batch // parts


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """This process's micro-batches of each global batch, in a per-epoch order seeded by
    ``(seed, epoch)`` (so a resumed run replays the same batches). The last incomplete global
    batch is dropped (BatchNorm cannot train on a batch of one).

    Each item is an ``(epoch, index)`` key for :class:`~sakd.data.seeded.SeededSamples`, so every
    sample's augmentation is drawn from ``(seed, epoch, index)`` wherever it is loaded.
    ``set_epoch(epoch, start_step)`` begins an epoch at an optimiser step (a mid-epoch resume)."""

    def __init__(self, size: int, global_batch: int, seed: int, ctx: DistContext, accumulate: int = 1):
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.accumulate, self.rank = accumulate, ctx.rank
        self.micro = micro_batch_size(global_batch, ctx.world_size, accumulate)
        if size < global_batch:
            raise ConfigError(f"data.batch_size={global_batch} is larger than the training set ({size} samples)")
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    @property
    def steps(self) -> int:
        """Optimiser steps per epoch."""
        return self.size // self.global_batch

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accumulate

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        for step in range(self.start_step, self.steps):
            start = step * self.global_batch + self.rank * self.accumulate * self.micro
            for k in range(self.accumulate):
                yield [(self.epoch, i) for i in order[start + k * self.micro: start + (k + 1) * self.micro]]


class ShardSampler(Sampler[int]):
    """Evaluation: process ``r`` takes samples ``r, r + W, r + 2W, ...`` (each sample exactly once)."""

    def __init__(self, size: int, ctx: DistContext):
        self.indices = list(range(ctx.rank, size, ctx.world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)
