"""Optimisers and learning-rate schedules of the paper's A.1.

* SGD, momentum 0.9, Nesterov, weight decay 5e-4, lr 0.1 cosine-decayed to 0 (ResNet-18/19/34).
* AdamW with a linear warm-up from 0 over ``warmup_epochs`` then cosine to 0 (ResNet-50/101/152,
  ImageNet).

The schedule is stepped every iteration, so warm-up and decay are smooth within epochs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.training.config import OptimConfig

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "constant")


def param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only, not on BatchNorm or biases (common practice)."""
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(modules: list[nn.Module], cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(modules, cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ConfigError(f"unknown optimizer {cfg.name!r}; choose one of {OPTIMIZERS}")


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str, min_ratio: float) -> float:
    """Multiplier of the base lr at an iteration: linear warm-up, then cosine (or constant)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer, cfg: OptimConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    if cfg.scheduler not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {cfg.scheduler!r}; choose one of {SCHEDULERS}")
    if cfg.warmup_epochs >= cfg.epochs > 0:
        raise ConfigError(f"optim.warmup_epochs ({cfg.warmup_epochs}) must be below optim.epochs ({cfg.epochs})")
    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    min_ratio = cfg.min_lr / cfg.lr if cfg.lr else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, cfg.scheduler, min_ratio)
    )
