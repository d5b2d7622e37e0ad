"""Supernet training (paper eq. 6): every step trains a sampled subnet with the SAKD loss from a
fixed ANN teacher, all subnets sharing one set of weights.

``nas.sampling=uniform`` draws one subnet per step uniformly from the space (the paper's random
sampling); ``sandwich`` trains the largest, the smallest and ``nas.sandwich_random`` random
subnets on each batch and sums their losses, so each subnet's gradient enters at full weight, as
BigNAS accumulates them (the logged loss terms are the subnets' mean). Subnets are drawn from a generator
seeded by (seed, epoch, step), so every process of a distributed run, and a resumed run, draws the
same ones. The test accuracy logged each epoch is the largest subnet's.
"""

from __future__ import annotations

import random

from torch import nn

from sakd.errors import ConfigError
from sakd.training.trainer import StudentStep, Trainer

class SupernetStep(StudentStep):
    """The student step over a list of subnets (``archs``, set before each step), their losses summed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.archs: list = []

    def forward(self, x, y, t_logits, t_feats, features: bool, epoch: int = 0):
        total, terms, first_logits = 0.0, {}, None
        for arch in self.archs:
            self.model.use(arch)
            loss, t, logits = super().forward(x, y, t_logits, t_feats, features, epoch)
            total = total + loss
            for k, v in t.items():
                terms[k] = terms.get(k, 0.0) + v / len(self.archs)
            first_logits = logits if first_logits is None else first_logits
        return total, terms, first_logits


class SupernetTrainer(Trainer):
    def __init__(self, config, **kwargs):
        if config.model.name != "resnet_supernet":
            raise ConfigError(f"sakd nas train trains model.name=resnet_supernet, not {config.model.name!r}")
        if config.model.init:
            raise ConfigError("the supernet starts from scratch; model.init must be null")
        super().__init__(config, **kwargs)

    def make_step(self) -> nn.Module:
        return SupernetStep(self.parts.model, self.parts.objective, self.parts.student_taps)

    def has_idle_parameters(self) -> bool:
        return True  # a subnet leaves the deeper blocks and shortcut weights of others unused

    def subnets_for(self, epoch: int, step: int) -> list:
        space, nas = self.parts.model.space, self.cfg.nas
        rng = random.Random(f"{nas.seed}-{epoch}-{step}")
        if nas.sampling == "uniform":
            return [space.sample(rng)]
        return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(nas.sandwich_random)]

    def on_step(self, epoch: int, step: int) -> None:
        self.student_step.archs = self.subnets_for(epoch, step)

    def evaluate_splits(self) -> dict:
        self.parts.model.use(self.parts.model.space.largest())
        return super().evaluate_splits()


def train_supernet(config) -> dict:
    return SupernetTrainer(config).fit()


__all__ = ["SupernetTrainer", "SupernetStep", "train_supernet"]
