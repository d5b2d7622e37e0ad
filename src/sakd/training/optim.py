"""Optimisers and learning-rate schedules (paper A.1, and the official SAKD code where A.1 is silent).

* SGD, lr 0.1 cosine-decayed to 0 (A.1: ResNet-18/19/34 on CIFAR, and DVS-CIFAR10); momentum 0.9,
  Nesterov and weight decay 5e-4 are the official code's (A.1 gives none of them).
* AdamW with a linear warm-up from 0 over ``warmup_epochs`` then cosine to 0 (A.1: ResNet-50/101/152
  on CIFAR, ImageNet).

Weight decay reaches every parameter by default, BatchNorm weights and biases included, as in the
official code (its optimisers take ``model.parameters()``); ``optim.decay_bn_and_bias=false``
decays only the conv/linear weights.

The schedule is stepped every iteration, so warm-up and decay are smooth within epochs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from sakd.errors import ConfigError
from sakd.registry import Registry

if TYPE_CHECKING:  # the config names these registries' parts; they only read its fields
    from sakd.training.config import OptimConfig

# optimisers: (parameter groups, OptimConfig) -> torch optimiser
OPTIMIZERS: Registry = Registry("optimizer", keys=("optim.name",), listed=("optimizers",), training_only=True)
# schedules: (progress in [0, 1] after warm-up, min_lr / lr) -> lr factor
SCHEDULERS: Registry = Registry("scheduler", keys=("optim.scheduler",), listed=("optimizers", "schedulers"),
                                heading="schedules (optim.scheduler)", training_only=True)


def param_groups(modules: list[nn.Module], weight_decay: float, decay_bn_and_bias: bool = True) -> list[dict]:
    """Parameter groups: one decayed group of everything, or (``decay_bn_and_bias=False``) the
    conv/linear weights decayed and BatchNorm weights and biases (1-d parameters) not."""
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    if decay_bn_and_bias:
        return [{"params": params, "weight_decay": weight_decay}]
    return [{"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]


@OPTIMIZERS.register()
def sgd(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum (optim.momentum) and Nesterov (optim.nesterov)"""
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


@OPTIMIZERS.register()
def adamw(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (optim.betas)"""
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


@SCHEDULERS.register()
def cosine(progress: float, min_ratio: float) -> float:
    """Cosine decay from lr to optim.min_lr"""
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@SCHEDULERS.register()
def constant(progress: float, min_ratio: float) -> float:
    """The same lr throughout (after any warm-up)"""
    return 1.0


def build_optimizer(modules: list[nn.Module], cfg: OptimConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name)(param_groups(modules, cfg.weight_decay, cfg.decay_bn_and_bias), cfg)


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str, min_ratio: float) -> float:
    """Multiplier of the base lr at an iteration: linear warm-up, then cosine (or constant) over
    ``total_steps``, then the schedule's end (a cool-down at the minimum)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    return SCHEDULERS.get(kind)(min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)), min_ratio)


def build_scheduler(optimizer, cfg: OptimConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    if cfg.warmup_epochs + cfg.cooldown_epochs >= cfg.epochs > 0:
        raise ConfigError(f"optim.warmup_epochs + optim.cooldown_epochs ({cfg.warmup_epochs} + {cfg.cooldown_epochs}) "
                          f"must be below optim.epochs ({cfg.epochs})")
    total = int(round((cfg.epochs - cfg.cooldown_epochs) * steps_per_epoch))
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    min_ratio = cfg.min_lr / cfg.lr if cfg.lr else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, cfg.scheduler, min_ratio)
    )
