"""Device, precision, seeding and data loaders."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from sakd.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"run.device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"run.device={spec} but CUDA is not available on this machine; use run.device=cpu")
    return device


def resolve_amp(spec: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision."""
    if spec == "auto":
        ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if ok else None
    if spec == "off":
        return None
    if spec == "bf16":
        return torch.bfloat16
    if spec == "fp16":
        if device.type != "cuda":
            raise ConfigError("run.amp=fp16 needs a CUDA device; use bf16 or off on the CPU")
        return torch.float16
    raise ConfigError(f"unknown run.amp {spec!r}; choose auto, off, bf16 or fp16")


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpochSampler(RandomSampler):
    """Shuffles with a generator reseeded from ``(seed, epoch)``: the order of an epoch does not
    depend on what ran before it, so a resumed run sees the same batches."""

    def __init__(self, data: Dataset, seed: int):
        super().__init__(data, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 1_000_003 + epoch)


def make_loaders(train: Dataset, test: Dataset, *, batch_size: int, eval_batch_size: int, num_workers: int,
                 seed: int, device: torch.device) -> tuple[DataLoader, DataLoader]:
    if len(train) == 0:
        raise ConfigError("the training data set is empty")
    common = dict(
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
    )
    train_loader = DataLoader(
        train,
        batch_size=batch_size,
        sampler=EpochSampler(train, seed),
        drop_last=len(train) > batch_size,  # BatchNorm cannot train on a last batch of one
        **common,
    )
    test_loader = DataLoader(test, batch_size=eval_batch_size, shuffle=False, **common)
    return train_loader, test_loader
